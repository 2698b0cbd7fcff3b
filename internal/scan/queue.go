package scan

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Job is one manifest to scan.
type Job struct {
	// Repository ("team-a/app") and Digest ("sha256:…") of the manifest.
	Repository string
	Digest     string
	// Cause says why it is scanned: "push", "rescan" or "request".
	Cause string
	// Enqueued is when it was first queued.
	Enqueued time.Time
}

func (j Job) key() string { return j.Repository + "@" + j.Digest }

// Outcome of a job.
type Outcome string

// Outcomes.
const (
	// Scanned: the report is stored.
	Scanned Outcome = "scanned"
	// Skipped: the manifest is not a container image (a signature, an SBOM, a report, an
	// index, which is scanned through its images) or is gone.
	Skipped Outcome = "skipped"
	// Failed: every attempt failed.
	Failed Outcome = "failed"
)

// Result is what became of a job.
type Result struct {
	Job
	Outcome Outcome
	// Report is the stored report when Outcome is Scanned.
	Report *Report
	// Err is the last error (Failed) or why it was skipped.
	Err error
	// PruneErr says why older reports could not be deleted (the new one is stored).
	PruneErr error
	// Attempts made; Latency from Enqueued to the report stored.
	Attempts int
	Latency  time.Duration
}

// ImageScanner scans one image by reference; Trivy is one.
type ImageScanner interface {
	Scan(ctx context.Context, ref string, cred *Credentials) (*Report, error)
}

// Queue scans what it is given: a bounded queue, each manifest once however often it is
// added while waiting, a bounded number of scans at a time, and failed scans retried with
// backoff, so a scanner or registry that is away holds the queue instead of losing it.
type Queue struct {
	// Registry is the registry's host[:port]; Insecure talks plain HTTP to it.
	Registry string
	Insecure bool
	// Scanner scans, pulling with Pull.
	Scanner ImageScanner
	Pull    *Credentials
	// Remote are the options to read manifests and store reports (push rights; delete
	// rights to prune older reports).
	Remote []remote.Option
	// Transport and Auth reach the registry's own extensions (the pull record Rescan
	// reads): the same as in Remote (nil: remote.DefaultTransport, anonymous).
	Transport http.RoundTripper
	Auth      authn.Authenticator
	// Key signs the reports.
	Key ed25519.PrivateKey
	// NoPrune keeps older reports of an image scanned again (the scanner's identity may
	// not delete).
	NoPrune bool
	// Concurrency is the number of scans at a time (default 1).
	Concurrency int
	// Size bounds the queue (default 1000); Add refuses beyond it.
	Size int
	// MaxAttempts per job (default 5); Backoff is the first wait after a failure (default
	// 5 s), doubling up to MaxBackoff (default 5 min).
	MaxAttempts         int
	Backoff, MaxBackoff time.Duration
	// OnResult is called after each job, from the worker that ran it.
	OnResult func(Result)

	mu      sync.Mutex
	pending []queued
	// keys are the jobs waiting; running those being scanned, with rerun those queued
	// again meanwhile (a rescan after a new database must not be lost to the one before).
	keys    map[string]bool
	running map[string]bool
	rerun   map[string]Job
	wake    chan struct{}
	now     func() time.Time
	// reportDB remembers which database made each report (by report manifest digest: a
	// report never changes), so a rescan pass reads each report once; checked, per image
	// (repository@digest), the database a rescan checked it against when it stored no new
	// report (the findings were the same, or the repository takes no writes).
	reportDB timeMemo[v1.Hash]
	checked  timeMemo[string]
}

type queued struct {
	job       Job
	attempts  int
	notBefore time.Time
}

func (q *Queue) init() {
	if q.keys == nil {
		q.keys, q.running, q.rerun = map[string]bool{}, map[string]bool{}, map[string]Job{}
		q.wake = make(chan struct{}, 1)
		q.now = time.Now
	}
}

// Add queues a job; false when the queue is full (the periodic comparison catches it up
// later). A job already waiting is not queued twice.
func (q *Queue) Add(j Job) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	if q.keys[j.key()] {
		if j.Cause != CauseSweep {
			// A push, rescan or request is never answered by "already has a report".
			for i := range q.pending {
				if q.pending[i].job.key() == j.key() && q.pending[i].job.Cause == CauseSweep {
					q.pending[i].job.Cause = j.Cause
				}
			}
		}
		return true
	}
	if q.running[j.key()] {
		if j.Enqueued.IsZero() {
			j.Enqueued = q.now()
		}
		if prev, ok := q.rerun[j.key()]; !ok || j.Cause != CauseSweep || prev.Cause == CauseSweep {
			q.rerun[j.key()] = j
		}
		return true
	}
	if len(q.pending) >= cmp.Or(q.Size, 1000) {
		return false
	}
	if j.Enqueued.IsZero() {
		j.Enqueued = q.now()
	}
	q.keys[j.key()] = true
	q.pending = append(q.pending, queued{job: j})
	q.signal()
	return true
}

