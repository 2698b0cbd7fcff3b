package registryconfig

import (
	"fmt"
	"time"
)

// Kubernetes is the cluster as an identity provider (ServiceAccount tokens, checked with
// TokenReview) and as an authorizer (Kubernetes RBAC, asked with SubjectAccessReview).
type Kubernetes struct {
	// Kubeconfig is the kubeconfig file of the API server to ask; empty means the pod's own
	// ServiceAccount (in-cluster configuration).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Timeout bounds each request to the API server. Default 5s.
	Timeout Duration `json:"timeout,omitempty"`
	// ServiceAccounts, when set, accepts ServiceAccount tokens as passwords and Bearer
	// tokens.
	ServiceAccounts *ServiceAccounts `json:"serviceAccounts,omitempty"`
	// RBAC, when set, authorizes requests with SubjectAccessReviews on the virtual resource
	// repositories.registry.dockyard.dev, in addition to the access rules.
	RBAC *RBAC `json:"rbac,omitempty"`
}

// ServiceAccounts configures ServiceAccount token logins.
type ServiceAccounts struct {
	// Audiences are the audiences a token must be issued for (one of them); a token for
	// the API server itself or another service is refused.
	Audiences []string `json:"audiences"`
	// CacheTTL is how long a reviewed token's answer is reused (never past the token's
	// expiry): the bound on how long a deleted ServiceAccount's token keeps working.
	// Default 30s.
	CacheTTL Duration `json:"cacheTTL,omitempty"`
}

// RBAC configures Kubernetes RBAC authorization.
type RBAC struct {
	// CacheTTL is how long a SubjectAccessReview's answer is reused: the bound on how long
	// a removed RoleBinding keeps granting. Default 10s.
	CacheTTL Duration `json:"cacheTTL,omitempty"`
}

// The virtual resource Kubernetes RBAC authorizes: verbs pull, push and delete on
// repositories.registry.dockyard.dev, in the namespace named by the repository's first
// path segment, with the rest of the path as the resource name.
const (
	RBACGroup    = "registry.dockyard.dev"
	RBACResource = "repositories"
)

// Maximum cache lifetimes: staleness a person would not expect from "Kubernetes RBAC".
const (
	MaxServiceAccountCacheTTL = 5 * time.Minute
	MaxRBACCacheTTL           = 5 * time.Minute
)

func (k *Kubernetes) defaults() {
	if k.Timeout.Duration == 0 {
		k.Timeout.Duration = 5 * time.Second
	}
	if s := k.ServiceAccounts; s != nil && s.CacheTTL.Duration == 0 {
		s.CacheTTL.Duration = 30 * time.Second
	}
	if r := k.RBAC; r != nil && r.CacheTTL.Duration == 0 {
		r.CacheTTL.Duration = 10 * time.Second
	}
}

func (k *Kubernetes) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("auth.kubernetes."+format, args...)) }
	if k.ServiceAccounts == nil && k.RBAC == nil {
		add("at least one of serviceAccounts and rbac is required")
	}
	if k.Timeout.Duration < 0 {
		add("timeout: must not be negative")
	}
	if s := k.ServiceAccounts; s != nil {
		if len(s.Audiences) == 0 {
			add("serviceAccounts.audiences: at least one is required")
		}
		for i, a := range s.Audiences {
			if a == "" {
				add("serviceAccounts.audiences[%d]: must not be empty", i)
			}
		}
		if s.CacheTTL.Duration < 0 || s.CacheTTL.Duration > MaxServiceAccountCacheTTL {
			add("serviceAccounts.cacheTTL: must be between 0 and %s", MaxServiceAccountCacheTTL)
		}
	}
	if r := k.RBAC; r != nil && (r.CacheTTL.Duration < 0 || r.CacheTTL.Duration > MaxRBACCacheTTL) {
		add("rbac.cacheTTL: must be between 0 and %s", MaxRBACCacheTTL)
	}
	return errs
}
