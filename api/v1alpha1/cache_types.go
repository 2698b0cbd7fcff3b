package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// PullThroughCacheSpec makes a Registry a pull-through cache of upstream registries: a
// pull of <prefix>/<path> is answered from the Registry's storage, and what it lacks (or a
// tag checked longer than tagTTL ago) is fetched from the upstream's <path> first, whole,
// then served. With the upstream unreachable, what was pulled before is still served.
// Repositories under a prefix are read-only for clients; cached content is subject to
// retention and garbage collection like the rest (a RetentionPolicy with pulledWithin on
// <prefix>/** expires what nobody pulls). Access rules apply as for any repository: a
// client needs pull on <prefix>/<path>.
type PullThroughCacheSpec struct {
	// upstreams are the cached registries, by prefix.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=prefix
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.all(b, a.prefix == b.prefix || !a.prefix.startsWith(b.prefix + '/')))",message="pullThroughCache.upstreams: one prefix may not contain another (e.g. docker.io and docker.io/library)"
	// +required
	Upstreams []CacheUpstream `json:"upstreams"`
}

// CacheUpstream is one registry a Registry caches.
// +kubebuilder:validation:XValidation:rule="!(self.url.startsWith('http://') && has(self.caBundle))",message="caBundle needs an https URL"
type CacheUpstream struct {
	// prefix is the first segment(s) of the cached repositories: docker.io caches
	// docker.io/library/nginx from the upstream's library/nginx.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*)*$')",message="prefix: lowercase repository path segments separated by '/' (e.g. docker.io or ghcr), no wildcards"
	// +required
	Prefix string `json:"prefix"`

	// url of the upstream registry: https://host[:port] (https when no scheme is given),
	// e.g. https://registry-1.docker.io.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=260
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?://)?([a-z0-9]([-a-z0-9]*[a-z0-9])?)([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?/?$')",message="url: a registry address such as https://registry.example.com or registry.example.com:5000 (lowercase host, optional port, no path)"
	// +required
	URL string `json:"url"`

	// credentialsSecretRef names a Secret with the upstream's credentials: a
	// kubernetes.io/dockerconfigjson Secret (the entry for the upstream's host), or keys
	// username and password. Mounted into the registry pods and re-read for every fetch.
	// Anonymous when unset.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`

	// caBundle signs the upstream's certificate when the system's roots do not.
	// +optional
	CABundle *CABundleSource `json:"caBundle,omitempty"`

	// tagTTL is how long a tag fetched from the upstream is served without asking the
	// upstream again (a HEAD; an image it moved to is then fetched). Defaults to 5m.
	// Content by digest never changes and is never asked for again.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('168h')",message="tagTTL: between 1s and 168h"
	// +optional
	TagTTL *metav1.Duration `json:"tagTTL,omitempty"`
}
