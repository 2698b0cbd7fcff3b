package registryconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ScannerConfigPath is where the scanner workload reads its config.
const ScannerConfigPath = "/etc/dockyard/scanner/config.json"

// Scanner is the config of a Registry's scanner workload (`dockyard registry scanner`):
// which registry it scans, as whom, where it takes jobs, and how it runs Trivy. It holds
// no secret: credentials and the job token are files from Secret volumes.
type Scanner struct {
	// Registry is the registry's host:port (its Service); CAFile trusts its certificate.
	// Insecure talks plain HTTP to a registry without TLS.
	Registry string `json:"registry"`
	CAFile   string `json:"caFile,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
	// CredentialsDir holds the files "username" and "password": the scanner's identity,
	// which pulls images and stores reports.
	CredentialsDir string `json:"credentialsDir,omitempty"`
	// SigningKeyFile holds the ed25519 key (PEM, PKCS #8) the scanner signs reports with;
	// the operator checks reports against its public half.
	SigningKeyFile string `json:"signingKeyFile"`
	// Listen is the address of the job intake, status and metrics (":8083").
	Listen string `json:"listen"`
	// TokenFile holds the bearer token the operator presents with jobs.
	TokenFile string `json:"tokenFile"`
	// Trivy runs the scanner.
	Trivy ScannerTrivy `json:"trivy"`
	// Concurrency is the number of scans at a time; QueueSize bounds the waiting jobs.
	Concurrency int `json:"concurrency"`
	QueueSize   int `json:"queueSize"`
	// DBUpdateInterval is how often the database is refreshed from Trivy.DBRepository.
	DBUpdateInterval Duration `json:"dbUpdateInterval"`
	// SweepInterval is how often the scanner lists the registry for images without a
	// report (and once at start); 0: never.
	SweepInterval Duration `json:"sweepInterval,omitempty"`
	// RescanPulledWithin: images pulled within this long are scanned again when the
	// scanner gets a newer database (and at every sweep, when their report is older than
	// the database); 0: never.
	RescanPulledWithin Duration `json:"rescanPulledWithin,omitempty"`
	Log                Log      `json:"log"`
}

// ScannerTrivy says how to run Trivy.
type ScannerTrivy struct {
	// Binary is trivy's path; CacheDir holds its database and layer cache.
	Binary   string `json:"binary"`
	CacheDir string `json:"cacheDir"`
	// DBRepository is where the vulnerability database comes from (an OCI repository);
	// empty: the database in CacheDir is used as it is.
	DBRepository string `json:"dbRepository,omitempty"`
	// JavaDBRepository is where the Java database comes from; without one, Java archives
	// are not scanned.
	JavaDBRepository string `json:"javaDBRepository,omitempty"`
	// Timeout bounds one scan.
	Timeout Duration `json:"timeout"`
}

// Defaults fills what is unset.
func (s *Scanner) Defaults() {
	if s.Listen == "" {
		s.Listen = ":8083"
	}
	if s.Trivy.Binary == "" {
		s.Trivy.Binary = "trivy"
	}
	if s.Concurrency == 0 {
		s.Concurrency = 1
	}
	if s.QueueSize == 0 {
		s.QueueSize = 1000
	}
	if s.Trivy.Timeout.Duration == 0 {
		s.Trivy.Timeout.Duration = 5 * time.Minute
	}
	if s.DBUpdateInterval.Duration == 0 {
		s.DBUpdateInterval.Duration = 6 * time.Hour
	}
}

// Validate reports every problem of the config at once.
func (s *Scanner) Validate() error {
	var errs []error
	if s.Registry == "" || strings.ContainsAny(s.Registry, "/ ") {
		errs = append(errs, fmt.Errorf("registry: %q is not a host[:port]", s.Registry))
	}
	if s.TokenFile == "" {
		errs = append(errs, errors.New("tokenFile: required (the operator's jobs are authenticated with it)"))
	}
	if s.SigningKeyFile == "" {
		errs = append(errs, errors.New("signingKeyFile: required (reports are signed)"))
	}
	if s.Trivy.CacheDir == "" {
		errs = append(errs, errors.New("trivy.cacheDir: required"))
	}
	if s.Concurrency < 1 || s.Concurrency > 16 {
		errs = append(errs, fmt.Errorf("concurrency: %d is not between 1 and 16", s.Concurrency))
	}
	if s.RescanPulledWithin.Duration < 0 {
		errs = append(errs, fmt.Errorf("rescanPulledWithin: %s is negative", s.RescanPulledWithin.Duration))
	}
	if s.QueueSize < 1 || s.QueueSize > 100000 {
		errs = append(errs, fmt.Errorf("queueSize: %d is not between 1 and 100000", s.QueueSize))
	}
	return errors.Join(errs...)
}

// LoadScanner reads, defaults and validates a scanner config file.
func LoadScanner(path string) (*Scanner, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scanner config: %w", err)
	}
	var s Scanner
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("scanner config %s: %w", path, err)
	}
	s.Defaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("scanner config %s: %w", path, err)
	}
	return &s, nil
}

// ScannerCredentials reads the username and password files of dir ("" for none).
func ScannerCredentials(dir string) (user, password string, err error) {
	if dir == "" {
		return "", "", nil
	}
	u, err := os.ReadFile(filepath.Join(dir, "username"))
	if err != nil {
		return "", "", fmt.Errorf("read the scanner's username: %w", err)
	}
	p, err := os.ReadFile(filepath.Join(dir, "password"))
	if err != nil {
		return "", "", fmt.Errorf("read the scanner's password: %w", err)
	}
	return strings.TrimSpace(string(u)), strings.TrimSpace(string(p)), nil
}
