package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// RegistryStatus is the observed state of a Registry.
type RegistryStatus struct {
	// observedGeneration is the generation the status describes; it advances when a
	// reconcile of that generation applied every child object.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (summary: serving the current spec), Progressing, Degraded, and
	// per dependency StorageReady, CertificateReady, AuthReady.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// url clients inside the cluster use, e.g. https://main.platform.svc:5000.
	// +optional
	URL string `json:"url,omitempty"`

	// replicas is the number of registry pods that run the current spec.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// readyReplicas is the number of registry pods ready to serve.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// lastGarbageCollection describes the most recent finished garbage-collection run.
	// +optional
	LastGarbageCollection *GarbageCollectionRun `json:"lastGarbageCollection,omitempty"`

	// pullSecrets reports the pull Secrets written for spec.pullSecrets.
	// +optional
	PullSecrets *PullSecretsStatus `json:"pullSecrets,omitempty"`

	// lastBackup describes the most recent finished backup run.
	// +optional
	LastBackup *BackupRun `json:"lastBackup,omitempty"`

	// lastSuccessfulBackup describes the most recent backup run that succeeded: the
	// newest backup a restore can use.
	// +optional
	LastSuccessfulBackup *BackupRun `json:"lastSuccessfulBackup,omitempty"`

	// restore describes the restore run of spec.restore; the pods start once it succeeded.
	// +optional
	Restore *BackupRun `json:"restore,omitempty"`

	// certificate describes the serving certificate cert-manager issued for tls.issuerRef:
	// when it expires, when cert-manager will renew it, and its revision (each renewal
	// adds one; the operator records an Event CertificateRenewed).
	// +optional
	Certificate *CertificateStatus `json:"certificate,omitempty"`

	// scanning is what the scanner of spec.scanning reports: images scanned, by
	// severity, failures, queue length and the age of its vulnerability database.
	// +optional
	Scanning *ScanningStatus `json:"scanning,omitempty"`
}

// CertificateStatus is what cert-manager reports of the serving certificate.
type CertificateStatus struct {
	// notAfter is when the current certificate expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`

	// renewalTime is when cert-manager will renew it.
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`

	// revision counts the certificates issued (1 for the first).
	// +optional
	Revision int32 `json:"revision,omitempty"`
}

// GarbageCollectionRun is the outcome of one garbage-collection job.
type GarbageCollectionRun struct {
	// jobName of the run.
	// +optional
	JobName string `json:"jobName,omitempty"`
	// startTime of the run.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// completionTime of the run.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// result is Succeeded or Failed.
	// +optional
	Result string `json:"result,omitempty"`
	// blobsDeleted counts deleted blobs.
	// +optional
	BlobsDeleted int64 `json:"blobsDeleted,omitempty"`
	// manifestsDeleted counts deleted manifests.
	// +optional
	ManifestsDeleted int64 `json:"manifestsDeleted,omitempty"`
	// bytesFreed is the size of the deleted blobs in bytes.
	// +optional
	BytesFreed int64 `json:"bytesFreed,omitempty"`
	// message explains a failure.
	// +optional
	Message string `json:"message,omitempty"`
}