// Len is the number of jobs waiting or running.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending) + len(q.running)
}

func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Run scans until ctx ends.
func (q *Queue) Run(ctx context.Context) {
	q.mu.Lock()
	q.init()
	q.mu.Unlock()
	var wg sync.WaitGroup
	for range cmp.Or(q.Concurrency, 1) {
		wg.Go(func() { q.worker(ctx) })
	}
	wg.Wait()
}

// next takes the first job that may run now, or says how long until one may.
func (q *Queue) next() (queued, time.Duration, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	wait := time.Duration(-1)
	for i, p := range q.pending {
		if d := p.notBefore.Sub(now); d > 0 {
			if wait < 0 || d < wait {
				wait = d
			}
			continue
		}
		q.pending = append(q.pending[:i], q.pending[i+1:]...)
		delete(q.keys, p.job.key())
		q.running[p.job.key()] = true
		return p, 0, true
	}
	return queued{}, wait, false
}

func (q *Queue) worker(ctx context.Context) {
	for ctx.Err() == nil {
		p, wait, ok := q.next()
		if !ok {
			var timer <-chan time.Time
			if wait >= 0 {
				timer = time.After(wait)
			}
			select {
			case <-ctx.Done():
			case <-q.wake:
			case <-timer:
			}
			continue
		}
		q.signal() // another idle worker looks for more
		p.attempts++
		res := q.scan(ctx, p)
		key := p.job.key()
		q.mu.Lock()
		delete(q.running, key)
		retry := res.Outcome == Failed && p.attempts < cmp.Or(q.MaxAttempts, 5) && ctx.Err() == nil
		if again, ok := q.rerun[key]; ok {
			// Queued again while it ran: run it once more, from the start.
			delete(q.rerun, key)
			retry = false
			q.keys[key] = true
			q.pending = append(q.pending, queued{job: again})
		} else if retry {
			p.notBefore = q.now().Add(q.backoff(p.attempts))
			q.keys[key] = true
			q.pending = append(q.pending, p)
		}
		q.mu.Unlock()
		q.signal()
		if !retry && ctx.Err() == nil && q.OnResult != nil {
			q.OnResult(res)
		}
	}
}

// backoff is the wait after the n-th failed attempt: Backoff doubling up to MaxBackoff.
func (q *Queue) backoff(n int) time.Duration {
	limit := cmp.Or(q.MaxBackoff, 5*time.Minute)
	b := max(cmp.Or(q.Backoff, 5*time.Second), time.Millisecond)
	for i := 1; i < n && b < limit; i++ {
		b *= 2
	}
	return min(b, limit)
}

// ErrNotImage says why a manifest is not scanned (nor judged) itself.
var ErrNotImage = errors.New("not a container image")

// errReadOnly: the report cannot be stored in the image's repository.
var errReadOnly = errors.New("read-only repository")

// isReadOnly is true for a registry answer that no retry changes: the repository takes no
// writes (405) or not from us (403).
func isReadOnly(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && (terr.StatusCode == http.StatusMethodNotAllowed || terr.StatusCode == http.StatusForbidden)
}

// errUnchanged: a rescan found what the newest report says.
var errUnchanged = errors.New("the newest report stands: the new database finds the same")

// unchanged is true when the newest report of ref names the same findings as r.
func (q *Queue) unchanged(ref name.Digest, r *Report, opts []remote.Option) bool {
	if q.Key == nil || r.Scanner.DBUpdatedAt == nil {
		return false
	}
	prev, err := Latest(ref, q.publicKeys(), opts...)
	return err == nil && sameFindings(prev.Report, r)
}

// publicKeys check the reports the queue signs (nil without a key).
func (q *Queue) publicKeys() []ed25519.PublicKey {
	if q.Key == nil {
		return nil
	}
	pub, _ := q.Key.Public().(ed25519.PublicKey)
	return []ed25519.PublicKey{pub}
}

