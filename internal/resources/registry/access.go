package registry

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// Objects outside the Registry's namespace (pull Secrets) or outside any namespace (the
// ClusterRoleBinding) cannot have the Registry as owner; they carry these labels instead,
// and the Registry's finalizer removes them.
const (
	LabelOwnerNamespace = "registry.dockyard.dev/owner-namespace"
	LabelOwnerName      = "registry.dockyard.dev/owner-name"
	ComponentPullSecret = "pull-secret"
	ComponentAuth       = "auth-delegator"

	// Annotations on a pull Secret: when its credential was issued and expires, the key
	// that signed it, and a digest of the hosts it names (a change renews it).
	AnnotationIssuedAt  = "registry.dockyard.dev/issued-at"
	AnnotationExpiresAt = "registry.dockyard.dev/expires-at"
	AnnotationKeyID     = "registry.dockyard.dev/key-id"
	AnnotationHosts     = "registry.dockyard.dev/hosts-hash"

	// PullSecretUsername is the user name in pull Secrets (the registry reads only the
	// password, a signed credential).
	PullSecretUsername = "dockyard-pull"
)

// OwnerLabels mark an object reg owns across namespaces.
func OwnerLabels(reg *v1alpha1.Registry, component string) map[string]string {
	return map[string]string{
		LabelName:           AppName,
		LabelComponent:      component,
		LabelManagedBy:      ManagedBy,
		LabelOwnerNamespace: reg.Namespace,
		LabelOwnerName:      reg.Name,
	}
}

// AuthDelegatorBinding binds the registry's ServiceAccount to system:auth-delegator, which
// allows exactly TokenReview and SubjectAccessReview.
func AuthDelegatorBinding(reg *v1alpha1.Registry) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: reg.AuthDelegatorBindingName(), Labels: OwnerLabels(reg, ComponentAuth)},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: reg.ServiceName(), Namespace: reg.Namespace}},
	}
}

// PullRepositories are the repository patterns a namespace's pull credential may pull:
// <namespace>/ and below (not a one-segment repository named like the namespace, which
// Kubernetes RBAC treats as outside any namespace).
func PullRepositories(namespace string) []string { return []string{namespace + "/*/**"} }

// HostsHash digests the hosts a pull Secret names.
func HostsHash(hosts []string) string {
	sum := sha256.Sum256([]byte(strings.Join(hosts, "\n")))
	return hex.EncodeToString(sum[:8])
}

// PullSecret is the pull Secret of reg in namespace, holding credential for hosts.
func PullSecret(reg *v1alpha1.Registry, namespace, credential, keyID string, hosts []string, issued, expires time.Time) (*corev1.Secret, error) {
	auths := map[string]any{}
	for _, h := range hosts {
		auths[h] = map[string]string{"username": PullSecretUsername, "password": credential,
			"auth": base64.StdEncoding.EncodeToString([]byte(PullSecretUsername + ":" + credential))}
	}
	cfg, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta: typeMeta("v1", "Secret"),
		ObjectMeta: metav1.ObjectMeta{Name: reg.PullSecretName(), Namespace: namespace,
			Labels: OwnerLabels(reg, ComponentPullSecret),
			Annotations: map[string]string{
				AnnotationIssuedAt:  issued.UTC().Format(time.RFC3339),
				AnnotationExpiresAt: expires.UTC().Format(time.RFC3339),
				AnnotationKeyID:     keyID,
				AnnotationHosts:     HostsHash(hosts),
			}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}, nil
}

// PullSecretRenewAt is when a pull Secret with these annotations must be rewritten: at half
// its lifetime, or now when it was signed with another key than the current one, names
// other hosts, or cannot be read.
func PullSecretRenewAt(annotations map[string]string, keyID, hostsHash string, now time.Time) time.Time {
	issued, err1 := time.Parse(time.RFC3339, annotations[AnnotationIssuedAt])
	expires, err2 := time.Parse(time.RFC3339, annotations[AnnotationExpiresAt])
	if err1 != nil || err2 != nil || annotations[AnnotationKeyID] != keyID || annotations[AnnotationHosts] != hostsHash {
		return now
	}
	return issued.Add(expires.Sub(issued) / 2)
}
