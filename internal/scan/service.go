package scan

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ScanPath is where a Service takes jobs; StatusPath where it says how it is doing.
const (
	ScanPath   = "/v1/scan"
	StatusPath = "/v1/status"
	// maxJobsBody bounds a request to ScanPath.
	maxJobsBody = 1 << 20
	// MaxJobsPerRequest bounds the jobs of one request.
	MaxJobsPerRequest = 1000
)

// JobRequest is the body of a POST to ScanPath.
type JobRequest struct {
	Jobs []JobSpec `json:"jobs"`
}

// JobSpec names a manifest to scan.
type JobSpec struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	// Cause is "push", "rescan" or "request".
	Cause string `json:"cause"`
}

// JobResponse says what became of a JobRequest's jobs.
type JobResponse struct {
	Accepted int `json:"accepted"`
	// Refused jobs did not fit in the queue (the periodic comparison catches them up).
	Refused int `json:"refused"`
}

// Status is what the scanner reports about itself.
type Status struct {
	// Queue is the number of jobs waiting or running.
	Queue int `json:"queue"`
	// Scanned, Failed and Skipped count jobs since the scanner started.
	Scanned int64 `json:"scanned"`
	Failed  int64 `json:"failed"`
	Skipped int64 `json:"skipped"`
	// Vulnerable counts scanned images with at least one vulnerability, by the most severe.
	Vulnerable map[Severity]int64 `json:"vulnerable,omitempty"`
	// LastScanTime is when the last report was stored.
	LastScanTime *time.Time `json:"lastScanTime,omitempty"`
	// LastError is the last failure, of a scan or of the database update.
	LastError string `json:"lastError,omitempty"`
	// Scanner is the scanner's version; DBUpdatedAt when its database was built.
	Scanner     string     `json:"scanner,omitempty"`
	DBUpdatedAt *time.Time `json:"dbUpdatedAt,omitempty"`
}

// Service is the scanner workload: it takes jobs over HTTP (from the operator, which hears
// of pushes), scans them through a Queue, and keeps the vulnerability database fresh.
type Service struct {
	Queue *Queue
	Trivy Trivy
	// DBCredentials read the database repository (nil: anonymous).
	DBCredentials *Credentials
	// DBUpdateInterval is how often the database is refreshed from Trivy.DBRepository
	// (default 6h); nothing is refreshed without a repository.
	DBUpdateInterval time.Duration
	// SweepInterval is how often Queue.Sweep looks for images without a report (it also
	// runs once the database is ready); 0: never.
	SweepInterval time.Duration
	// RescanPulledWithin: images pulled within this long whose newest report was made
	// with an older database are scanned again (Queue.Rescan), when the database changes
	// and with every sweep; 0: never.
	RescanPulledWithin time.Duration
	// TokenFile holds the bearer token a caller of ScanPath must present; re-read on each
	// request, so a rotated Secret takes effect.
	TokenFile string
	Log       *slog.Logger

	mu     sync.Mutex
	status Status
	// dbMu: scans read the database, an update writes it; dbInfo is what trivy said about
	// the database after the last update (zero: ask at each scan).
	dbMu   sync.RWMutex
	dbInfo VersionInfo
	once   sync.Once
	m      serviceMetrics
	// dbChanged wakes the sweep when a newer database arrived.
	dbChanged chan struct{}
}

type serviceMetrics struct {
	queue         prometheus.GaugeFunc
	jobs          *prometheus.CounterVec
	latency       prometheus.Histogram
	dbUpdated     prometheus.Gauge
	dbFailures    prometheus.Counter
	sweeps        prometheus.Counter
	sweepFailures prometheus.Counter
	rescanned     prometheus.Counter
}

