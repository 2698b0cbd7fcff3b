package server_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// flaky is the real scanner behind a switch: while down, every scan fails as an
// unreachable scanner would.
type flaky struct {
	scan.ImageScanner
	down  atomic.Bool
	calls atomic.Int32
}

func (f *flaky) Scan(ctx context.Context, ref string, cred *scan.Credentials) (*scan.Report, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return nil, errors.New("dial tcp 127.0.0.1:4954: connect: connection refused")
	}
	return f.ImageScanner.Scan(ctx, ref, cred)
}

// TestScanQueue: what the scanner workload does with pushes. Images are scanned once each
// however often they are queued, reports are stored and not scanned themselves, other
// artifacts are skipped, a scanner that is away holds the queue until it is back, and a
// job that keeps failing ends as failed after its attempts.
func TestScanQueue(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	scanner := &flaky{ImageScanner: scanFixture(t, reg, time.Now())}
	alice := reg.opts("alice", "alice-pw")

	vuln := pushAlpine(t, reg, "team-a/app:vulnerable", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}})
	clean := pushAlpine(t, reg, "team-a/app:clean", []trivyfix.Package{{Name: "musl", Version: "1.2.5-r0"}})
	// A signature-like artifact referring to the vulnerable image: never scanned.
	subject, err := remote.Head(vuln, alice...)
	if err != nil {
		t.Fatal(err)
	}
	sig := artifact(t, sigType, *subject, nil)
	sigDigest := descriptorOf(t, sig).Digest.String()
	if err := remote.Write(vuln.Context().Digest(sigDigest), sig, alice...); err != nil {
		t.Fatal(err)
	}

	results := make(chan scan.Result, 16)
	q := &scan.Queue{Registry: reg.host, Scanner: scanner, Pull: &scan.Credentials{Username: "bob", Password: "bob-pw"},
		Remote: alice, Concurrency: 2, Size: 8, MaxAttempts: 5, Backoff: 50 * time.Millisecond,
		OnResult: func(r scan.Result) { results <- r }}
	job := func(d name.Digest) scan.Job {
		return scan.Job{Repository: "team-a/app", Digest: d.DigestStr(), Cause: "push"}
	}
	// Queued while the scanner is down: nothing is lost, nothing is reported failed before
	// its attempts are used up.
	scanner.down.Store(true)
	for _, j := range []scan.Job{job(vuln), job(vuln), job(clean), {Repository: "team-a/app", Digest: sigDigest, Cause: "push"}} {
		if !q.Add(j) {
			t.Fatalf("Add(%v) refused", j)
		}
	}
	if q.Len() != 3 {
		t.Errorf("Len = %d after queueing the vulnerable image twice, the clean one and a signature; want 3", q.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { q.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	next := func() scan.Result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(90 * time.Second):
			t.Fatal("no scan result within 90s")
		}
		return scan.Result{}
	}
	// The signature needs no scanner: it is skipped straight away.
	if r := next(); r.Outcome != scan.Skipped || r.Digest != sigDigest {
		t.Fatalf("first result = %s of %s (%v), want the signature skipped", r.Outcome, r.Digest, r.Err)
	}
	time.Sleep(60 * time.Millisecond) // past the first backoff, still failing
	scanner.down.Store(false)
	got := map[string]scan.Result{}
	for range 2 {
		r := next()
		got[r.Digest] = r
	}
	for d, want := range map[string]int{vuln.DigestStr(): 1, clean.DigestStr(): 0} {
		r := got[d]
		if r.Outcome != scan.Scanned || r.Attempts < 2 || len(r.Report.Vulnerabilities) != want || r.Latency <= 0 {
			t.Errorf("%s: %s after %d attempts, %d vulnerabilities, latency %s (%v); want scanned after a retry with %d",
				d, r.Outcome, r.Attempts, len(r.Report.Vulnerabilities), r.Latency, r.Err, want)
		}
		stored, err := scan.Latest(vuln.Context().Digest(d), alice...)
		if err != nil || len(stored.Report.Vulnerabilities) != want {
			t.Errorf("stored report of %s: %+v, %v", d, stored, err)
		}
	}
	if calls := scanner.calls.Load(); calls > 10 {
		t.Errorf("the scanner ran %d times for two images with at most 5 attempts each", calls)
	}

	// A report (pushed by the queue itself) is not scanned in turn.
	reports, err := scan.Reports(vuln, alice...)
	if err != nil || len(reports) != 1 {
		t.Fatalf("reports of the vulnerable image: %v, %v", reports, err)
	}
	q.Add(scan.Job{Repository: "team-a/app", Digest: reports[0].Manifest.String(), Cause: "push"})
	if r := next(); r.Outcome != scan.Skipped {
		t.Errorf("the report itself: %s (%v), want skipped", r.Outcome, r.Err)
	}

	// A manifest that is gone is skipped.
	q.Add(scan.Job{Repository: "team-a/app", Digest: "sha256:" + strings.Repeat("0", 64), Cause: "push"})
	if r := next(); r.Outcome != scan.Skipped {
		t.Errorf("a manifest that does not exist: %s (%v), want skipped", r.Outcome, r.Err)
	}

	// A job that keeps failing ends after MaxAttempts.
	scanner.down.Store(true)
	failing := &scan.Queue{Registry: reg.host, Scanner: scanner, Remote: alice, MaxAttempts: 2, Backoff: 10 * time.Millisecond,
		OnResult: func(r scan.Result) { results <- r }}
	failing.Add(job(clean))
	wg.Go(func() { failing.Run(ctx) })
	if r := next(); r.Outcome != scan.Failed || r.Attempts != 2 || r.Err == nil {
		t.Errorf("always failing: %s after %d attempts (%v), want failed after 2", r.Outcome, r.Attempts, r.Err)
	}

	// The queue is bounded.
	full := &scan.Queue{Registry: reg.host, Scanner: scanner, Size: 1}
	if !full.Add(job(vuln)) || full.Add(job(clean)) {
		t.Error("a queue of size 1 took two jobs")
	}
}
