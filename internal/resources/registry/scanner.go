package registry

import (
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// The scanner (spec.scanning): a Deployment of one pod that runs `dockyard registry
// scanner` inside the Trivy image, a Service the operator sends jobs to and reads status
// from, its config, and two Secrets: one generated once (the key reports are signed with
// and the operator's job token), one renewed (the scanner's registry credential).
const (
	ComponentScanner = "scanner"
	// ScannerPortName / ScannerPort: job intake, status, metrics and health.
	ScannerPortName       = "scanner"
	ScannerPort     int32 = 8083
	// Keys of the scanner Secret: the ed25519 signing key (PKCS #8 PEM), its public half
	// (what readers of reports trust) and the bearer token jobs carry.
	ScannerSigningKeyKey = "signing-key.pem"
	ScannerPublicKeyKey  = "public-key.pem"
	ScannerTokenKey      = "token"
	// ScannerUsername is the user name of the scanner's credential (the password is what
	// the registry checks).
	ScannerUsername = "dockyard-scanner"
	// ScannerCredentialLifetime is how long one scanner credential is valid; it is renewed
	// at half of it, and at once when the token keys sign with a new key.
	ScannerCredentialLifetime = 24 * time.Hour
	// ScannerQueueSize bounds the scanner's waiting jobs (a sweep catches up the rest).
	ScannerQueueSize = 1000

	// Paths inside the scanner pod.
	scannerBinDir         = "/opt/dockyard" // not /dockyard: the binary's own path in the dockyard image
	scannerConfigDir      = "/etc/dockyard/scanner"
	scannerSecretDir      = "/var/run/dockyard/scanner"
	scannerCredentialsDir = "/var/run/dockyard/scanner-credentials"
	scannerCADir          = "/var/run/dockyard/registry-ca"
	scannerCacheDir       = "/var/cache/trivy"
)

// ScannerCacheSizeLimit caps Trivy's cache (the vulnerability database, about 1 GiB
// unpacked, and the Java database when configured).
var ScannerCacheSizeLimit = resource.MustParse("4Gi")

// ScannerSelectorLabels select the scanner pod.
func ScannerSelectorLabels(reg *v1alpha1.Registry) map[string]string {
	return map[string]string{LabelName: AppName, LabelInstance: reg.Name, LabelComponent: ComponentScanner}
}

// ScannerAddress is the scanner Service's host:port inside the cluster.
func ScannerAddress(reg *v1alpha1.Registry) string {
	return fmt.Sprintf("%s.%s.svc:%d", reg.ScannerName(), reg.Namespace, ScannerPort)
}

// ScanDatabaseRef turns spec.scanning.database's form of a repository into a full
// reference: a repository of this Registry gets its Service's host.
func ScanDatabaseRef(reg *v1alpha1.Registry, repo string) string {
	if repo == "" || !v1alpha1.ScanRepositoryIsLocal(repo) {
		return repo
	}
	return registryHost(reg) + "/" + repo
}

func registryHost(reg *v1alpha1.Registry) string {
	return fmt.Sprintf("%s.%s.svc:%d", reg.ServiceName(), reg.Namespace, reg.ServicePort())
}

// ScannerConfig is the scanner's config (no secret in it: those are files from Secret
// volumes).
func ScannerConfig(reg *v1alpha1.Registry) registryconfig.Scanner {
	sc := reg.Spec.Scanning
	db := sc.GetDatabase()
	cfg := registryconfig.Scanner{
		Registry:       registryHost(reg),
		Insecure:       reg.Spec.TLS == nil,
		SigningKeyFile: scannerSecretDir + "/" + ScannerSigningKeyKey,
		TokenFile:      scannerSecretDir + "/" + ScannerTokenKey,
		Listen:         fmt.Sprintf(":%d", ScannerPort),
		Trivy: registryconfig.ScannerTrivy{
			Binary:           "trivy",
			CacheDir:         scannerCacheDir,
			DBRepository:     ScanDatabaseRef(reg, db.GetRepository()),
			JavaDBRepository: ScanDatabaseRef(reg, db.JavaRepository),
			Timeout:          registryconfig.Duration{Duration: sc.GetTimeout()},
		},
		Concurrency:        int(sc.GetConcurrency()),
		QueueSize:          ScannerQueueSize,
		DBUpdateInterval:   registryconfig.Duration{Duration: db.GetUpdateInterval()},
		SweepInterval:      registryconfig.Duration{Duration: sc.GetSweepInterval()},
		RescanPulledWithin: registryconfig.Duration{Duration: sc.GetRescanPulledWithin()},
		Log:                registryconfig.Log{Level: "info", Format: "json"},
	}
	if reg.Spec.TLS != nil {
		cfg.CAFile = scannerCADir + "/" + registryconfig.TLSCAFile
	}
	if reg.Spec.Auth != nil {
		cfg.CredentialsDir = scannerCredentialsDir
	}
	return cfg
}

// ScannerConfigKey is the scanner config's key in its ConfigMap.
const ScannerConfigKey = "config.json"

// ScannerConfigMap holds the rendered scanner config and the public key its reports are
// signed with (ScannerPublicKeyKey): whoever verifies reports reads it here, without
// access to the Secret that holds the private half.
func ScannerConfigMap(reg *v1alpha1.Registry, publicKeyPEM []byte) (*corev1.ConfigMap, error) {
	data, err := json.MarshalIndent(ScannerConfig(reg), "", "  ")
	if err != nil {
		return nil, err
	}
	return &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: objectMeta(reg, reg.ScannerName(), ComponentScanner),
		Data:       map[string]string{ScannerConfigKey: string(data), ScannerPublicKeyKey: string(publicKeyPEM)},
	}, nil
}

