package registryconfig

import (
	"fmt"
	"strings"
	"time"
)

// Cache makes the registry a pull-through cache of upstream registries, each under its own
// repository prefix: a pull of <prefix>/<path> that the registry lacks (or whose tag it
// checked longer than TagTTL ago) is fetched from the upstream's <path>, stored, and
// served. Repositories under a prefix are read-only for clients.
type Cache struct {
	Upstreams []CacheUpstream `json:"upstreams"`
}

// CacheUpstream is one cached registry.
type CacheUpstream struct {
	// Prefix is the first segment(s) of the cached repositories, e.g. "docker.io".
	Prefix string `json:"prefix"`
	// URL is the upstream registry, https://host[:port] (or http://).
	URL string `json:"url"`
	// CredentialsDir, when set, holds the upstream credentials: files username and
	// password, or .dockerconfigjson (re-read for every fetch).
	CredentialsDir string `json:"credentialsDir,omitempty"`
	// CAFile, when set, is the PEM bundle that signs the upstream's certificate.
	CAFile string `json:"caFile,omitempty"`
	// TagTTL is how long a tag fetched from the upstream is served without asking the
	// upstream again. Default 5m. Content by digest never expires here.
	TagTTL Duration `json:"tagTTL,omitempty"`
}

// DefaultCacheTagTTL is CacheUpstream.TagTTL's default.
const DefaultCacheTagTTL = 5 * time.Minute

// CacheDir is where the operator mounts upstream credentials and CA bundles: CacheDir/<index>/.
const CacheDir = "/etc/dockyard/cache"

// Host is the upstream's host[:port] and whether it is plain HTTP.
func (u CacheUpstream) Host() (string, bool) {
	plain := strings.HasPrefix(u.URL, "http://")
	h := strings.TrimPrefix(strings.TrimPrefix(u.URL, "https://"), "http://")
	return strings.TrimSuffix(h, "/"), plain
}

func (c *Cache) validate() error {
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		if u.Prefix == "" || u.URL == "" {
			return fmt.Errorf("cache.upstreams[%d]: prefix and url are required", i)
		}
		for p := range seen {
			if p == u.Prefix || strings.HasPrefix(u.Prefix, p+"/") || strings.HasPrefix(p, u.Prefix+"/") {
				return fmt.Errorf("cache.upstreams[%d]: prefix %q overlaps %q", i, u.Prefix, p)
			}
		}
		seen[u.Prefix] = true
	}
	return nil
}