func (s *Service) init() {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		s.status.Vulnerable = map[Severity]int64{}
		s.dbChanged = make(chan struct{}, 1)
		s.m = serviceMetrics{
			queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dockyard_scan_queue_length",
				Help: "Images waiting to be scanned or being scanned."}, func() float64 { return float64(s.Queue.Len()) }),
			jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dockyard_scan_jobs_total",
				Help: "Scan jobs finished, by outcome (scanned, skipped, failed)."}, []string{"outcome"}),
			latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dockyard_scan_latency_seconds",
				Help:    "Time from an image being queued (its push) to its report being stored.",
				Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600}}),
			dbUpdated: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dockyard_scan_db_updated_timestamp_seconds",
				Help: "When the scanner's vulnerability database was built (0: no database)."}),
			dbFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "dockyard_scan_db_update_failures_total",
				Help: "Failed refreshes of the vulnerability database."}),
			sweeps: prometheus.NewCounter(prometheus.CounterOpts{Name: "dockyard_scan_sweeps_total",
				Help: "Sweeps of the registry for images without a report."}),
			sweepFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "dockyard_scan_sweep_failures_total",
				Help: "Sweeps (for images without a report, or for pulled images to rescan) that could not look at every repository."}),
			rescanned: prometheus.NewCounter(prometheus.CounterOpts{Name: "dockyard_scan_rescans_queued_total",
				Help: "Recently pulled images queued for a new scan because their report predates the current database."}),
		}
		for _, o := range []Outcome{Scanned, Skipped, Failed} {
			s.m.jobs.WithLabelValues(string(o))
		}
		s.Queue.Scanner = lockedScanner{ImageScanner: s.Queue.Scanner, svc: s}
		prev := s.Queue.OnResult
		s.Queue.OnResult = func(r Result) {
			s.record(r)
			if prev != nil {
				prev(r)
			}
		}
	})
}

// Collectors are the service's metrics.
func (s *Service) Collectors() []prometheus.Collector {
	s.init()
	return []prometheus.Collector{s.m.queue, s.m.jobs, s.m.latency, s.m.dbUpdated, s.m.dbFailures, s.m.sweeps, s.m.sweepFailures, s.m.rescanned}
}

func (s *Service) record(r Result) {
	s.m.jobs.WithLabelValues(string(r.Outcome)).Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Outcome {
	case Scanned:
		s.status.Scanned++
		if r.PruneErr != nil {
			s.Log.Warn("Delete older reports", "repository", r.Repository, "digest", r.Digest, "err", r.PruneErr)
		}
		s.m.latency.Observe(r.Latency.Seconds())
		now := time.Now().UTC().Truncate(time.Second)
		s.status.LastScanTime = &now
		if len(r.Report.Vulnerabilities) > 0 {
			// Sorted most severe first.
			s.status.Vulnerable[r.Report.Vulnerabilities[0].Severity]++
		}
	case Skipped:
		s.status.Skipped++
	case Failed:
		s.status.Failed++
		s.status.LastError = fmt.Sprintf("scan %s@%s: %v", r.Repository, r.Digest, r.Err)
		s.Log.Warn("Scan failed", "repository", r.Repository, "digest", r.Digest, "attempts", r.Attempts, "err", r.Err)
	}
}

// maxLastError bounds Status.LastError.
const maxLastError = 4096

// Status reports how the scanner is doing.
func (s *Service) Status() Status {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Vulnerable = make(map[Severity]int64, len(s.status.Vulnerable))
	for k, v := range s.status.Vulnerable {
		st.Vulnerable[k] = v
	}
	st.Queue = s.Queue.Len()
	if len(st.LastError) > maxLastError {
		st.LastError = st.LastError[:maxLastError] + "…"
	}
	return st
}

// Run scans until ctx ends. With a database repository, it first downloads the database
// (retrying until it can: a scan without one would only fail) and then refreshes it every
// DBUpdateInterval, never while a scan reads it.
func (s *Service) Run(ctx context.Context) {
	s.init()
	for !s.refreshDB(ctx) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(dbRetry):
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.Queue.Run(ctx) })
	if s.SweepInterval > 0 || s.RescanPulledWithin > 0 {
		wg.Go(func() {
			full := true
			for {
				s.sweep(ctx, full)
				var timer <-chan time.Time
				if s.SweepInterval > 0 {
					timer = time.After(s.SweepInterval)
				}
				select {
				case <-ctx.Done():
					return
				case <-timer:
					full = true
				case <-s.dbChanged:
					// Only the rescan: a new database changes nothing for images without a report.
					full = false
				}
			}
		})
	}
	wg.Go(func() {
		for s.Trivy.DBRepository != "" {
			select {
			case <-ctx.Done():
				return
			case <-time.After(cmpOr(s.DBUpdateInterval, 6*time.Hour)):
			}
			s.refreshDB(ctx)
		}
	})
	wg.Wait()
}

