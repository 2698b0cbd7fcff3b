package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Trivy runs the trivy program. Registry credentials reach it through its environment
// (TRIVY_USERNAME, TRIVY_PASSWORD), never its arguments, so they do not show in process
// lists; its log is kept only to explain a failure.
type Trivy struct {
	// Binary is trivy's path.
	Binary string
	// CacheDir holds the vulnerability database (CacheDir/db) and the layer cache.
	CacheDir string
	// DBRepository, when set, is where UpdateDB downloads the database from (an OCI
	// repository, such as a mirror inside the Registry itself for air-gapped sites); when
	// empty the database in CacheDir is used as it is and never updated.
	DBRepository string
	// JavaDBRepository, when set, is where UpdateDB downloads the Java database from;
	// without one, Java archives are not scanned.
	JavaDBRepository string
	// Insecure lets trivy talk plain HTTP to a registry without TLS.
	Insecure bool
	// Env is added to trivy's environment (SSL_CERT_FILE for a private CA, HOME).
	Env []string
	// Timeout bounds one scan; 5 minutes when zero.
	Timeout time.Duration
}

// Credentials log in to a registry: Username and Password, or, with Dir set, the files
// "username" and "password" in Dir, read again at every use (a mounted Secret the
// operator renews takes effect without a restart).
type Credentials struct {
	Username, Password string
	Dir                string
}

// resolve returns the credentials to use now.
func (c *Credentials) resolve() (*Credentials, error) {
	if c == nil || c.Dir == "" {
		return c, nil
	}
	u, err := os.ReadFile(filepath.Join(c.Dir, "username"))
	if err != nil {
		return nil, fmt.Errorf("read the registry username: %w", err)
	}
	p, err := os.ReadFile(filepath.Join(c.Dir, "password"))
	if err != nil {
		return nil, fmt.Errorf("read the registry password: %w", err)
	}
	return &Credentials{Username: strings.TrimSpace(string(u)), Password: strings.TrimSpace(string(p))}, nil
}

// Authenticator presents the credentials to go-containerregistry (read again at every
// use when Dir is set).
func (c *Credentials) Authenticator() authn.Authenticator {
	if c == nil {
		return authn.Anonymous
	}
	return credAuth{c}
}

type credAuth struct{ c *Credentials }

func (a credAuth) Authorization() (*authn.AuthConfig, error) {
	c, err := a.c.resolve()
	if err != nil {
		return nil, err
	}
	return &authn.AuthConfig{Username: c.Username, Password: c.Password}, nil
}

// VersionInfo is what `trivy version` says about itself and its database.
type VersionInfo struct {
	Version string
	// DBUpdatedAt is when the vulnerability database was built (zero: no database).
	DBUpdatedAt time.Time
	// DBDownloadedAt is when it was downloaded.
	DBDownloadedAt time.Time
}

// maxLog bounds what is kept of trivy's log for an error message.
const maxLog = 2048

