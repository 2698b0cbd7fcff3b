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
	// Log configures logging.
	Log Log `json:"log"`
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

// Auth is authentication and authorization.
type Auth struct {
	// HtpasswdFile is the users file (bcrypt htpasswd); re-read when it changes. Empty when
	// no htpasswd users are configured (another provider must be).
	HtpasswdFile string `json:"htpasswdFile,omitempty"`
	// GroupsFile optionally maps groups to users (see UsersGroupsKey); re-read when it changes.
	GroupsFile string `json:"groupsFile,omitempty"`
	// Realm is the Basic realm in challenges. Default "dockyard".
	Realm string `json:"realm,omitempty"`
	// AnonymousPull lets unauthenticated clients pull every repository.
	AnonymousPull bool `json:"anonymousPull,omitempty"`
	// Access lists the rules; a user is allowed an action when any rule grants it. An empty
	// list grants every htpasswd user the Manager role on every repository (LDAP and OIDC
	// users get nothing without a rule: a whole directory vouches for them).
	Access []AccessRule `json:"access,omitempty"`
	// Token, when set, turns on the registry token service (the Docker registry token
	// protocol): 401 answers carry a Bearer challenge pointing at TokenPath, where clients
	// exchange their credentials for a short-lived signed token. Basic credentials sent
	// directly keep working.
	Token *Token `json:"token,omitempty"`
	// LDAP, when set, authenticates users against an LDAP directory / Active Directory.
	LDAP *LDAP `json:"ldap,omitempty"`
	// OIDC, when set, accepts ID tokens of an OpenID Connect provider as passwords and as
	// Bearer tokens.
	OIDC *OIDC `json:"oidc,omitempty"`
	// RobotsFile, when set, holds the robot accounts (Robots as JSON), written by the
	// operator; re-read when it changes.
	RobotsFile string `json:"robotsFile,omitempty"`
}

// RobotUserPrefix starts the user name of every robot account: robot+<name>. Names with
// it are checked only against the robots file.
const RobotUserPrefix = "robot+"

// Robots is the content of Auth.RobotsFile.
type Robots struct {
	Robots []Robot `json:"robots"`
}

// Robot is a machine account: its user name, what it may do, and the credentials that
// log it in (hashes only).
type Robot struct {
	// User is RobotUserPrefix + the robot's name.
	User         string       `json:"user"`
	Repositories []string     `json:"repositories"`
	Role         Role         `json:"role"`
	Credentials  []RobotToken `json:"credentials"`
}