// pullRecordGranularity is how coarsely the registry records pulls (a marker is written
// at most once an hour per image and replica): the rescan window is widened by it, so an
// image pulled all the time never looks unused.
const pullRecordGranularity = time.Hour

// sweep runs one Queue.Sweep (with unscanned and a SweepInterval) and one Queue.Rescan
// (with RescanPulledWithin), and records what they found.
func (s *Service) sweep(ctx context.Context, unscanned bool) {
	if unscanned && s.SweepInterval > 0 {
		s.sweepUnscanned(ctx)
	}
	s.mu.Lock()
	var db time.Time
	if s.status.DBUpdatedAt != nil {
		db = *s.status.DBUpdatedAt
	}
	s.mu.Unlock()
	if s.RescanPulledWithin <= 0 || db.IsZero() || ctx.Err() != nil {
		return
	}
	res, err := s.Queue.Rescan(ctx, db, time.Now().Add(-s.RescanPulledWithin-pullRecordGranularity))
	if ctx.Err() != nil {
		return
	}
	s.m.rescanned.Add(float64(res.Queued))
	if err != nil {
		s.sweepFailed("rescan", err)
		s.Log.Warn("Rescan of recently pulled images", "err", err, "repositories", res.Repositories, "pulled", res.Pulled, "queued", res.Queued)
		return
	}
	s.Log.Info("Looked for recently pulled images scanned with an older database", "database", db.Format(time.RFC3339),
		"pulledWithin", s.RescanPulledWithin.String(), "repositories", res.Repositories, "pulled", res.Pulled,
		"current", res.Current, "queued", res.Queued, "incomplete", res.Incomplete)
}

// sweepFailed counts a failed sweep or rescan and records its error.
func (s *Service) sweepFailed(what string, err error) {
	s.m.sweepFailures.Inc()
	s.mu.Lock()
	s.status.LastError = what + ": " + err.Error()
	s.mu.Unlock()
}

// sweepUnscanned runs one Queue.Sweep and records what it found.
func (s *Service) sweepUnscanned(ctx context.Context) {
	res, err := s.Queue.Sweep(ctx)
	if ctx.Err() != nil {
		return
	}
	s.m.sweeps.Inc()
	if err != nil {
		s.sweepFailed("sweep", err)
		s.Log.Warn("Sweep for images without a report", "err", err, "repositories", res.Repositories, "tags", res.Tags, "queued", res.Queued)
		return
	}
	s.Log.Info("Swept for images without a report", "repositories", res.Repositories, "tags", res.Tags, "queued", res.Queued, "incomplete", res.Incomplete)
}

// dbRetry is the wait between attempts to get a first database.
var dbRetry = 30 * time.Second

