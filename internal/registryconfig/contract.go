package registryconfig

// Ports and paths the workload serves on.
const (
	// DefaultPort is the registry API port (HTTP, or HTTPS when TLS is configured).
	DefaultPort int32 = 5000
	// MetricsPort serves Prometheus metrics (plain HTTP, /metrics) and the health path.
	MetricsPort int32 = 5001
	// HealthPath (readiness) answers 200 when the registry can serve: storage reachable and
	// not shutting down. It is served on the API port (so probes exercise TLS and the
	// storage driver) and on the metrics port.
	HealthPath = "/healthz"
	// LivenessPath answers 200 while the process serves HTTP, whatever the storage does;
	// served on the metrics port.
	LivenessPath = "/livez"
	// MetricsPath is the Prometheus scrape path on MetricsPort.
	MetricsPath = "/metrics"
)

// Command lines. The single `dockyard` binary dispatches on its first arguments.
const (
	// Binary is the path of the dockyard binary inside the image.
	Binary = "/dockyard"
)

// ServeArgs returns the container args that start the registry with the config at path.
func ServeArgs(configPath string) []string {
	return []string{"registry", "serve", "--config", configPath}
}

// GCArgs returns the container args of one garbage-collection run. The run writes its
// GCSummary as JSON to summaryPath (the pod's termination-message path, so the operator can
// read the result from the finished Pod's status).
func GCArgs(configPath, summaryPath string) []string {
	return []string{"registry", "gc", "--config", configPath, "--summary-file", summaryPath}
}

// Where the operator mounts things in the registry and GC pods.
const (
	// ConfigDir holds ConfigFileName, mounted from the rendered ConfigMap.
	ConfigDir = "/etc/dockyard/config"
	// ConfigFileName is the key of the rendered config in its ConfigMap.
	ConfigFileName = "config.yaml"
	// TLSDir holds the serving certificate: TLSCertFile, TLSKeyFile and, when the issuer
	// provides it, TLSCAFile. Mounted from a kubernetes.io/tls Secret; the workload reloads
	// the files when they change.
	TLSDir      = "/etc/dockyard/tls"
	TLSCertFile = "tls.crt"
	TLSKeyFile  = "tls.key"
	TLSCAFile   = "ca.crt"
	// UsersDir holds the users Secret (UsersHtpasswdKey, optionally UsersGroupsKey);
	// the workload re-reads it when it changes.
	UsersDir = "/etc/dockyard/users"
	// TokenDir holds the token service's signing keys (TokenKeysKey), mounted from the
	// generated Secret <registry>-token-keys; the workload reloads them when they change.
	TokenDir = "/etc/dockyard/token"
	// LDAPDir holds the LDAP bind password (LDAPBindPasswordFile) and CA bundle
	// (LDAPCAFile), projected from the referenced Secret / ConfigMap keys.
	LDAPDir              = "/etc/dockyard/ldap"
	LDAPBindPasswordFile = "bind-password"
	LDAPCAFile           = "ca.crt"
	// OIDCDir holds the OIDC provider's CA bundle (OIDCCAFile), projected from the
	// referenced Secret or ConfigMap key.
	OIDCDir    = "/etc/dockyard/oidc"
	OIDCCAFile = "ca.crt"
	// RobotsDir holds the robot accounts (RobotsKey: Robots as JSON, hashes only), mounted
	// from the generated Secret <registry>-robots; the workload reloads it when it changes.
	RobotsDir = "/etc/dockyard/robots"
	// GCSDir holds the GCS service-account key (GCSKeyFile) when one is referenced.
	GCSDir     = "/etc/dockyard/gcs"
	GCSKeyFile = "key.json"
	// DataDir is the filesystem storage root (a PVC or emptyDir).
	DataDir = "/var/lib/registry"
	// TmpDir is a writable emptyDir; the root filesystem is read-only.
	TmpDir = "/tmp"
	// TerminationMessagePath is where GC pods write their summary.
	TerminationMessagePath = "/dev/termination-log"
)

// ConfigPath is the full path of the rendered config inside pods.
const ConfigPath = ConfigDir + "/" + ConfigFileName

// Keys the operator expects in referenced Secrets.
const (
	// UsersHtpasswdKey holds users in htpasswd format with bcrypt hashes (`htpasswd -nbB`).
	UsersHtpasswdKey = "htpasswd"
	// UsersGroupsKey optionally maps groups to users, one group per line:
	// `team-a: alice, bob`. Lines starting with # are comments.
	UsersGroupsKey = "groups"
	// S3AccessKeyIDKey and S3SecretAccessKeyKey are the S3 credentials (both required when
	// a credentials Secret is referenced; without one the driver uses its default chain).
	S3AccessKeyIDKey     = "accessKeyID"
	S3SecretAccessKeyKey = "secretAccessKey"
	// GCSKeyJSONKey is a GCS service-account key in JSON.
	GCSKeyJSONKey = "key.json"
	// AzureAccountKeyKey is the storage account's shared key.
	AzureAccountKeyKey = "accountKey"
	// RobotsKey is the key of the generated robots Secret.
	RobotsKey = "robots.json"
	// Keys of a robot's credentials Secret (type kubernetes.io/dockerconfigjson), besides
	// .dockerconfigjson: the user name and password for CI systems, and the registry host.
	RobotUsernameKey = "username"
	RobotPasswordKey = "password"
	RobotRegistryKey = "registry"
	// RobotPendingPasswordKey holds a rotated password until every replica knows it.
	RobotPendingPasswordKey = "pending-password"
	// TokenKeysKey is the key of the generated token keys Secret: TokenKeys as JSON.
	TokenKeysKey = "keys.json"
	// HTTPSecretKey is the key of the generated secret that replicas share to sign upload
	// state.
	HTTPSecretKey = "httpSecret"
)

// Environment variables through which credentials reach the workload (set by the operator
// from Secrets with secretKeyRef; never written into the config file).
const (
	EnvHTTPSecret        = "DOCKYARD_HTTP_SECRET"
	EnvS3AccessKeyID     = "DOCKYARD_S3_ACCESS_KEY_ID"
	EnvS3SecretAccessKey = "DOCKYARD_S3_SECRET_ACCESS_KEY"
	EnvAzureAccountKey   = "DOCKYARD_AZURE_ACCOUNT_KEY"
)
