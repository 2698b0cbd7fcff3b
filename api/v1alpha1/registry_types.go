package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RegistrySpec is the desired state of a Registry.
//
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || !has(self.storage.emptyDir)",message="replicas > 1 needs shared storage: emptyDir is private to each pod, so pushes to one replica would be missing on the others; use s3, gcs, azure or a ReadWriteMany filesystem volume"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || !has(self.storage.filesystem) || (has(self.storage.filesystem.accessModes) && 'ReadWriteMany' in self.storage.filesystem.accessModes)",message="replicas > 1 needs shared storage: a ReadWriteOnce volume cannot be mounted by pods on different nodes; set storage.filesystem.accessModes to [ReadWriteMany] or use object storage"
// +kubebuilder:validation:XValidation:rule="!has(self.nodeTrust) || has(self.tls)",message="nodeTrust needs tls: a plain-HTTP registry has no CA for nodes to trust"
// +kubebuilder:validation:XValidation:rule="!has(self.restore) || (has(oldSelf.restore) && self.restore == oldSelf.restore)",message="restore can be set only when the Registry is created (remove it, or create a new Registry)"
// +kubebuilder:validation:XValidation:rule="!(has(self.restore) || has(self.backup)) || !has(self.storage.filesystem) || !has(self.storage.filesystem.accessModes) || !('ReadWriteOncePod' in self.storage.filesystem.accessModes)",message="backup and restore cannot run on a ReadWriteOncePod volume: their jobs mount the volume beside the serving pod; use ReadWriteOnce or ReadWriteMany"
// +kubebuilder:validation:XValidation:rule="!(has(self.restore) || has(self.backup)) || !has(self.storage.emptyDir)",message="backup and restore need a volume or object storage: their jobs cannot reach a pod's emptyDir"
// +kubebuilder:validation:XValidation:rule="!has(self.scanning) || !has(self.scanning.policy) || !has(self.scanning.policy.pullAction) || self.scanning.policy.pullAction != 'Deny' || has(self.auth)",message="scanning.policy.pullAction: Deny needs auth: the registry tells Managers, the scanner and the kubelet's pull Secrets from other clients by their credentials; without auth it would refuse them all"
// +kubebuilder:validation:XValidation:rule="!has(self.pullSecrets) || has(self.auth)",message="pullSecrets needs auth: a Registry without auth lets anyone pull, so there is no credential to write"
// +kubebuilder:validation:XValidation:rule="!has(self.garbageCollection) || !has(self.storage.emptyDir)",message="garbageCollection cannot run on emptyDir storage: the collection job cannot reach another pod's emptyDir"
// +kubebuilder:validation:XValidation:rule="!has(self.garbageCollection) || !has(self.storage.filesystem) || !has(self.storage.filesystem.accessModes) || !('ReadWriteOncePod' in self.storage.filesystem.accessModes)",message="garbageCollection cannot run on a ReadWriteOncePod volume: the collection job needs to mount the volume beside the serving pod; use ReadWriteOnce or ReadWriteMany"
type RegistrySpec struct {
	// replicas is the number of registry pods. Values above 1 need shared storage (object
	// storage or a ReadWriteMany volume). 0 stops the registry but keeps its data.
	// Defaults to 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=50
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// image overrides the container image of the registry pods and the garbage-collection
	// job. Defaults to the operator's own dockyard image, which carries both. An image
	// reference (`[registry[:port]/]name[:tag][@digest]`), checked at apply time with
	// ImageReferencePattern.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^((?:(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*)(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$`
	// +optional
	Image string `json:"image,omitempty"`

	// imagePullSecrets are used to pull image.
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// resources of the registry container. Defaults to requests of 100m CPU and 128Mi
	// memory and a 1Gi memory limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// nodeSelector constrains registry pods to nodes with these labels.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations of the registry pods.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// affinity of the registry pods. When unset and replicas > 1, pods are spread across
	// nodes and zones with topology spread constraints.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// priorityClassName of the registry pods.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// storage is where images are kept. Exactly one backend must be set, and the backend
	// cannot be changed after creation.
	// +required
	Storage RegistryStorage `json:"storage"`

	// tls serves the registry over HTTPS with a certificate from cert-manager (issuerRef)
	// or from an existing Secret (secretRef). Without tls the registry serves plain HTTP,
	// which container runtimes accept only for registries configured as insecure.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// auth turns on authentication and role-based access. Without auth anyone who can reach
	// the Service can push, pull and delete.
	// +optional
	Auth *AuthSpec `json:"auth,omitempty"`

	// garbageCollection schedules a job that deletes blobs and manifests no tag references.
	// Without it no garbage is collected.
	// +optional
	GarbageCollection *GarbageCollectionSpec `json:"garbageCollection,omitempty"`

	// backup schedules backups into a backup store (see BackupSpec).
	// +optional
	Backup *BackupSpec `json:"backup,omitempty"`

	// restore fills the new Registry from a backup before its pods start (see RestoreSpec).
	// +optional
	Restore *RestoreSpec `json:"restore,omitempty"`

	// service configures the Service in front of the registry pods.
	// +optional
	Service *ServiceSpec `json:"service,omitempty"`

	// ingress exposes the registry through an Ingress.
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// networkPolicy, when set, allows traffic to the registry only from the listed peers.
	// +optional
	NetworkPolicy *NetworkPolicySpec `json:"networkPolicy,omitempty"`

	// pullSecrets writes short-lived, pull-only credentials for this Registry into the
	// namespaces a selector selects and attaches them to their ServiceAccounts, so pods pull
	// without a hand-made Secret (see PullSecretsSpec). Needs auth.
	// +optional
	PullSecrets *PullSecretsSpec `json:"pullSecrets,omitempty"`

	// immutableTags makes tags immutable: once a tag matching one of tags exists in a
	// repository matching one of repositories, pushing another manifest to it, deleting it,
	// or deleting the manifest it names is refused with 403 DENIED naming the rule, whatever
	// the client's role. Pushing the same manifest again is allowed.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	ImmutableTags []ImmutableTagRule `json:"immutableTags,omitempty"`

	// monitoring configures the PodMonitor written when the Prometheus Operator is
	// installed (see MonitoringSpec); on by default.
	// +optional
	Monitoring *MonitoringSpec `json:"monitoring,omitempty"`

	// pullThroughCache makes the Registry a cache of upstream registries, each under its
	// own repository prefix (see PullThroughCacheSpec).
	// +optional
	PullThroughCache *PullThroughCacheSpec `json:"pullThroughCache,omitempty"`

	// nodeTrust installs the Registry's CA on every node for the container runtime, so
	// pods pull from it without hand-written node configuration (see NodeTrustSpec).
	// Needs tls.
	// +optional
	NodeTrust *NodeTrustSpec `json:"nodeTrust,omitempty"`

	// scanning runs a vulnerability scanner beside the Registry: every image pushed is
	// scanned with Trivy and its report stored with it as an OCI referrer (see
	// ScanningSpec). Needs spec.image's dockyard image and a Trivy image.
	// +optional
	Scanning *ScanningSpec `json:"scanning,omitempty"`

	// deletionPolicy says what happens to the data volume when the Registry is deleted:
	// Retain (the default) keeps the PersistentVolumeClaim, so re-creating a Registry of the
	// same name finds its images again; Delete removes it with the Registry. Object storage
	// buckets are never emptied by Dockyard.
	// +kubebuilder:validation:Enum=Retain;Delete
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// DeletionPolicy is what happens to a Registry's volume when the Registry is deleted.
type DeletionPolicy string

const (
	// DeletionPolicyRetain keeps the PersistentVolumeClaim.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete deletes the PersistentVolumeClaim with the Registry.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// RegistryStorage holds exactly one storage backend.
//
// +kubebuilder:validation:XValidation:rule="(has(self.filesystem) ? 1 : 0) + (has(self.s3) ? 1 : 0) + (has(self.gcs) ? 1 : 0) + (has(self.azure) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) == 1",message="storage: set exactly one backend: filesystem, s3, gcs, azure or emptyDir"
// +kubebuilder:validation:XValidation:rule="has(self.filesystem) == has(oldSelf.filesystem) && has(self.s3) == has(oldSelf.s3) && has(self.gcs) == has(oldSelf.gcs) && has(self.azure) == has(oldSelf.azure) && has(self.emptyDir) == has(oldSelf.emptyDir)",message="storage: the backend cannot be changed after creation (the images would stay behind in the old one); create a new Registry instead"
// +kubebuilder:validation:XValidation:rule="!has(self.redirectDownloads) || !self.redirectDownloads || has(self.s3) || has(self.gcs) || has(self.azure)",message="storage.redirectDownloads needs object storage (s3, gcs or azure): a volume has no URL clients could be sent to"
type RegistryStorage struct {
	// filesystem keeps images on a PersistentVolumeClaim the operator creates.
	// +optional
	Filesystem *FilesystemStorage `json:"filesystem,omitempty"`

	// s3 keeps images in an S3 or S3-compatible bucket.
	// +optional
	S3 *S3Storage `json:"s3,omitempty"`

	// gcs keeps images in a Google Cloud Storage bucket.
	// +optional
	GCS *GCSStorage `json:"gcs,omitempty"`

	// azure keeps images in an Azure Blob Storage container.
	// +optional
	Azure *AzureStorage `json:"azure,omitempty"`

	// emptyDir keeps images in the pod's scratch space: everything is lost when the pod is
	// replaced. For demos and tests only; limited to one replica.
	// +optional
	EmptyDir *EmptyDirStorage `json:"emptyDir,omitempty"`

	// redirectDownloads answers blob downloads with a redirect (307) to a short-lived
	// pre-signed URL of the object store instead of streaming the bytes through the registry
	// pods: the lever when pull traffic outgrows the pods. Only for s3, gcs and azure, and
	// only safe when every client (nodes, CI runners, laptops) can reach the object store's
	// endpoint and trusts its certificate; manifests, pushes and authorization still go
	// through the registry. Default false.
	// +optional
	RedirectDownloads bool `json:"redirectDownloads,omitempty"`
}

// FilesystemStorage is a PersistentVolumeClaim created for the Registry.
//
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.storageClassName) ? !has(self.storageClassName) : (has(self.storageClassName) && self.storageClassName == oldSelf.storageClassName)",message="storage.filesystem.storageClassName cannot be changed after creation"
// +kubebuilder:validation:XValidation:rule="quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0",message="storage.filesystem.size can grow but not shrink"
// +kubebuilder:validation:XValidation:rule="quantity(self.size).isGreaterThan(quantity('0'))",message="storage.filesystem.size must be greater than 0, e.g. 50Gi"
type FilesystemStorage struct {
	// size of the volume, e.g. 50Gi. It can grow later when the storage class allows
	// expansion, never shrink.
	// +required
	Size resource.Quantity `json:"size"`

	// storageClassName of the volume. Defaults to the cluster's default storage class.
	// Immutable.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// accessModes of the volume. Defaults to [ReadWriteOnce]. Use ReadWriteMany for more
	// than one replica.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:validation:items:Enum=ReadWriteOnce;ReadWriteMany;ReadWriteOncePod
	// +kubebuilder:default={ReadWriteOnce}
	// +listType=set
	// +optional
	AccessModes []corev1.PersistentVolumeAccessMode `json:"accessModes,omitempty"`
}

// S3Storage is an S3 or S3-compatible bucket.
type S3Storage struct {
	// bucket name.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('..') && !self.matches('^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$') && !self.startsWith('xn--') && !self.endsWith('-s3alias')",message="s3.bucket: S3 bucket names are 3-63 lowercase letters, digits, dots and hyphens, begin and end with a letter or digit, have no '..', are not an IP address and do not start with xn-- or end with -s3alias"
	Bucket string `json:"bucket"`

	// region of the bucket. Defaults to us-east-1 (what most S3-compatible servers expect).
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:default="us-east-1"
	// +optional
	Region string `json:"region,omitempty"`

	// endpoint of an S3-compatible server, e.g. https://minio.storage:9000. Defaults to AWS.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^https?://[^\s/$.?#].[^\s]*$`
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// forcePathStyle addresses the bucket as endpoint/bucket instead of bucket.endpoint, as
	// most S3-compatible servers need.
	// +optional
	ForcePathStyle bool `json:"forcePathStyle,omitempty"`

	// encrypt asks the server to encrypt objects at rest (SSE-S3).
	// +optional
	Encrypt bool `json:"encrypt,omitempty"`

	// rootDirectory is a key prefix inside the bucket, so several registries can share it.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	RootDirectory string `json:"rootDirectory,omitempty"`

	// credentialsSecretRef names a Secret in the Registry's namespace with keys accessKeyID
	// and secretAccessKey. Without it the pod's ambient credentials (IRSA, instance role)
	// are used.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`
}

// GCSStorage is a Google Cloud Storage bucket.
type GCSStorage struct {
	// bucket name.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=222
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9._-]*[a-z0-9]$`
	// +kubebuilder:validation:XValidation:rule="self.split('.').all(c, size(c) >= 1 && size(c) <= 63) && !self.startsWith('goog') && !self.contains('google') && !self.matches('^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$')",message="gcs.bucket: GCS bucket names are lowercase letters, digits, dashes, underscores and dots, begin and end with a letter or digit, at most 63 characters between dots, not an IP address, and neither start with goog nor contain google"
	Bucket string `json:"bucket"`

	// rootDirectory is a key prefix inside the bucket.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	RootDirectory string `json:"rootDirectory,omitempty"`

	// credentialsSecretRef names a Secret in the Registry's namespace with a service-account
	// key under key.json. Without it workload identity / application default credentials
	// are used.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`
}

