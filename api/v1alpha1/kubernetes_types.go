package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceAccountAuthSpec accepts Kubernetes ServiceAccount tokens: a pod or Job presents
// its projected token (audience one of audiences) as the password or as a Bearer token, and
// is the user system:serviceaccount:<namespace>:<name> with the groups the API server
// gives it (system:serviceaccounts, system:serviceaccounts:<namespace>).
//
// The registry checks each new token with a TokenReview (the operator binds the registry's
// ServiceAccount to system:auth-delegator), so a token of a deleted ServiceAccount or pod
// stops working within cacheTTL.
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

// PullSecretsSpec writes, in every namespace the selector selects, a Secret of type
// kubernetes.io/dockerconfigjson named dockyard-pull.<registry-namespace>.<registry> with a
// short-lived credential that may only pull <namespace>/** from this Registry, and adds it
// to the imagePullSecrets of the named ServiceAccounts there. The credential is signed with
// the Registry's token keys (nothing is stored in the registry, so a new namespace is
// served as soon as its Secret is written), renewed at half its lifetime, and removed —
// Secret and ServiceAccount entries — when the namespace leaves the selector, pullSecrets
// is removed, or the Registry is deleted. No long-lived secret leaves the Registry's
// namespace.
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