// ScannerSecret is the generated scanner Secret (created once, never rewritten, kept when
// scanning is switched off: reports signed with its key stay trusted).
func ScannerSecret(reg *v1alpha1.Registry, signingKeyPEM, publicKeyPEM []byte, token string) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: objectMeta(reg, reg.ScannerSecretName(), ComponentScanner),
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{ScannerSigningKeyKey: signingKeyPEM, ScannerPublicKeyKey: publicKeyPEM,
			ScannerTokenKey: []byte(token)},
	}
}

// ScannerCredentialsSecret holds the scanner's registry credential, with the annotations
// PullSecretRenewAt reads.
func ScannerCredentialsSecret(reg *v1alpha1.Registry, credential, keyID string, issued, expires time.Time) *corev1.Secret {
	meta := objectMeta(reg, reg.ScannerCredentialsSecretName(), ComponentScanner)
	meta.Annotations = map[string]string{
		AnnotationIssuedAt:  issued.UTC().Format(time.RFC3339),
		AnnotationExpiresAt: expires.UTC().Format(time.RFC3339),
		AnnotationKeyID:     keyID,
	}
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: meta,
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"username": []byte(ScannerUsername), "password": []byte(credential)},
	}
}

// ScannerServiceAccount is the scanner pod's own identity: no API token, and none of the
// annotations (cloud workload identity for the storage bucket) a user puts on the
// Registry's ServiceAccount — the pod that parses hostile images gets no storage access.
func ScannerServiceAccount(reg *v1alpha1.Registry) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     typeMeta("v1", "ServiceAccount"),
		ObjectMeta:                   objectMeta(reg, reg.ScannerName(), ComponentScanner),
		AutomountServiceAccountToken: ptr(false),
	}
}

// ScannerService is how the operator reaches the scanner. Not-ready pods are published
// too: a scanner still without a database takes jobs (it holds them) and tells why it
// has none.
func ScannerService(reg *v1alpha1.Registry) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: objectMeta(reg, reg.ScannerName(), ComponentScanner),
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeClusterIP,
			Selector:                 ScannerSelectorLabels(reg),
			PublishNotReadyAddresses: true,
			Ports: []corev1.ServicePort{{Name: ScannerPortName, Port: ScannerPort, TargetPort: intstr.FromString(ScannerPortName),
				Protocol: corev1.ProtocolTCP, AppProtocol: ptr("http")}},
		},
	}
}

// scannerResources are spec.scanning.resources or the defaults, with ephemeral storage
// for the cache and /tmp unless set.
func scannerResources(sc *v1alpha1.ScanningSpec) corev1.ResourceRequirements {
	rr := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(int64(1+sc.GetConcurrency())<<30, resource.BinarySI)},
	}
	if sc.Resources != nil {
		rr = *sc.Resources.DeepCopy()
	}
	if rr.Requests == nil {
		rr.Requests = corev1.ResourceList{}
	}
	if rr.Limits == nil {
		rr.Limits = corev1.ResourceList{}
	}
	if _, ok := rr.Requests[corev1.ResourceEphemeralStorage]; !ok {
		rr.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
	}
	if _, ok := rr.Limits[corev1.ResourceEphemeralStorage]; !ok {
		l := ScannerCacheSizeLimit.DeepCopy()
		l.Add(TmpSizeLimit)
		l.Add(EphemeralStorageRequest)
		rr.Limits[corev1.ResourceEphemeralStorage] = l
	}
	return rr
}

