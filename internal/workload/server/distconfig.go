package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3/configuration"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

// StorageCheckInterval is how often the storage driver's health is checked for readiness.
var StorageCheckInterval = 5 * time.Second

// distributionConfig translates our config into distribution's. The storage driver is the
// one named by driver and params (see storage.Share); ac, when not nil, is installed as the
// access controller.
func distributionConfig(cfg *registryconfig.Config, driver string, params map[string]any, getenv storage.Getenv, ac *access.Controller) (*configuration.Configuration, error) {
	dc := &configuration.Configuration{Version: "0.1"}
	dc.Storage = configuration.Storage{
		driver:   params,
		"delete": {"enabled": true},
		// Blobs are served through the registry unless storage.redirectDownloads says every
		// client can reach (and trusts) the object store: a redirect would otherwise send
		// clients somewhere they cannot follow.
		"redirect": {"disable": !cfg.Storage.RedirectDownloads},
		// No "cache" section on purpose: distribution's blob-descriptor cache is not told
		// about blobs the out-of-process garbage collector deletes, and would claim they
		// still exist.
	}
	// Non-distributable ("foreign") layers name where clients fetch them; the registry never
	// fetches them itself. Accept http(s) URLs, as the distribution spec's conformance suite
	// and Docker Hub do (distribution's default refuses every URL, with a 500).
	dc.Validation.Manifests.URLs.Allow = []string{`^https?://`}
	dc.HTTP.Addr = cfg.HTTP.Addr
	secret, err := httpSecret(cfg.HTTP.SecretEnv, getenv)
	if err != nil {
		return nil, err
	}
	dc.HTTP.Secret = secret
	dc.HTTP.Headers = map[string][]string{"X-Content-Type-Options": {"nosniff"}}
	// Readiness follows storage: unready after two failed checks (about 10s), ready again at
	// the first good one (within StorageCheckInterval).
	dc.Health.StorageDriver = configuration.StorageDriver{Enabled: true, Interval: StorageCheckInterval, Threshold: 2}
	dc.Catalog.MaxEntries = access.CatalogPageSize
	dc.Log.Level = configuration.Loglevel(cfg.Log.Level)
	dc.Log.AccessLog.Disabled = true
	if ac != nil {
		dc.Auth = configuration.Auth{access.ControllerName: {access.OptionController: ac}}
	}
	return dc, nil
}

// httpSecret reads the shared upload-state secret, or makes a random one when none is
// configured (only correct with a single replica).
func httpSecret(env string, getenv storage.Getenv) (string, error) {
	if env != "" {
		v := getenv(env)
		if v == "" {
			return "", fmt.Errorf("http.secretEnv: environment variable %s is empty or unset", env)
		}
		return v, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate HTTP secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
