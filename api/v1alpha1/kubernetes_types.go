package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceAccountAuthSpec accepts Kubernetes ServiceAccount tokens: a pod or Job presents
// its projected token (audience one of audiences) as the password or as a Bearer token, and
// is the user system:serviceaccount:<namespace>:<name> with the groups the API server
// gives it (system:serviceaccounts, system:serviceaccounts:<namespace>).
//
// The registry checks each new token with a TokenReview (the operator binds the registry's
// ServiceAccount to system:auth-delegator once a cluster administrator labels the
// Registry's namespace registry.dockyard.dev/allow-auth-delegation=true), so a token of a deleted ServiceAccount or pod
// stops working within cacheTTL; registry tokens issued to a ServiceAccount live at most
// cacheTTL, so within twice cacheTTL on every path.
type ServiceAccountAuthSpec struct {
	// audiences a token must be issued for (one of them). Default: the Registry's Service
	// name, <service>.<namespace>.svc (the host of status.url; also the token service). A token
	// for the API server or another audience is refused, so no other service can replay
	// the tokens it receives.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=set
	// +optional
	Audiences []string `json:"audiences,omitempty"`

	// cacheTTL is how long a reviewed token's answer is reused (never past the token's
	// expiry): the bound on how long a deleted ServiceAccount's token keeps working.
	// Between 1s and 5m; default 30s.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="cacheTTL must be between 1s and 5m"
	// +optional
	CacheTTL *metav1.Duration `json:"cacheTTL,omitempty"`
}

// KubernetesRBACSpec authorizes registry requests with Kubernetes RBAC: each action is a
// SubjectAccessReview of verb pull, push or delete on the virtual resource
// repositories.registry.dockyard.dev. The repository's first path segment is the
// namespace and the rest the resource name (team-a/app/api: namespace team-a, name
// app/api); a repository whose first segment is not a valid namespace name, or that has a
// single segment, is outside any namespace and only a ClusterRoleBinding grants it. The
// ClusterRoles dockyard-repository-viewer (pull; aggregated into view) and
// dockyard-repository-manager (pull, push, delete; aggregated into edit and admin) come
// with the operator.
//
// RBAC adds to the access rules: an action is allowed when a rule or RBAC allows it. The
// subject is the user name and groups from any provider; names and groups starting with
// system: are Kubernetes' own and are honoured only for ServiceAccount tokens.
type KubernetesRBACSpec struct {
	// cacheTTL is how long a decision is reused: the bound on how long a removed
	// RoleBinding keeps granting, or a new one takes to grant. Between 1s and 5m; default 10s.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="cacheTTL must be between 1s and 5m"
	// +optional
	CacheTTL *metav1.Duration `json:"cacheTTL,omitempty"`
}

// PullSecretsSpec writes, in every namespace the selector selects that asks for it with the
// label pull-from.registry.dockyard.dev/<registry-namespace>=true (the Registry's own
// namespace needs none; namespace editors cannot set labels), a Secret of type
// kubernetes.io/dockerconfigjson named dockyard-pull.<registry-namespace>.<registry> with a
// short-lived credential that may only pull <namespace>/... from this Registry, and adds it
// to the imagePullSecrets of the named ServiceAccounts there. The credential is signed with
// the Registry's token keys (nothing is stored in the registry, so a new namespace is
// served as soon as its Secret is written), renewed at half its lifetime, and removed —
// Secret and ServiceAccount entries — when the namespace leaves the selector, pullSecrets
// is removed, or the Registry is deleted. No long-lived secret leaves the Registry's
// namespace; a copied credential stops working when it expires.
type PullSecretsSpec struct {
	// namespaceSelector selects the namespaces. {} selects every namespace.
	// +required
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`

	// serviceAccounts whose imagePullSecrets get the Secret, by name; "*" means every
	// ServiceAccount in the namespace. Default [default].
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$`
	// +listType=set
	// +optional
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`

	// credentialLifetime is how long a written credential is valid; it is renewed at half
	// of it. Between 30m and 24h; default 4h.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30m') && duration(self) <= duration('24h')",message="credentialLifetime must be between 30m and 24h"
	// +optional
	CredentialLifetime *metav1.Duration `json:"credentialLifetime,omitempty"`
}

// PullSecretsStatus reports the pull Secrets written.
type PullSecretsStatus struct {
	// secretName is the name of the Secret in each selected namespace.
	SecretName string `json:"secretName"`
	// namespaces holding a current pull Secret.
	Namespaces int32 `json:"namespaces"`
	// serviceAccounts whose imagePullSecrets name it.
	ServiceAccounts int32 `json:"serviceAccounts"`
	// nextRenewalTime is when the oldest credential is renewed.
	// +optional
	NextRenewalTime *metav1.Time `json:"nextRenewalTime,omitempty"`
	// message says why Secrets could not be written, when they could not.
	// +optional
	Message string `json:"message,omitempty"`
}

// NodeTrustSpec runs a DaemonSet that installs the Registry's CA (the ca.crt key of its TLS
// Secret; the private key never leaves the Registry's namespace) for the nodes' container
// runtime, so the kubelet pulls from a Registry whose certificate comes from a private CA.
// It writes <containerdConfigPath>/<host>/hosts.toml and dockyard-ca.crt for containerd and,
// when crioCertsDir is set, <crioCertsDir>/<host>/dockyard-ca.crt for CRI-O, for every host
// the Registry is reached by (its Service names with port, the Ingress host); it follows
// certificate renewals and removes what it wrote when the Registry or nodeTrust is removed.
// Nodes must resolve those names (the Ingress host, or cluster DNS on the node).
//
// The pods mount those directories from the host (hostPath) and write as root without any
// capability; the Registry's namespace must admit them (Pod Security level privileged).
type NodeTrustSpec struct {
	// containerdConfigPath is containerd's registry config_path. Default
	// /etc/containerd/certs.d. Must be a directory named certs.d.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/([A-Za-z0-9_-][A-Za-z0-9._-]*/)*certs\.d$`
	// +optional
	ContainerdConfigPath string `json:"containerdConfigPath,omitempty"`

	// crioCertsDir is where CRI-O reads registry CAs (containers-certs.d), usually
	// /etc/containers/certs.d; unset skips CRI-O. Must be a directory named certs.d.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/([A-Za-z0-9_-][A-Za-z0-9._-]*/)*certs\.d$`
	// +optional
	CRIOCertsDir string `json:"crioCertsDir,omitempty"`

	// nodeSelector limits the nodes; default every node.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations of the DaemonSet's pods. Default: tolerate every taint, so tainted nodes
	// trust the Registry too.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
}