// AzureStorage is an Azure Blob Storage container.
type AzureStorage struct {
	// accountName is the storage account.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=24
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+$`
	// +required
	AccountName string `json:"accountName"`

	// container is the blob container.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9]|-[a-z0-9])*$`
	Container string `json:"container"`

	// rootDirectory is a key prefix inside the container.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	RootDirectory string `json:"rootDirectory,omitempty"`

	// credentialsSecretRef names a Secret in the Registry's namespace with the account's
	// shared key under accountKey. Without it workload identity is used.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`
}

// EmptyDirStorage is pod scratch space.
// +kubebuilder:validation:XValidation:rule="!has(self.sizeLimit) || quantity(self.sizeLimit).isGreaterThan(quantity('0'))",message="storage.emptyDir.sizeLimit must be greater than 0 (leave it unset for no limit)"
type EmptyDirStorage struct {
	// sizeLimit caps the scratch space; the pod is evicted past it.
	// +optional
	SizeLimit *resource.Quantity `json:"sizeLimit,omitempty"`
}

// SecretReference names a Secret in the Registry's namespace.
type SecretReference struct {
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`
}

// TLSSpec is the registry's serving certificate. Set exactly one of issuerRef and secretRef.
//
// +kubebuilder:validation:XValidation:rule="has(self.issuerRef) != has(self.secretRef)",message="tls: set exactly one of issuerRef (cert-manager issues and rotates the certificate) or secretRef (an existing kubernetes.io/tls Secret)"
// +kubebuilder:validation:XValidation:rule="!has(self.dnsNames) || has(self.issuerRef)",message="tls.dnsNames only applies with issuerRef; with secretRef the names are those of your certificate"
type TLSSpec struct {
	// issuerRef is the cert-manager Issuer or ClusterIssuer that issues and renews the
	// certificate. The operator creates a Certificate named <registry>-tls for the
	// Service's DNS names, dnsNames and the ingress host.
	// +optional
	IssuerRef *IssuerReference `json:"issuerRef,omitempty"`

	// secretRef names an existing kubernetes.io/tls Secret (keys tls.crt, tls.key and
	// optionally ca.crt) in the Registry's namespace. You renew it; pods pick it up.
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`

	// dnsNames are extra names for the certificate (issuerRef only).
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +listType=set
	// +optional
	DNSNames []string `json:"dnsNames,omitempty"`
}

