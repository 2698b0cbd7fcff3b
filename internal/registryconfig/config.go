package registryconfig

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// APIVersion identifies the config file format.
const APIVersion = "registry.dockyard.dev/config/v1"

// Config is the registry workload's configuration file. See docs/registry-config.md.
type Config struct {
	// APIVersion must be APIVersion.
	APIVersion string `json:"apiVersion"`
	// HTTP configures the registry API listener.
	HTTP HTTP `json:"http"`
	// Metrics configures the Prometheus listener.
	Metrics Metrics `json:"metrics"`
	// Storage configures exactly one storage backend.
	Storage Storage `json:"storage"`
	// Auth configures authentication and access rules; nil disables authentication.
	Auth *Auth `json:"auth,omitempty"`
	// GC configures `dockyard registry gc`.
	GC GC `json:"gc"`
	// ImmutableTags are tags that, once pushed, are never moved or deleted.
	ImmutableTags []ImmutableTagRule `json:"immutableTags,omitempty"`
	// Log configures logging.
	Log Log `json:"log"`
	// Events, when set, sends pushes and deletes to the operator.
	Events *Events `json:"events,omitempty"`
	// Cache, when set, makes repositories under its prefixes a pull-through cache.
	Cache *Cache `json:"cache,omitempty"`
	// Compliance, when set, refuses manifests of non-compliant images to clients outside
	// the cluster.
	Compliance *Compliance `json:"compliance,omitempty"`
	// Backup, when set, configures `dockyard registry backup`.
	Backup *Backup `json:"backup,omitempty"`
	// Restore, when set, configures `dockyard registry restore`.
	Restore *Restore `json:"restore,omitempty"`
}

// HTTP is the registry API listener.
type HTTP struct {
	// Addr is the listen address, e.g. ":5000".
	Addr string `json:"addr"`
	// TLS, when set, serves HTTPS from the given files (reloaded when they change).
	TLS *TLS `json:"tls,omitempty"`
	// SecretEnv names the environment variable holding the secret replicas share to sign
	// upload state. Empty means a random per-process secret (single replica only).
	SecretEnv string `json:"secretEnv,omitempty"`
	// DrainTimeout bounds how long a SIGTERM waits for in-flight requests. Default 30s.
	DrainTimeout Duration `json:"drainTimeout,omitempty"`
	// ShutdownDelay keeps accepting requests this long after SIGTERM, with the health path
	// answering 503, before the listener closes and draining starts, so that Service
	// endpoints and load balancers stop sending traffic first. Default 0 (close at once).
	ShutdownDelay Duration `json:"shutdownDelay,omitempty"`
}

// TLS points at PEM files.
type TLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// Metrics is the Prometheus listener.
type Metrics struct {
	// Addr is the listen address, e.g. ":5001"; empty disables metrics.
	Addr string `json:"addr,omitempty"`
}

// Storage holds exactly one backend.
type Storage struct {
	Filesystem *FilesystemStorage `json:"filesystem,omitempty"`
	S3         *S3Storage         `json:"s3,omitempty"`
	GCS        *GCSStorage        `json:"gcs,omitempty"`
	Azure      *AzureStorage      `json:"azure,omitempty"`
	InMemory   *InMemoryStorage   `json:"inmemory,omitempty"`
	// RedirectDownloads answers blob downloads with a redirect to a pre-signed URL of the
	// object store (s3, gcs, azure only).
	RedirectDownloads bool `json:"redirectDownloads,omitempty"`
}

// FilesystemStorage stores under a local directory.
type FilesystemStorage struct {
	RootDirectory string `json:"rootDirectory"`
}

// S3Storage stores in an S3 or S3-compatible bucket.
type S3Storage struct {
	Bucket         string `json:"bucket"`
	Region         string `json:"region"`
	Endpoint       string `json:"endpoint,omitempty"`
	ForcePathStyle bool   `json:"forcePathStyle,omitempty"`
	Encrypt        bool   `json:"encrypt,omitempty"`
	// RootDirectory is an optional key prefix inside the bucket.
	RootDirectory string `json:"rootDirectory,omitempty"`
	// AccessKeyIDEnv and SecretAccessKeyEnv name environment variables holding static
	// credentials; empty means the SDK's default credential chain (IRSA, instance role).
	AccessKeyIDEnv     string `json:"accessKeyIDEnv,omitempty"`
	SecretAccessKeyEnv string `json:"secretAccessKeyEnv,omitempty"`
}

// GCSStorage stores in a Google Cloud Storage bucket.
type GCSStorage struct {
	Bucket        string `json:"bucket"`
	RootDirectory string `json:"rootDirectory,omitempty"`
	// KeyFile is a service-account JSON key; empty means application default credentials.
	KeyFile string `json:"keyFile,omitempty"`
}

// AzureStorage stores in an Azure Blob Storage container.
type AzureStorage struct {
	AccountName   string `json:"accountName"`
	Container     string `json:"container"`
	RootDirectory string `json:"rootDirectory,omitempty"`
	// AccountKeyEnv names an environment variable holding the shared key; empty means
	// default Azure credentials (workload identity).
	AccountKeyEnv string `json:"accountKeyEnv,omitempty"`
	// ServiceURL overrides the blob endpoint (e.g. an emulator); empty means Azure's.
	ServiceURL string `json:"serviceURL,omitempty"`
}

// InMemoryStorage keeps everything in process memory: for tests and throwaway use.
type InMemoryStorage struct{}