// nameOptions parse references to the registry.
func (q *Queue) nameOptions() []name.Option {
	if q.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// remote are the options of one request to the registry, ending with ctx.
func (q *Queue) remote(ctx context.Context) []remote.Option {
	return append(append([]remote.Option(nil), q.Remote...), remote.WithContext(ctx))
}

// markChecked remembers the database j was checked against (Rescan does not queue it again
// for that database).
func (q *Queue) markChecked(j Job, r *Report) {
	if r != nil && r.Scanner.DBUpdatedAt != nil {
		q.checked.put(j.key(), *r.Scanner.DBUpdatedAt)
	}
}

// errAlreadyScanned: a sweep job whose image has a report.
var errAlreadyScanned = errors.New("already has a report")

// scan runs one attempt: check what the manifest is, scan it, store the report.
func (q *Queue) scan(ctx context.Context, p queued) Result {
	res := Result{Job: p.job, Attempts: p.attempts}
	repo, err := name.NewRepository(q.Registry+"/"+p.job.Repository, q.nameOptions()...)
	if err != nil {
		res.Outcome, res.Err = Skipped, err
		return res
	}
	ref := repo.Digest(p.job.Digest)
	ropts := q.remote(ctx)
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		if isNotFound(err) {
			res.Outcome, res.Err = Skipped, fmt.Errorf("%s is gone", ref)
			return res
		}
		res.Outcome, res.Err = Failed, err
		return res
	}
	if err := Runnable(desc.MediaType, desc.Manifest); err != nil {
		res.Outcome, res.Err = Skipped, err
		return res
	}
	if p.job.Cause == CauseSweep {
		switch has, err := q.hasReport(ctx, ref); {
		case err != nil:
			res.Outcome, res.Err = Failed, fmt.Errorf("list the reports of %s: %w", ref, err)
			return res
		case has:
			res.Outcome, res.Err = Skipped, errAlreadyScanned
			return res
		}
	}
	r, err := q.Scanner.Scan(ctx, ref.String(), q.Pull)
	if err != nil {
		res.Outcome, res.Err = Failed, err
		return res
	}
	if p.job.Cause == CauseRescan && q.NoPrune && q.unchanged(ref, r, ropts) {
		// The scanner may not delete its older reports: a rescan that finds what the
		// newest report says stores nothing (reports would pile up, one per database),
		// and remembers the image is current.
		q.markChecked(p.job, r)
		res.Outcome, res.Err = Skipped, errUnchanged
		return res
	}
	h, err := Attach(repo, desc.Descriptor, r, q.Key, ropts...)
	if err != nil {
		if isReadOnly(err) {
			// A repository nobody may write (a pull-through cache of an upstream): retrying
			// would scan it again for nothing, and so would the next rescan.
			q.markChecked(p.job, r)
			res.Outcome, res.Err = Skipped, fmt.Errorf("%w: %w", errReadOnly, err)
			return res
		}
		res.Outcome, res.Err = Failed, err
		return res
	}
	if !q.NoPrune {
		if err := Prune(ref, h, ropts...); err != nil {
			res.PruneErr = err
		}
	}
	res.Outcome, res.Report, res.Latency = Scanned, r, q.now().Sub(p.job.Enqueued)
	return res
}

// Runnable accepts what a container runtime runs: an image manifest (OCI or Docker) with
// a container image config, unless every layer it has is a JSON document (cosign's
// signatures and attestations: an image config and only signature or in-toto layers).
// The rest (reports and other artifacts with their own config type, Helm charts, indexes)
// is not scanned, and the compliance gate serves it unjudged. A subject or an
// artifactType does not make an image less runnable (runtimes ignore both), so neither
// is a way around the gate. It returns an error wrapping ErrNotImage for the rest.
func Runnable(mt types.MediaType, manifest []byte) error {
	switch mt {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	default:
		return fmt.Errorf("%w: %s", ErrNotImage, mt)
	}
	var m struct {
		Config v1.Descriptor   `json:"config"`
		Layers []v1.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return fmt.Errorf("%w: %w", ErrNotImage, err)
	}
	switch m.Config.MediaType {
	case types.OCIConfigJSON, types.DockerConfigJSON:
	default:
		return fmt.Errorf("%w: config %s", ErrNotImage, m.Config.MediaType)
	}
	if len(m.Layers) > 0 && !slices.ContainsFunc(m.Layers, func(l v1.Descriptor) bool { return !strings.HasSuffix(string(l.MediaType), "+json") }) {
		return fmt.Errorf("%w: only JSON layers (%s): a signature or an attestation", ErrNotImage, m.Layers[0].MediaType)
	}
	return nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}
