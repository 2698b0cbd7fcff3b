package v1alpha1

import (
	"strings"
	"time"
)

// ScannerName names the scanner's Deployment, Service and ConfigMap.
func (r *Registry) ScannerName() string { return r.Name + "-scanner" }

// ScannerSecretName names the Secret the operator generates for the scanner: the key it
// signs reports with and the token the operator presents with jobs.
func (r *Registry) ScannerSecretName() string { return r.Name + "-scanner" }

// ScannerCredentialsSecretName names the Secret with the scanner's registry credential
// (with spec.auth only).
func (r *Registry) ScannerCredentialsSecretName() string { return r.Name + "-scanner-credentials" }

// Defaults of spec.scanning.
const (
	DefaultScanConcurrency      = 1
	DefaultScanTimeout          = 5 * time.Minute
	DefaultScanSweepInterval    = time.Hour
	DefaultScanRescanPulled     = 7 * 24 * time.Hour
	DefaultScanDBUpdateInterval = 6 * time.Hour
	DefaultScanDBMaxAge         = 72 * time.Hour
)

// GetImage returns the scanner image or its default.
func (s *ScanningSpec) GetImage() string {
	if s.Image == "" {
		return DefaultScannerImage
	}
	return s.Image
}

// GetConcurrency returns the number of scans at a time or its default.
func (s *ScanningSpec) GetConcurrency() int32 {
	if s.Concurrency == nil {
		return DefaultScanConcurrency
	}
	return *s.Concurrency
}

// GetTimeout bounds one scan.
func (s *ScanningSpec) GetTimeout() time.Duration { return durationOr(s.Timeout, DefaultScanTimeout) }

// GetSweepInterval is how often the scanner looks for images without a report.
func (s *ScanningSpec) GetSweepInterval() time.Duration {
	return durationOr(s.SweepInterval, DefaultScanSweepInterval)
}

// GetRescanPulledWithin is how recently an image must have been pulled to be scanned again
// with a newer database (0: never).
func (s *ScanningSpec) GetRescanPulledWithin() time.Duration {
	if s.RescanPulledWithin == nil {
		return DefaultScanRescanPulled
	}
	return s.RescanPulledWithin.Duration
}

// GetDatabase returns database settings (never nil).
func (s *ScanningSpec) GetDatabase() *ScanDatabaseSpec {
	if s.Database == nil {
		return &ScanDatabaseSpec{}
	}
	return s.Database
}

// GetRepository returns the database repository or its default.
func (d *ScanDatabaseSpec) GetRepository() string {
	if d.Repository == "" {
		return DefaultScanDatabase
	}
	return d.Repository
}

// GetUpdateInterval is how often the scanner looks for a newer database.
func (d *ScanDatabaseSpec) GetUpdateInterval() time.Duration {
	return durationOr(d.UpdateInterval, DefaultScanDBUpdateInterval)
}

// GetMaxAge is how old the database may be before ScannerReady turns False.
func (d *ScanDatabaseSpec) GetMaxAge() time.Duration {
	return durationOr(d.MaxAge, DefaultScanDBMaxAge)
}

// ScanRepositoryIsLocal reports whether a database repository (as spec.scanning.database
// takes it) lives in this Registry: its first path element is not a host (no dot, no
// port, not localhost), as in `docker pull`'s rule.
func ScanRepositoryIsLocal(repo string) bool {
	first, _, found := strings.Cut(repo, "/")
	if !found {
		return true
	}
	return !strings.ContainsAny(first, ".:") && first != "localhost"
}