// GC configures garbage collection.
type GC struct {
	// DeleteUntagged also removes manifests no tag references (keeping the children of
	// referenced indexes).
	DeleteUntagged bool `json:"deleteUntagged,omitempty"`
	// GracePeriod protects blobs and manifests written or re-linked more recently than this
	// from deletion, so in-flight pushes are never broken. Default 1h.
	GracePeriod Duration `json:"gracePeriod,omitempty"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `json:"level,omitempty"`
	// Format is json or text. Default json.
	Format string `json:"format,omitempty"`
}

// GCSummary is what one `dockyard registry gc` run reports, as JSON, in its summary file.
type GCSummary struct {
	// Result is "Succeeded" or "Failed".
	Result           string `json:"result"`
	BlobsDeleted     int64  `json:"blobsDeleted"`
	ManifestsDeleted int64  `json:"manifestsDeleted"`
	BytesFreed       int64  `json:"bytesFreed"`
	// DurationSeconds is the wall time of the run.
	DurationSeconds float64 `json:"durationSeconds"`
	// Message explains a failure.
	Message string `json:"message,omitempty"`
}

// GC results.
const (
	GCResultSucceeded = "Succeeded"
	GCResultFailed    = "Failed"
)

// Duration is a time.Duration written as a Go duration string ("90s", "1h").
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		d.Duration = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	d.Duration = v
	return nil
}

// Defaults fills unset optional fields.
func (c *Config) Defaults() {
	if c.Cache != nil {
		for i := range c.Cache.Upstreams {
			if c.Cache.Upstreams[i].TagTTL.Duration == 0 {
				c.Cache.Upstreams[i].TagTTL.Duration = DefaultCacheTagTTL
			}
		}
	}
	if c.HTTP.DrainTimeout.Duration == 0 {
		c.HTTP.DrainTimeout.Duration = 30 * time.Second
	}
	if c.GC.GracePeriod.Duration == 0 {
		c.GC.GracePeriod.Duration = time.Hour
	}
	if c.Auth != nil {
		c.Auth.defaults()
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
}

// repositoryPattern is the grammar of access-rule repository patterns: '/'-separated
// segments, each a lowercase repository name component in which '*' matches any run of
// characters within the segment, or the whole segment '**' (any number of segments).
var repositoryPattern = regexp.MustCompile(`^[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*(/[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*)*$`)

// RepositoryPatternRegexp is repositoryPattern's source, for use in API validation.
var RepositoryPatternRegexp = repositoryPattern.String()

// ValidRepositoryPattern reports whether p follows the pattern grammar.
func ValidRepositoryPattern(p string) bool { return repositoryPattern.MatchString(p) }

// Validate checks the config for mistakes a person can fix; every problem is reported.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.APIVersion != APIVersion {
		add("apiVersion: must be %q, got %q", APIVersion, c.APIVersion)
	}
	if c.HTTP.Addr == "" {
		add("http.addr: required (e.g. \":5000\")")
	}
	if c.Cache != nil {
		if err := c.Cache.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if b := c.Backup; b != nil {
		if err := validateStore("backup.store", b.Store); err != nil {
			errs = append(errs, err)
		}
		if b.Name == "" || b.Keep < 0 {
			add("backup: name is required and keep may not be negative")
		}
	}
	if r := c.Restore; r != nil {
		if err := validateStore("restore.store", r.Store); err != nil {
			errs = append(errs, err)
		}
	}
	if cp := c.Compliance; cp != nil && cp.PolicyFile == "" {
		add("compliance.policyFile: required")
	}
	if e := c.Events; e != nil && (e.URL == "" || e.TokenFile == "" || e.Registry == "") {
		add("events: url, tokenFile and registry are all required")
	}
	if t := c.HTTP.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "") {
		add("http.tls: certFile and keyFile are both required")
	}
	n := 0
	s := c.Storage
	if s.Filesystem != nil {
		n++
		if s.Filesystem.RootDirectory == "" {
			add("storage.filesystem.rootDirectory: required")
		}
	}
	if s.S3 != nil {
		n++
		if s.S3.Bucket == "" || s.S3.Region == "" {
			add("storage.s3: bucket and region are required")
		}
		if (s.S3.AccessKeyIDEnv == "") != (s.S3.SecretAccessKeyEnv == "") {
			add("storage.s3: accessKeyIDEnv and secretAccessKeyEnv must be set together")
		}
	}
	if s.GCS != nil {
		n++
		if s.GCS.Bucket == "" {
			add("storage.gcs.bucket: required")
		}
	}
	if s.Azure != nil {
		n++
		if s.Azure.AccountName == "" || s.Azure.Container == "" {
			add("storage.azure: accountName and container are required")
		}
	}
	if s.InMemory != nil {
		n++
	}
	if n != 1 {
		add("storage: exactly one of filesystem, s3, gcs, azure, inmemory must be set (found %d)", n)
	}
	if s.RedirectDownloads && s.S3 == nil && s.GCS == nil && s.Azure == nil {
		add("storage.redirectDownloads: only object storage (s3, gcs, azure) can redirect downloads")
	}
	errs = append(errs, validateImmutableTags(c.ImmutableTags)...)
	if c.Auth != nil {
		errs = append(errs, c.Auth.validate()...)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		add("log.format: must be json or text, got %q", c.Log.Format)
	}
	return errors.Join(errs...)
}

// Marshal renders the config as YAML.
func (c *Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }

// Parse reads a YAML config, rejects unknown fields, applies defaults and validates it.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("parse registry config: %w", err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid registry config: %w", err)
	}
	return &c, nil
}

// Load reads and parses the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read registry config: %w", err)
	}
	return Parse(data)
}
