// Package storage turns the storage section of the registry config into distribution
// storage-driver parameters, reading credentials from the environment variables the config
// names, and creates drivers. It registers every driver Dockyard supports.
package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"

	// Each driver registers itself with the factory; these are the backends Dockyard offers.
	// Azure Blob Storage driver.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/azure"
	// Local or PVC filesystem driver.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	// Google Cloud Storage driver.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/gcs"
	// In-memory driver for tests.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	// S3 and S3-compatible driver.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Getenv reads an environment variable (os.Getenv, or a map in tests).
type Getenv func(string) string

// Params returns distribution's driver name and parameters for s.
func Params(s registryconfig.Storage, getenv Getenv) (string, map[string]any, error) {
	switch {
	case s.Filesystem != nil:
		return "filesystem", map[string]any{"rootdirectory": s.Filesystem.RootDirectory}, nil
	case s.InMemory != nil:
		return "inmemory", map[string]any{}, nil
	case s.S3 != nil:
		p := map[string]any{
			"bucket":         s.S3.Bucket,
			"region":         s.S3.Region,
			"forcepathstyle": s.S3.ForcePathStyle,
			"encrypt":        s.S3.Encrypt,
		}
		if s.S3.Endpoint != "" {
			p["regionendpoint"] = s.S3.Endpoint
		}
		if s.S3.RootDirectory != "" {
			p["rootdirectory"] = s.S3.RootDirectory
		}
		if s.S3.AccessKeyIDEnv != "" {
			id, err := required(getenv, s.S3.AccessKeyIDEnv, "storage.s3.accessKeyIDEnv")
			if err != nil {
				return "", nil, err
			}
			secret, err := required(getenv, s.S3.SecretAccessKeyEnv, "storage.s3.secretAccessKeyEnv")
			if err != nil {
				return "", nil, err
			}
			p["accesskey"], p["secretkey"] = id, secret
		}
		return "s3aws", p, nil
	case s.GCS != nil:
		p := map[string]any{"bucket": s.GCS.Bucket}
		if s.GCS.RootDirectory != "" {
			p["rootdirectory"] = s.GCS.RootDirectory
		}
		if s.GCS.KeyFile != "" {
			p["keyfile"] = s.GCS.KeyFile
		}
		return "gcs", p, nil
	case s.Azure != nil:
		p := map[string]any{"accountname": s.Azure.AccountName, "container": s.Azure.Container}
		if s.Azure.RootDirectory != "" {
			p["rootdirectory"] = s.Azure.RootDirectory
		}
		if s.Azure.ServiceURL != "" {
			p["serviceurl"] = s.Azure.ServiceURL
		}
		if s.Azure.AccountKeyEnv != "" {
			key, err := required(getenv, s.Azure.AccountKeyEnv, "storage.azure.accountKeyEnv")
			if err != nil {
				return "", nil, err
			}
			p["accountkey"] = key
			p["credentials"] = map[string]any{"type": "shared_key"}
		} else {
			p["credentials"] = map[string]any{"type": "default_credentials"}
		}
		return "azure", p, nil
	}
	return "", nil, fmt.Errorf("storage: no backend configured")
}

func required(getenv Getenv, name, field string) (string, error) {
	v := getenv(name)
	if v == "" {
		return "", fmt.Errorf("%s: environment variable %s is empty or unset", field, name)
	}
	return v, nil
}

// NewDriver creates the storage driver for s.
func NewDriver(ctx context.Context, s registryconfig.Storage, getenv Getenv) (storagedriver.StorageDriver, error) {
	name, params, err := Params(s, getenv)
	if err != nil {
		return nil, err
	}
	d, err := factory.Create(ctx, name, params)
	if err != nil {
		return nil, fmt.Errorf("create %s storage driver: %w", name, err)
	}
	return d, nil
}

// sharedDriverName is the factory name under which Share hands a driver instance to
// distribution, so that distribution's app and Dockyard's own code (GC markers, the
// referrers index) use one driver: one connection pool, and one in-memory store in tests.
const sharedDriverName = "dockyard-shared"

var (
	sharedMu      sync.Mutex
	sharedDrivers = map[string]storagedriver.StorageDriver{}
)

func init() {
	factory.Register(sharedDriverName, sharedFactory{})
}

type sharedFactory struct{}

func (sharedFactory) Create(_ context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
	id, _ := params["id"].(string)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	d, ok := sharedDrivers[id]
	if !ok {
		return nil, fmt.Errorf("%s: no driver registered as %q", sharedDriverName, id)
	}
	return d, nil
}

// Share registers d and returns the distribution storage driver name and parameters that
// make distribution use d itself. release forgets d (call it when the app is shut down).
func Share(d storagedriver.StorageDriver) (name string, params map[string]any, release func()) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	sharedMu.Lock()
	sharedDrivers[id] = d
	sharedMu.Unlock()
	return sharedDriverName, map[string]any{"id": id}, func() {
		sharedMu.Lock()
		delete(sharedDrivers, id)
		sharedMu.Unlock()
	}
}