// IssuerReference names a cert-manager issuer.
type IssuerReference struct {
	// name of the issuer.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// kind is Issuer (in the Registry's namespace) or ClusterIssuer. Defaults to Issuer.
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	// +kubebuilder:default=Issuer
	// +optional
	Kind string `json:"kind,omitempty"`

	// group of the issuer. Defaults to cert-manager.io; set it for external issuers.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:default="cert-manager.io"
	// +optional
	Group string `json:"group,omitempty"`
}

// GarbageCollectionSpec schedules garbage collection.
type GarbageCollectionSpec struct {
	// schedule in cron format: five fields (minute hour day-of-month month day-of-week),
	// or one of @yearly, @monthly, @weekly, @daily, @hourly. Times are in the
	// controller-manager's time zone (usually UTC).
	// +kubebuilder:validation:MaxLength=128
	// The second rule is CronSchedulePattern (registry_funcs.go; TestCronSchedulePattern keeps
	// them equal and checks it against the cron parser CronJobs use): every field within its
	// range (minute 0-59, hour 0-23, day 1-31, month 1-12 or JAN-DEC, weekday 0-6 or SUN-SAT),
	// as values, ranges, lists and steps.
	// +kubebuilder:validation:XValidation:rule="self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4}$')",message="schedule: use five cron fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\") or @yearly, @monthly, @weekly, @daily or @hourly"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.matches('(?i)^([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/0*[1-9][0-9]{0,3})?(,([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/0*[1-9][0-9]{0,3})?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/0*[1-9][0-9]{0,3})?(,([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(/0*[1-9][0-9]{0,3})?(,([*]|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(/0*[1-9][0-9]{0,3})?)* +([*]|[?]|([0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?)(/0*[1-9][0-9]{0,3})?(,([*]|[?]|([0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?)(/0*[1-9][0-9]{0,3})?)*$')",message="schedule: a field is out of range or has an unknown token: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or SUN-SAT; each field is *, a value, a range a-b, a list a,b, optionally with a step /n"
	// +required
	Schedule string `json:"schedule"`

	// deleteUntagged also deletes manifests no tag references (children of a tagged
	// multi-arch index are kept). Defaults to false.
	// +optional
	DeleteUntagged bool `json:"deleteUntagged,omitempty"`

	// suspend stops scheduling new runs; a running one finishes.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// gracePeriod protects blobs and manifests written more recently than this, so pushes
	// in flight during a run are never broken. Defaults to 1h; at least 10m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10m')",message="gracePeriod must be at least 10m so that no in-flight push loses its blobs"
	// +optional
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// ServiceSpec configures the registry Service.
type ServiceSpec struct {
	// type of the Service. Defaults to ClusterIP.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// port the Service listens on. Defaults to 5000.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=5000
	// +optional
	Port int32 `json:"port,omitempty"`

	// annotations added to the Service, e.g. for a cloud load balancer.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// IngressSpec exposes the registry through an Ingress.
type IngressSpec struct {
	// host name clients use, e.g. registry.example.com.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Host string `json:"host"`

	// className of the IngressClass. Defaults to the cluster's default class.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ClassName *string `json:"className,omitempty"`

	// tlsSecretName is the Secret the ingress controller serves for host. Defaults to the
	// registry's certificate Secret when tls is set.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	TLSSecretName string `json:"tlsSecretName,omitempty"`

	// annotations added to the Ingress (e.g. body size or backend-protocol settings of your
	// ingress controller; image layers need large request bodies).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// NetworkPolicySpec restricts who may connect to the registry.
type NetworkPolicySpec struct {
	// from lists the peers that may reach the registry port. An empty list allows no one
	// but the ingress controller peers you list here; pods in the Registry's namespace are
	// not allowed implicitly. Remember the nodes (kubelet pulls) if pods pull from it.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	From []networkingv1.NetworkPolicyPeer `json:"from,omitempty"`

	// metricsFrom lists the peers that may scrape the metrics port.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	MetricsFrom []networkingv1.NetworkPolicyPeer `json:"metricsFrom,omitempty"`
}

// Registry is a private OCI / Docker registry run in the cluster.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=reg,categories=dockyard
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 49",message="metadata.name: at most 49 characters (child objects such as the <name>-gc CronJob must fit Kubernetes name limits)"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name: must start with a letter and contain only lowercase letters, digits and '-' (it names the registry's Service)"
type Registry struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec RegistrySpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status RegistryStatus `json:"status,omitempty"`
}

// RegistryList is a list of Registries.
//
// +kubebuilder:object:root=true
type RegistryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Registry `json:"items"`
}

// ImmutableTagRule names tags that never move once pushed.
type ImmutableTagRule struct {
	// repositories are patterns of repository names, as in access rules: '/'-separated
	// lowercase segments, '*' inside a segment, '**' as a whole segment (team-a/**).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*(/[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*)*$'))",message="repositories: each pattern is lowercase path segments separated by '/', with '*' inside a segment or '**' as a whole segment (e.g. team-a/**, base/debian-*); no leading, trailing or double '/'"
	// +listType=atomic
	// +required
	Repositories []string `json:"repositories"`

	// tags are patterns of tag names where '*' matches any run of characters and '?' one
	// character, e.g. v*, release-*, v?.?.?.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_.*?-]+$`
	// +listType=atomic
	// +required
	Tags []string `json:"tags"`
}
