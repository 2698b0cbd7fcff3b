package v1alpha1

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults used when the API server did not fill a field (e.g. objects built in tests).
const (
	DefaultServicePort   int32 = 5000
	DefaultGracePeriod         = time.Hour
	DefaultReplicas      int32 = 1
	DefaultS3Region            = "us-east-1"
	DefaultIssuerGroup         = "cert-manager.io"
	DefaultClusterDomain       = "cluster.local"
	// DefaultTokenTTL is how long registry tokens are valid.
	DefaultTokenTTL = 5 * time.Minute
	// DefaultKeyRotationInterval is how often the token signing key is replaced.
	DefaultKeyRotationInterval = 30 * 24 * time.Hour
	// DefaultSessionTTL is how long refresh tokens (OIDC sessions) are valid.
	DefaultSessionTTL = 12 * time.Hour
	// DefaultRobotCredentialLifetime is how long a robot's password is valid.
	DefaultRobotCredentialLifetime = 30 * 24 * time.Hour
)

// GetReplicas returns spec.replicas or its default.
func (r *Registry) GetReplicas() int32 {
	if r.Spec.Replicas == nil {
		return DefaultReplicas
	}
	return *r.Spec.Replicas
}

// ServiceName is the name of the registry Service (and of the Deployment, ServiceAccount,
// PodDisruptionBudget, NetworkPolicy and Ingress).
func (r *Registry) ServiceName() string { return r.Name }

// ConfigMapName is the ConfigMap holding the rendered registry config.
func (r *Registry) ConfigMapName() string { return r.Name + "-config" }

// HTTPSecretName is the generated Secret replicas share to sign upload state.
func (r *Registry) HTTPSecretName() string { return r.Name + "-http-secret" }

// TokenKeysSecretName is the generated Secret holding the token service's signing keys.
func (r *Registry) TokenKeysSecretName() string { return r.Name + "-token-keys" }

// TokenService is the service name of the token service (challenges' service parameter,
// tokens' audience): the registry's in-cluster DNS name.
func (r *Registry) TokenService() string { return r.ServiceName() + "." + r.Namespace + ".svc" }

// TokenIssuer is the issuer of the Registry's tokens.
func (r *Registry) TokenIssuer() string { return "dockyard/" + r.Namespace + "/" + r.Name }

// GetTTL returns the token lifetime or its default.
func (t *TokenSpec) GetTTL() time.Duration {
	if t == nil || t.TTL == nil || t.TTL.Duration == 0 {
		return DefaultTokenTTL
	}
	return t.TTL.Duration
}

// GetKeyRotationInterval returns the signing-key rotation interval or its default.
func (t *TokenSpec) GetKeyRotationInterval() time.Duration {
	if t == nil || t.KeyRotationInterval == nil || t.KeyRotationInterval.Duration == 0 {
		return DefaultKeyRotationInterval
	}
	return t.KeyRotationInterval.Duration
}

// RobotsSecretName is the generated Secret holding the robot accounts' hashed
// credentials, mounted by the registry pods.
func (r *Registry) RobotsSecretName() string { return r.Name + "-robots" }

// RobotSecretName is the generated credentials Secret of robot name.
func (r *Registry) RobotSecretName(name string) string { return r.Name + "-robot-" + name }

// RobotUser is the user name of robot name.
func RobotUser(name string) string { return "robot+" + name }

// GetCredentialLifetime returns the robot's credential lifetime or its default.
func (a *RobotAccount) GetCredentialLifetime() time.Duration {
	if a.CredentialLifetime == nil || a.CredentialLifetime.Duration == 0 {
		return DefaultRobotCredentialLifetime
	}
	return a.CredentialLifetime.Duration
}

// RegistryHosts are the host:port names a client inside the cluster reaches the Registry
// by (the Service's short and full DNS names) plus the Ingress host, for credentials.
func (r *Registry) RegistryHosts(clusterDomain string) []string {
	if clusterDomain == "" {
		clusterDomain = DefaultClusterDomain
	}
	port := fmt.Sprintf(":%d", r.ServicePort())
	hosts := []string{r.ServiceName() + "." + r.Namespace + ".svc" + port,
		r.ServiceName() + "." + r.Namespace + ".svc." + clusterDomain + port}
	if r.Spec.Ingress != nil && r.Spec.Ingress.Host != "" {
		hosts = append(hosts, r.Spec.Ingress.Host)
	}
	return hosts
}