// RobotToken is one credential of a robot: the SHA-256 of a random password (256 bits of
// entropy, so a fast hash is safe) and its validity.
type RobotToken struct {
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// OIDC verifies ID tokens of an OpenID Connect provider: signature (keys from the
// provider's JWKS, refetched when it rotates), issuer, audience, expiry, then the claims.
type OIDC struct {
	// IssuerURL is the provider's issuer (https); discovery reads
	// IssuerURL/.well-known/openid-configuration.
	IssuerURL string `json:"issuerURL"`
	// Audiences are the accepted aud values (client IDs); a token must name one.
	Audiences []string `json:"audiences"`
	// UsernameClaim holds the user name (default sub); with email, email_verified must not
	// be false.
	UsernameClaim string `json:"usernameClaim,omitempty"`
	// UsernamePrefix is prepended to the user name (e.g. "oidc:"), so OIDC names cannot
	// collide with other providers' names in access rules.
	UsernamePrefix string `json:"usernamePrefix,omitempty"`
	// GroupsClaim holds the groups, a list of strings or one string (default groups).
	GroupsClaim string `json:"groupsClaim,omitempty"`
	// GroupsPrefix is prepended to every group name.
	GroupsPrefix string `json:"groupsPrefix,omitempty"`
	// RequiredClaims must all be present with these string values.
	RequiredClaims map[string]string `json:"requiredClaims,omitempty"`
	// CAFile is a PEM bundle of the CAs to trust for the provider; empty means the system
	// roots.
	CAFile string `json:"caFile,omitempty"`
	// LoginClientID is the public client `dockyard login` uses (device flow); its ID
	// tokens are accepted too (it is an audience). Empty turns `dockyard login` off.
	LoginClientID string `json:"loginClientID,omitempty"`
	// Timeout bounds each request to the provider. Default 10s.
	Timeout Duration `json:"timeout,omitempty"`
}

// OIDCLoginPath serves, when OIDC login is on, what `dockyard login` needs to know:
// {"issuer", "clientID", "scopes"}.
const OIDCLoginPath = "/auth/oidc"

// Token configures the token service.
type Token struct {
	// KeysFile holds the signing keys (TokenKeys as JSON), written by the operator; re-read
	// when it changes.
	KeysFile string `json:"keysFile"`
	// Issuer is the iss claim of issued tokens, checked on the way back in.
	Issuer string `json:"issuer"`
	// Service is the service name in challenges and the aud claim of tokens.
	Service string `json:"service"`
	// TTL is how long an issued token is valid. Default 5m.
	TTL Duration `json:"ttl,omitempty"`
	// Challenge is the scheme of 401 answers: Bearer (default) or Basic (the token endpoint
	// still answers, but clients are sent to it only when they ask).
	Challenge string `json:"challenge,omitempty"`
	// SessionTTL is how long a refresh token is valid: the token endpoint hands one to an
	// OIDC login that asks (docker's offline_token=true, `dockyard login`), and clients
	// store it as their identity token instead of the short-lived ID token. Default 12h.
	SessionTTL Duration `json:"sessionTTL,omitempty"`
}

// Challenge schemes.
const (
	ChallengeBearer = "Bearer"
	ChallengeBasic  = "Basic"
)

// TokenPath is where the workload serves the token endpoint, on the API port.
const TokenPath = "/auth/token"

// TokenKeys is the content of Token.KeysFile: the keys of the token service, newest last.
// Tokens are signed with the newest key whose SignFrom has passed and verified with any
// key listed, so a new key can be published (and reach every replica) before it is used,
// and an old one kept until the tokens it signed have expired.
type TokenKeys struct {
	Keys []TokenKey `json:"keys"`
}

// TokenKey is one ECDSA P-256 signing key.
type TokenKey struct {
	// ID is the key ID (the kid header of the tokens it signs).
	ID string `json:"id"`
	// PrivateKey is the PKCS#8 private key in PEM.
	PrivateKey string `json:"privateKey"`
	// SignFrom is when replicas start signing with this key.
	SignFrom time.Time `json:"signFrom"`
}

// LDAP authenticates against a directory: bind as the service account, find the user,
// bind as the user with the given password, then read the user's groups.
type LDAP struct {
	// URLs are tried in order until one answers: ldaps://host[:port] or, with StartTLS,
	// ldap://host[:port].
	URLs []string `json:"urls"`
	// StartTLS upgrades ldap:// connections with StartTLS before anything is sent.
	StartTLS bool `json:"startTLS,omitempty"`
	// CAFile is a PEM bundle of the CAs to trust; empty means the system roots.
	CAFile string `json:"caFile,omitempty"`
	// BindDN is the service account's DN; BindPasswordFile holds its password.
	BindDN           string `json:"bindDN"`
	BindPasswordFile string `json:"bindPasswordFile"`
	// UserSearch finds the user entry.
	UserSearch LDAPUserSearch `json:"userSearch"`
	// GroupSearch, when set, finds the user's groups by searching for group entries.
	GroupSearch *LDAPGroupSearch `json:"groupSearch,omitempty"`
	// GroupsAttribute, when set, reads the user's groups from this attribute of the user
	// entry (e.g. memberOf); each value is a DN whose first RDN value is the group name.
	GroupsAttribute string `json:"groupsAttribute,omitempty"`
	// Timeout bounds each connection and operation. Default 5s.
	Timeout Duration `json:"timeout,omitempty"`
	// CacheTTL is how long a successful login is remembered; NegativeCacheTTL how long a
	// failed one is. Defaults 60s and 10s; 0 turns a cache off only when set as "0s".
	CacheTTL         *Duration `json:"cacheTTL,omitempty"`
	NegativeCacheTTL *Duration `json:"negativeCacheTTL,omitempty"`
}

// LDAPUserSearch locates a user by login name.
type LDAPUserSearch struct {
	BaseDN string `json:"baseDN"`
	// Filter is an LDAP filter in which {username} stands for the escaped login name.
	// Default (uid={username}).
	Filter string `json:"filter,omitempty"`
	// UsernameAttribute is the attribute whose value is the user's name in access rules and
	// logs. Default uid.
	UsernameAttribute string `json:"usernameAttribute,omitempty"`
}

// LDAPGroupSearch locates the groups a user belongs to.
type LDAPGroupSearch struct {
	BaseDN string `json:"baseDN"`
	// Filter is an LDAP filter in which {dn} stands for the user's escaped DN and
	// {username} for the escaped user name. Default (member={dn}).
	Filter string `json:"filter,omitempty"`
	// NameAttribute is the attribute holding the group's name. Default cn.
	NameAttribute string `json:"nameAttribute,omitempty"`
}

// AccessRule grants Role on Repositories to Subjects.
type AccessRule struct {
	Subjects     []Subject `json:"subjects"`
	Repositories []string  `json:"repositories"`
	Role         Role      `json:"role"`
}

// Subject is a user or a group.
type Subject struct {
	Kind SubjectKind `json:"kind"`
	Name string      `json:"name"`
}

// SubjectKind is User or Group.
type SubjectKind string

const (
	// SubjectUser is a user from the htpasswd file.
	SubjectUser SubjectKind = "User"
	// SubjectGroup is a group from the groups file.
	SubjectGroup SubjectKind = "Group"
)

// Role is a named set of actions.
type Role string

const (
	// RoleManager may pull, push and delete.
	RoleManager Role = "Manager"
	// RoleViewer may pull.
	RoleViewer Role = "Viewer"
)

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
	if c.HTTP.DrainTimeout.Duration == 0 {
		c.HTTP.DrainTimeout.Duration = 30 * time.Second
	}
	if c.GC.GracePeriod.Duration == 0 {
		c.GC.GracePeriod.Duration = time.Hour
	}
	if a := c.Auth; a != nil {
		if a.Realm == "" {
			a.Realm = "dockyard"
		}
		if t := a.Token; t != nil {
			if t.TTL.Duration == 0 {
				t.TTL.Duration = 5 * time.Minute
			}
			if t.Challenge == "" {
				t.Challenge = ChallengeBearer
			}
			if t.SessionTTL.Duration == 0 {
				t.SessionTTL.Duration = 12 * time.Hour
			}
		}
		if o := a.OIDC; o != nil {
			if o.UsernameClaim == "" {
				o.UsernameClaim = "sub"
			}
			if o.GroupsClaim == "" {
				o.GroupsClaim = "groups"
			}
			if o.Timeout.Duration == 0 {
				o.Timeout.Duration = 10 * time.Second
			}
		}
		if l := a.LDAP; l != nil {
			if l.UserSearch.Filter == "" {
				l.UserSearch.Filter = "(uid={username})"
			}
			if l.UserSearch.UsernameAttribute == "" {
				l.UserSearch.UsernameAttribute = "uid"
			}
			if g := l.GroupSearch; g != nil {
				if g.Filter == "" {
					g.Filter = "(member={dn})"
				}
				if g.NameAttribute == "" {
					g.NameAttribute = "cn"
				}
			}
			if l.Timeout.Duration == 0 {
				l.Timeout.Duration = 5 * time.Second
			}
			if l.CacheTTL == nil {
				l.CacheTTL = &Duration{Duration: time.Minute}
			}
			if l.NegativeCacheTTL == nil {
				l.NegativeCacheTTL = &Duration{Duration: 10 * time.Second}
			}
		}
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
	if a := c.Auth; a != nil {
		if a.HtpasswdFile == "" && a.LDAP == nil && a.OIDC == nil && a.RobotsFile == "" {
			add("auth: at least one of htpasswdFile, ldap, oidc and robotsFile is required")
		}
		if o := a.OIDC; o != nil {
			if !strings.HasPrefix(o.IssuerURL, "https://") {
				add("auth.oidc.issuerURL: must be an https:// URL, got %q", o.IssuerURL)
			}
			if len(o.Audiences) == 0 {
				add("auth.oidc.audiences: at least one is required")
			}
		}
		if t := a.Token; t != nil {
			if t.KeysFile == "" || t.Issuer == "" || t.Service == "" {
				add("auth.token: keysFile, issuer and service are required")
			}
			if t.TTL.Duration < 0 {
				add("auth.token.ttl: must not be negative")
			}
			if t.Challenge != ChallengeBearer && t.Challenge != ChallengeBasic {
				add("auth.token.challenge: must be Bearer or Basic, got %q", t.Challenge)
			}
		}
		if l := a.LDAP; l != nil {
			errs = append(errs, l.validate()...)
		}
		for i, r := range a.Access {
			if len(r.Subjects) == 0 {
				add("auth.access[%d].subjects: at least one subject is required", i)
			}
			for j, sub := range r.Subjects {
				if sub.Kind != SubjectUser && sub.Kind != SubjectGroup {
					add("auth.access[%d].subjects[%d].kind: must be User or Group, got %q", i, j, sub.Kind)
				}
				if sub.Name == "" {
					add("auth.access[%d].subjects[%d].name: required", i, j)
				}
			}
			if len(r.Repositories) == 0 {
				add("auth.access[%d].repositories: at least one pattern is required", i)
			}
			for j, p := range r.Repositories {
				if !ValidRepositoryPattern(p) {
					add("auth.access[%d].repositories[%d]: %q is not a repository pattern (lowercase path segments separated by '/', '*' within a segment, '**' as a whole segment)", i, j, p)
				}
			}
			if r.Role != RoleManager && r.Role != RoleViewer {
				add("auth.access[%d].role: must be Manager or Viewer, got %q", i, r.Role)
			}
		}
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

// validate checks an LDAP section.
func (l *LDAP) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("auth.ldap."+format, args...)) }
	if len(l.URLs) == 0 {
		add("urls: at least one is required")
	}
	for i, u := range l.URLs {
		switch {
		case strings.HasPrefix(u, "ldaps://"):
		case strings.HasPrefix(u, "ldap://"):
			if !l.StartTLS {
				add("urls[%d]: %q is plain LDAP; use ldaps:// or set startTLS (passwords are never sent unencrypted)", i, u)
			}
		default:
			add("urls[%d]: %q must start with ldaps:// or ldap://", i, u)
		}
	}
	if l.BindDN == "" || l.BindPasswordFile == "" {
		add("bindDN and bindPasswordFile are required (anonymous binds are not used)")
	}
	if l.UserSearch.BaseDN == "" {
		add("userSearch.baseDN: required")
	}
	if !strings.Contains(l.UserSearch.Filter, "{username}") {
		add("userSearch.filter: must contain {username}, got %q", l.UserSearch.Filter)
	}
	if g := l.GroupSearch; g != nil {
		if g.BaseDN == "" {
			add("groupSearch.baseDN: required")
		}
		if !strings.Contains(g.Filter, "{dn}") && !strings.Contains(g.Filter, "{username}") {
			add("groupSearch.filter: must contain {dn} or {username}, got %q", g.Filter)
		}
	}
	if l.Timeout.Duration < 0 || (l.CacheTTL != nil && l.CacheTTL.Duration < 0) ||
		(l.NegativeCacheTTL != nil && l.NegativeCacheTTL.Duration < 0) {
		add("timeout, cacheTTL, negativeCacheTTL: must not be negative")
	}
	return errs
}