// Version asks trivy for its version and its database's age.
func (t Trivy) Version(ctx context.Context) (VersionInfo, error) {
	out, err := t.run(ctx, nil, "version", "--format", "json", "--cache-dir", t.CacheDir)
	if err != nil {
		return VersionInfo{}, err
	}
	var v struct {
		Version         string `json:"Version"`
		VulnerabilityDB *struct {
			UpdatedAt    time.Time `json:"UpdatedAt"`
			DownloadedAt time.Time `json:"DownloadedAt"`
		} `json:"VulnerabilityDB"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return VersionInfo{}, fmt.Errorf("read `trivy version`: %w", err)
	}
	info := VersionInfo{Version: v.Version}
	if v.VulnerabilityDB != nil {
		info.DBUpdatedAt, info.DBDownloadedAt = v.VulnerabilityDB.UpdatedAt, v.VulnerabilityDB.DownloadedAt
	}
	return info, nil
}

// UpdateDB downloads the vulnerability database from DBRepository (and the Java database
// from JavaDBRepository, when set) into CacheDir. cred is sent to those repositories:
// pass it only when they are in the registry it belongs to.
func (t Trivy) UpdateDB(ctx context.Context, cred *Credentials) error {
	if t.DBRepository == "" {
		return errors.New("no database repository is set")
	}
	runs := [][]string{{"image", "--download-db-only", "--cache-dir", t.CacheDir, "--db-repository", t.DBRepository}}
	if t.JavaDBRepository != "" {
		runs = append(runs, []string{"image", "--download-java-db-only", "--cache-dir", t.CacheDir, "--java-db-repository", t.JavaDBRepository})
	}
	for _, args := range runs {
		if t.Insecure {
			args = append(args, "--insecure")
		}
		if _, err := t.run(ctx, cred, args...); err != nil {
			return err
		}
	}
	return nil
}

// javaArchives are the files trivy reads with its Java database.
var javaArchives = []string{"**/*.jar", "**/*.war", "**/*.ear", "**/*.par"}

// hasJavaDB is true when the Java database is in the cache directory.
func (t Trivy) hasJavaDB() bool {
	_, err := os.Stat(filepath.Join(t.CacheDir, "java-db", "metadata.json"))
	return err == nil
}

// passEnv are variables of the process trivy inherits: proxies and CA locations.
var passEnv = []string{"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "SSL_CERT_DIR", "SSL_CERT_FILE"}

// Scan scans ref (repository@digest) for vulnerabilities of operating-system and language
// packages, logging in with cred when not nil.
func (t Trivy) Scan(ctx context.Context, ref string, cred *Credentials) (*Report, error) {
	info, err := t.Version(ctx)
	if err != nil {
		return nil, err
	}
	return t.ScanWith(ctx, ref, cred, info)
}

// ScanWith is Scan with what Version says about trivy and the database in CacheDir, for a
// caller that knows the database has not changed since it asked (it saves a run of
// `trivy version`: BenchmarkScanQueue went from 164 to 254–292 images/min without it).
func (t Trivy) ScanWith(ctx context.Context, ref string, cred *Credentials, info VersionInfo) (*Report, error) {
	at := strings.LastIndex(ref, "@")
	if at < 0 || !strings.HasPrefix(ref[at+1:], "sha256:") {
		return nil, fmt.Errorf("scan %q: a reference by sha256 digest is required", ref)
	}
	digest := ref[at+1:]
	if info.DBUpdatedAt.IsZero() {
		return nil, errors.New("trivy has no vulnerability database in its cache directory yet (UpdateDB downloads it)")
	}
	// The database is only read here (UpdateDB alone writes it), and layers are analysed
	// in memory (--cache-backend memory): scans side by side share no file they write.
	args := []string{"image", "--quiet", "--format", "json", "--scanners", "vuln", "--image-src", "remote", "--cache-dir", t.CacheDir,
		"--cache-backend", "memory", "--skip-db-update", "--skip-java-db-update", "--skip-check-update", "--offline-scan"}
	if !t.hasJavaDB() {
		// Without a Java database trivy fails on the first Java archive it meets: leave
		// them out (and say so in the docs) rather than fail every image that has one.
		for _, glob := range javaArchives {
			args = append(args, "--skip-files", glob)
		}
	}
	if t.Insecure {
		args = append(args, "--insecure")
	}
	started := time.Now().UTC()
	out, err := t.run(ctx, cred, append(args, ref)...)
	if err != nil {
		return nil, err
	}
	osName, vulns, err := parseTrivy(out)
	if err != nil {
		return nil, err
	}
	r := &Report{Subject: digest, ScannedAt: started.Truncate(time.Second), OS: osName, Vulnerabilities: vulns,
		Scanner: Scanner{Name: "trivy", Version: info.Version}}
	if !info.DBUpdatedAt.IsZero() {
		at := info.DBUpdatedAt.UTC()
		r.Scanner.DBUpdatedAt = &at
	}
	return r, nil
}

// run runs trivy and returns its standard output; a failure carries the end of its log.
func (t Trivy) run(ctx context.Context, cred *Credentials, args ...string) ([]byte, error) {
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.Binary, args...)
	env := []string{"TRIVY_DISABLE_TELEMETRY=true", "TRIVY_NO_PROGRESS=true", "PATH=" + os.Getenv("PATH"),
		"TMPDIR=" + os.TempDir()}
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	cred, err := cred.resolve()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		env = append(env, "TRIVY_USERNAME="+cred.Username, "TRIVY_PASSWORD="+cred.Password)
	}
	env = append(env, t.Env...)
	cmd.Env = env
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: maxLog}
	cmd.Stdout = &limitedWriter{w: &stdout, n: MaxReportBytes}
	cmd.Stderr = stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("trivy %s: gave up after %s", args[0], timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if cred != nil && cred.Password != "" {
			msg = strings.ReplaceAll(msg, cred.Password, "***")
		}
		return nil, fmt.Errorf("trivy %s: %w: %s", args[0], err, msg)
	}
	if stdout.Len() >= MaxReportBytes {
		return nil, fmt.Errorf("trivy %s: its output is larger than %d bytes", args[0], MaxReportBytes)
	}
	return stdout.Bytes(), nil
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = t.b[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.ToValidUTF8(string(t.b), "") }

// limitedWriter stops keeping output past n bytes (and says so through its length).
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	k := min(len(p), l.n)
	l.n -= k
	if _, err := l.w.Write(p[:k]); err != nil {
		return 0, err
	}
	return len(p), nil
}