// ImageHosts are the names images in pod specs reach the Registry by: RegistryHosts plus
// the certificate's DNS names (spec.tls.dnsNames), with and without the Service port.
func (r *Registry) ImageHosts(clusterDomain string) []string {
	hosts := r.RegistryHosts(clusterDomain)
	if r.Spec.TLS != nil {
		for _, n := range r.Spec.TLS.DNSNames {
			hosts = append(hosts, n, fmt.Sprintf("%s:%d", n, r.ServicePort()))
		}
	}
	return dedupe(hosts)
}

// GetSessionTTL returns the refresh-token lifetime or its default.
func (t *TokenSpec) GetSessionTTL() time.Duration {
	if t == nil || t.SessionTTL == nil || t.SessionTTL.Duration == 0 {
		return DefaultSessionTTL
	}
	return t.SessionTTL.Duration
}

// GetChallenge returns the challenge scheme or its default.
func (t *TokenSpec) GetChallenge() TokenChallenge {
	if t == nil || t.Challenge == "" {
		return TokenChallengeBearer
	}
	return t.Challenge
}

// PVCName is the data volume claim (filesystem storage).
func (r *Registry) PVCName() string { return r.Name + "-data" }

// CertificateName is the cert-manager Certificate (tls.issuerRef).
func (r *Registry) CertificateName() string { return r.Name + "-tls" }

// CronJobName is the garbage-collection CronJob.
func (r *Registry) CronJobName() string { return r.Name + "-gc" }

// TLSSecretName is the Secret holding the serving certificate, or "" without TLS.
func (r *Registry) TLSSecretName() string {
	switch {
	case r.Spec.TLS == nil:
		return ""
	case r.Spec.TLS.SecretRef != nil:
		return r.Spec.TLS.SecretRef.Name
	default:
		return r.CertificateName()
	}
}

// ServicePort returns the Service port.
func (r *Registry) ServicePort() int32 {
	if r.Spec.Service == nil || r.Spec.Service.Port == 0 {
		return DefaultServicePort
	}
	return r.Spec.Service.Port
}

// ServiceType returns the Service type.
func (r *Registry) ServiceType() corev1.ServiceType {
	if r.Spec.Service == nil || r.Spec.Service.Type == "" {
		return corev1.ServiceTypeClusterIP
	}
	return r.Spec.Service.Type
}

// Scheme is https with TLS, http without.
func (r *Registry) Scheme() string {
	if r.Spec.TLS != nil {
		return "https"
	}
	return "http"
}

// URL is the in-cluster address clients use.
func (r *Registry) URL() string {
	return fmt.Sprintf("%s://%s.%s.svc:%d", r.Scheme(), r.ServiceName(), r.Namespace, r.ServicePort())
}

// DNSNames are the names the serving certificate covers: the Service's in-cluster names,
// the ingress host and spec.tls.dnsNames.
func (r *Registry) DNSNames(clusterDomain string) []string {
	if clusterDomain == "" {
		clusterDomain = DefaultClusterDomain
	}
	svc := r.ServiceName()
	names := []string{
		svc,
		svc + "." + r.Namespace,
		svc + "." + r.Namespace + ".svc",
		svc + "." + r.Namespace + ".svc." + clusterDomain,
	}
	if r.Spec.Ingress != nil {
		names = append(names, r.Spec.Ingress.Host)
	}
	if r.Spec.TLS != nil {
		names = append(names, r.Spec.TLS.DNSNames...)
	}
	return dedupe(names)
}