// refreshDB updates the database from its repository, if any, and records its age; it
// says whether there is a database to scan with.
func (s *Service) refreshDB(ctx context.Context) bool {
	// The update and the question about what it brought happen under one lock: a scan
	// never reports another database than the one it used.
	s.dbMu.Lock()
	var err error
	if s.Trivy.DBRepository != "" {
		err = s.Trivy.UpdateDB(ctx, s.DBCredentials)
	}
	// Zero when trivy could not say: each scan asks it then.
	info, verr := s.Trivy.Version(ctx)
	s.dbInfo = info
	s.dbMu.Unlock()
	if err != nil && ctx.Err() == nil {
		s.m.dbFailures.Inc()
		s.mu.Lock()
		s.status.LastError = "update the vulnerability database: " + err.Error()
		s.mu.Unlock()
		s.Log.Warn("Update the vulnerability database", "repository", s.Trivy.DBRepository, "err", err)
	}
	if verr != nil {
		s.Log.Warn("Ask trivy for its version", "err", verr)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Scanner = "trivy " + info.Version
	if info.DBUpdatedAt.IsZero() {
		if s.Trivy.DBRepository == "" {
			s.status.LastError = "no vulnerability database: none in the cache directory and no database repository to download it from"
			s.Log.Error("No vulnerability database to scan with", "cacheDir", s.Trivy.CacheDir)
		}
		return false
	}
	at := info.DBUpdatedAt.UTC()
	if prev := s.status.DBUpdatedAt; prev != nil && !prev.Equal(at) {
		// A newer database: rescan what was pulled lately (the sweep loop does).
		select {
		case s.dbChanged <- struct{}{}:
		default:
		}
	}
	s.status.DBUpdatedAt = &at
	s.m.dbUpdated.Set(float64(at.Unix()))
	return true
}

// lockedScanner scans while holding the database for reading, telling a scanner that can
// take it what the database is.
type lockedScanner struct {
	ImageScanner
	svc *Service
}

// infoScanner is a scanner that can be told about its database (Trivy).
type infoScanner interface {
	ScanWith(ctx context.Context, ref string, cred *Credentials, info VersionInfo) (*Report, error)
}

func (l lockedScanner) Scan(ctx context.Context, ref string, cred *Credentials) (*Report, error) {
	l.svc.dbMu.RLock()
	defer l.svc.dbMu.RUnlock()
	if is, ok := l.ImageScanner.(infoScanner); ok && !l.svc.dbInfo.DBUpdatedAt.IsZero() {
		return is.ScanWith(ctx, ref, cred, l.svc.dbInfo)
	}
	return l.ImageScanner.Scan(ctx, ref, cred)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Handler serves ScanPath and StatusPath.
func (s *Service) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ScanPath, s.serveScan)
	mux.HandleFunc("POST "+RequestPath, s.serveRequest)
	// The status names repositories and failures of every tenant: the operator's token
	// is needed to read it.
	mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r); err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, s.Status())
	})
	// Ready once there is a database to scan with.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		ready := s.status.DBUpdatedAt != nil
		s.mu.Unlock()
		if !ready {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no vulnerability database yet"})
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

// Valid names: the distribution spec's repository grammar, and sha256 digests.
var (
	repositoryRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	digestRE     = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// ValidJob reports whether a repository and digest may be queued: the distribution spec's
// repository grammar (at most 255 characters) and a sha256 digest.
func ValidJob(repository, digest string) bool {
	return len(repository) <= 255 && repositoryRE.MatchString(repository) && digestRE.MatchString(digest)
}

func (s *Service) serveScan(w http.ResponseWriter, r *http.Request) {
	if err := s.authorize(r); err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
		return
	}
	var req JobRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJobsBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read the jobs: " + err.Error()})
		return
	}
	if len(req.Jobs) > MaxJobsPerRequest {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("at most %d jobs per request", MaxJobsPerRequest)})
		return
	}
	for i, j := range req.Jobs {
		if !ValidJob(j.Repository, j.Digest) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("job %d: an invalid repository or sha256 digest", i)})
			return
		}
		switch j.Cause {
		case CausePush, CauseRescan, CauseRequest:
		default:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("job %d: cause must be push, rescan or request", i)})
			return
		}
	}
	var resp JobResponse
	now := time.Now()
	for _, j := range req.Jobs {
		if s.Queue.Add(Job{Repository: j.Repository, Digest: j.Digest, Cause: j.Cause, Enqueued: now}) {
			resp.Accepted++
		} else {
			resp.Refused++
		}
	}
	writeJSON(w, http.StatusAccepted, resp)
}

func (s *Service) authorize(r *http.Request) error {
	want, err := os.ReadFile(s.TokenFile)
	if err != nil || strings.TrimSpace(string(want)) == "" {
		return errors.New("the scanner has no token to check callers against")
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(strings.TrimSpace(string(want)))) != 1 {
		return errors.New("a valid bearer token is required")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