// ScannerDeployment runs the scanner: an init container (the dockyard image) copies the
// dockyard binary into an emptyDir, and the scanner container runs it in the Trivy image,
// restricted like every Dockyard pod (non-root, read-only root filesystem, no
// capability, no API token). inputsHash (the config and the scanner Secret's UID) rolls
// the pod when they change; the credential is re-read live.
func ScannerDeployment(reg *v1alpha1.Registry, in Inputs, inputsHash string) *appsv1.Deployment {
	sc := reg.Spec.Scanning
	labels := mergeLabels(Labels(reg, ComponentScanner), ScannerSelectorLabels(reg))
	volumes := []corev1.Volume{
		{Name: "bin", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(resource.MustParse("256Mi"))}}},
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: reg.ScannerName()},
			Items:                []corev1.KeyToPath{{Key: ScannerConfigKey, Path: ScannerConfigKey}}}}},
		{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: reg.ScannerSecretName(), DefaultMode: ptr(int32(0o440)),
			Items: []corev1.KeyToPath{{Key: ScannerSigningKeyKey, Path: ScannerSigningKeyKey}, {Key: ScannerTokenKey, Path: ScannerTokenKey}}}}},
		{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(ScannerCacheSizeLimit)}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(TmpSizeLimit)}}},
	}
	mounts := []corev1.VolumeMount{
		{Name: "bin", MountPath: scannerBinDir, ReadOnly: true},
		{Name: "config", MountPath: scannerConfigDir, ReadOnly: true},
		{Name: "secret", MountPath: scannerSecretDir, ReadOnly: true},
		{Name: "cache", MountPath: scannerCacheDir},
		{Name: "tmp", MountPath: "/tmp"},
	}
	if reg.Spec.TLS != nil {
		// Only the CA of the serving certificate; optional: a publicly trusted certificate
		// has none, and the system's roots do.
		volumes = append(volumes, corev1.Volume{Name: "registry-ca", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: reg.TLSSecretName(), Optional: ptr(true),
			Items: []corev1.KeyToPath{{Key: registryconfig.TLSCAFile, Path: registryconfig.TLSCAFile}}}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "registry-ca", MountPath: scannerCADir, ReadOnly: true})
	}
	if reg.Spec.Auth != nil {
		volumes = append(volumes, corev1.Volume{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: reg.ScannerCredentialsSecretName(), DefaultMode: ptr(int32(0o440))}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "credentials", MountPath: scannerCredentialsDir, ReadOnly: true})
	}
	probe := func(path string) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString(ScannerPortName), Scheme: corev1.URISchemeHTTP}}
	}
	scanner := corev1.Container{
		Name:    "scanner",
		Image:   sc.GetImage(),
		Command: []string{scannerBinDir + "/dockyard"},
		Args:    []string{"registry", "scanner", "--config", scannerConfigDir + "/" + ScannerConfigKey},
		Env: []corev1.EnvVar{{Name: "HOME", Value: "/tmp"}, {Name: "TMPDIR", Value: "/tmp"},
			{Name: "TRIVY_CACHE_DIR", Value: scannerCacheDir}},
		Ports:           []corev1.ContainerPort{{Name: ScannerPortName, ContainerPort: ScannerPort, Protocol: corev1.ProtocolTCP}},
		Resources:       scannerResources(sc),
		VolumeMounts:    mounts,
		SecurityContext: containerSecurityContext(),
		// Ready once it has a vulnerability database; alive while it serves.
		ReadinessProbe:           &corev1.Probe{ProbeHandler: probe("/readyz"), PeriodSeconds: 10, TimeoutSeconds: 3, FailureThreshold: 3},
		LivenessProbe:            &corev1.Probe{ProbeHandler: probe("/healthz"), InitialDelaySeconds: 10, PeriodSeconds: 20, TimeoutSeconds: 5, FailureThreshold: 6},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	install := corev1.Container{
		Name:    "install-dockyard",
		Image:   image(reg, in),
		Command: []string{registryconfig.Binary},
		Args:    []string{"registry", "copy-binary", scannerBinDir + "/dockyard"},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
		VolumeMounts:             []corev1.VolumeMount{{Name: "bin", MountPath: scannerBinDir}},
		SecurityContext:          containerSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	annotations := map[string]string{"kubectl.kubernetes.io/default-container": "scanner"}
	if inputsHash != "" {
		annotations[AnnotationInputs] = inputsHash
	}
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: objectMeta(reg, reg.ScannerName(), ComponentScanner),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: ScannerSelectorLabels(reg)},
			// One scanner at a time: two would scan everything twice.
			Strategy:             appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			RevisionHistoryLimit: ptr(int32(3)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					ServiceAccountName:            reg.ScannerName(),
					AutomountServiceAccountToken:  ptr(false),
					InitContainers:                []corev1.Container{install},
					Containers:                    []corev1.Container{scanner},
					Volumes:                       volumes,
					SecurityContext:               podSecurityContext(),
					TerminationGracePeriodSeconds: ptr(int64(30)),
					NodeSelector:                  reg.Spec.NodeSelector,
					Tolerations:                   reg.Spec.Tolerations,
					PriorityClassName:             reg.Spec.PriorityClassName,
					ImagePullSecrets:              reg.Spec.ImagePullSecrets,
					EnableServiceLinks:            ptr(false),
				},
			},
		},
	}
}