// GetAccessModes returns the filesystem volume's access modes (default ReadWriteOnce).
func (s *FilesystemStorage) GetAccessModes() []corev1.PersistentVolumeAccessMode {
	if len(s.AccessModes) == 0 {
		return []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return s.AccessModes
}

// SharedAcrossNodes reports whether pods on different nodes can mount the volume at once.
func (s *FilesystemStorage) SharedAcrossNodes() bool {
	for _, m := range s.GetAccessModes() {
		if m == corev1.ReadWriteMany {
			return true
		}
	}
	return false
}

// SharedStorage reports whether several pods (replicas, the GC job) on any node see the
// same data.
func (r *Registry) SharedStorage() bool {
	st := r.Spec.Storage
	switch {
	case st.S3 != nil, st.GCS != nil, st.Azure != nil:
		return true
	case st.Filesystem != nil:
		return st.Filesystem.SharedAcrossNodes()
	default:
		return false
	}
}

// GetGracePeriod returns the garbage-collection grace period or its default.
func (g *GarbageCollectionSpec) GetGracePeriod() time.Duration {
	if g == nil || g.GracePeriod == nil || g.GracePeriod.Duration == 0 {
		return DefaultGracePeriod
	}
	return g.GracePeriod.Duration
}

// ReferencedSecrets lists the names of the Secrets the Registry reads, in a stable order:
// the users Secret, the LDAP bind password and CA, the storage credentials and the TLS Secret (also when cert-manager
// creates it), so that a change to any of them is reconciled.
func (r *Registry) ReferencedSecrets() []string {
	var names []string
	if a := r.Spec.Auth; a != nil {
		if a.UsersSecretRef != nil {
			names = append(names, a.UsersSecretRef.Name)
		}
		if l := a.LDAP; l != nil {
			names = append(names, l.BindPasswordSecretRef.Name)
			if l.CA != nil && l.CA.SecretKeyRef != nil {
				names = append(names, l.CA.SecretKeyRef.Name)
			}
		}
		if o := a.OIDC; o != nil && o.CA != nil && o.CA.SecretKeyRef != nil {
			names = append(names, o.CA.SecretKeyRef.Name)
		}
	}
	if ref := r.StorageCredentialsRef(); ref != nil {
		names = append(names, ref.Name)
	}
	if n := r.TLSSecretName(); n != "" {
		names = append(names, n)
	}
	if ref := r.RestoreCredentialsRef(); ref != nil {
		names = append(names, ref.Name)
	}
	return dedupe(names)
}

// RestoreCredentialsRef is the Secret of spec.restore's S3 store, if any.
func (r *Registry) RestoreCredentialsRef() *SecretReference {
	if rs := r.Spec.Restore; rs != nil && rs.From.S3 != nil {
		return rs.From.S3.CredentialsSecretRef
	}
	return nil
}

// StorageCredentialsRef returns the storage backend's credentials Secret, if any.
func (r *Registry) StorageCredentialsRef() *SecretReference {
	st := r.Spec.Storage
	switch {
	case st.S3 != nil:
		return st.S3.CredentialsSecretRef
	case st.GCS != nil:
		return st.GCS.CredentialsSecretRef
	case st.Azure != nil:
		return st.Azure.CredentialsSecretRef
	}
	return nil
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

// CronSchedulePattern is the RE2 pattern a five-field garbageCollection.schedule must match,
// the same one the CRD's CEL rule uses: each field within the range the cron parser of
// Kubernetes CronJobs accepts.
const CronSchedulePattern = `(?i)^([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/0*[1-9][0-9]{0,3})?(,([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/0*[1-9][0-9]{0,3})?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/0*[1-9][0-9]{0,3})?(,([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(/0*[1-9][0-9]{0,3})?(,([*]|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(/0*[1-9][0-9]{0,3})?)* +([*]|[?]|([0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?)(/0*[1-9][0-9]{0,3})?(,([*]|[?]|([0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?)(/0*[1-9][0-9]{0,3})?)*$`

// ImageReferencePattern is the pattern spec.image must match: distribution/reference's
// ReferenceRegexp (what kubelet and container runtimes parse image references with).
// TestImageReferencePattern keeps the two and the CRD marker equal.
const ImageReferencePattern = `^((?:(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*)(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$`

// Defaults of Kubernetes-native access.
const (
	DefaultServiceAccountCacheTTL = 30 * time.Second
	DefaultRBACCacheTTL           = 10 * time.Second
	DefaultPullCredentialLifetime = 4 * time.Hour
)

// ServiceAccountAudiences returns the audiences ServiceAccount tokens must have.
func (r *Registry) ServiceAccountAudiences() []string {
	if a := r.Spec.Auth; a != nil && a.ServiceAccounts != nil && len(a.ServiceAccounts.Audiences) > 0 {
		return a.ServiceAccounts.Audiences
	}
	return []string{r.TokenService()}
}

// UsesKubernetesAuth reports whether the registry pods ask the API server (TokenReview,
// SubjectAccessReview).
func (r *Registry) UsesKubernetesAuth() bool {
	a := r.Spec.Auth
	return a != nil && (a.ServiceAccounts != nil || a.KubernetesRBAC != nil)
}

// AuthDelegatorBindingName is the ClusterRoleBinding that lets the registry pods review
// tokens and access (system:auth-delegator).
func (r *Registry) AuthDelegatorBindingName() string {
	return "dockyard-registry:" + r.Namespace + ":" + r.Name
}

// PullSecretName is the name of the pull Secret in each selected namespace.
func (r *Registry) PullSecretName() string { return "dockyard-pull." + r.Namespace + "." + r.Name }

// PullServiceAccounts returns the ServiceAccounts that get the pull Secret ("*": all).
func (p *PullSecretsSpec) PullServiceAccounts() []string {
	if len(p.ServiceAccounts) == 0 {
		return []string{"default"}
	}
	return p.ServiceAccounts
}

// GetCredentialLifetime returns the pull credential lifetime or its default.
func (p *PullSecretsSpec) GetCredentialLifetime() time.Duration {
	if p.CredentialLifetime == nil || p.CredentialLifetime.Duration == 0 {
		return DefaultPullCredentialLifetime
	}
	return p.CredentialLifetime.Duration
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration == 0 {
		return def
	}
	return d.Duration
}

// ServiceAccountCacheTTL returns how long a TokenReview answer is reused.
func (s *ServiceAccountAuthSpec) ServiceAccountCacheTTL() time.Duration {
	return durationOr(s.CacheTTL, DefaultServiceAccountCacheTTL)
}

// RBACCacheTTL returns how long a SubjectAccessReview answer is reused.
func (k *KubernetesRBACSpec) RBACCacheTTL() time.Duration {
	return durationOr(k.CacheTTL, DefaultRBACCacheTTL)
}

// DefaultContainerdConfigPath is containerd's usual registry config_path.
const DefaultContainerdConfigPath = "/etc/containerd/certs.d"

// GetContainerdConfigPath returns containerd's certs.d directory or its default.
func (n *NodeTrustSpec) GetContainerdConfigPath() string {
	if n.ContainerdConfigPath == "" {
		return DefaultContainerdConfigPath
	}
	return n.ContainerdConfigPath
}

// NodeTrustName is the name of the node-trust DaemonSet.
func (r *Registry) NodeTrustName() string { return r.Name + "-node-trust" }

// Namespace labels a cluster administrator sets (namespace editors cannot change a
// Namespace) to let a Registry reach outside its namespace.
const (
	// LabelAllowAuthDelegation on a Registry's namespace lets the operator bind that
	// Registry's ServiceAccount to system:auth-delegator (cluster-wide TokenReview and
	// SubjectAccessReview), which auth.serviceAccounts and auth.kubernetesRBAC need.
	LabelAllowAuthDelegation = "registry.dockyard.dev/allow-auth-delegation"
	// PullFromLabelPrefix + <registry namespace> = "true" on a namespace lets Registries of
	// that namespace write pull Secrets into it (spec.pullSecrets); a Registry's own
	// namespace needs no label.
	PullFromLabelPrefix = "pull-from.registry.dockyard.dev/"
)

// AuthDelegationAllowed reports whether a namespace with these labels allows it.
func AuthDelegationAllowed(nsLabels map[string]string) bool {
	return nsLabels[LabelAllowAuthDelegation] == "true"
}

// AcceptsPullSecrets reports whether a namespace (name, labels) takes pull Secrets from
// the Registry r.
func (r *Registry) AcceptsPullSecrets(ns string, nsLabels map[string]string) bool {
	return ns == r.Namespace || nsLabels[PullFromLabelPrefix+r.Namespace] == "true"
}
