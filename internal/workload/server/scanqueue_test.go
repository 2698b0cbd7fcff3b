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
	// gate, when set, holds each scan until it is closed or receives.
	gate chan struct{}
}

func (f *flaky) Scan(ctx context.Context, ref string, cred *scan.Credentials) (*scan.Report, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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

	// An older report of the vulnerable image, which the queue's report replaces.
	older := &scan.Report{Subject: vuln.DigestStr(), ScannedAt: time.Now().Add(-time.Hour).Truncate(time.Second), Scanner: scan.Scanner{Name: "trivy"}}
	if _, err := scan.Attach(vuln.Context(), *subject, older, scanKey, alice...); err != nil {
		t.Fatal(err)
	}

	results := make(chan scan.Result, 16)
	q := &scan.Queue{Registry: reg.host, Scanner: scanner, Key: scanKey, Pull: &scan.Credentials{Username: "bob", Password: "bob-pw"},
		Remote: alice, Concurrency: 2, Size: 8, MaxAttempts: 20, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
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
	// Both images have failed at least once (and wait to be retried) before the scanner
	// comes back.
	for deadline := time.Now().Add(30 * time.Second); scanner.calls.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
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
		stored, err := scan.Latest(vuln.Context().Digest(d), scanKeys, alice...)
		if err != nil || len(stored.Report.Vulnerabilities) != want {
			t.Errorf("stored report of %s: %+v, %v", d, stored, err)
		}
	}
	// The queue pruned the older report stored before it ran: one report per image.
	reports, err := scan.Reports(vuln, scanKeys, alice...)
	if err != nil || len(reports) != 1 || !reports[0].Created.After(older.ScannedAt) {
		t.Fatalf("reports of the vulnerable image: %+v, %v; want only the queue's", reports, err)
	}
	// A report (pushed by the queue itself) is not scanned in turn.
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
	failing := &scan.Queue{Registry: reg.host, Scanner: scanner, Key: scanKey, Remote: alice, MaxAttempts: 2, Backoff: 10 * time.Millisecond,
		OnResult: func(r scan.Result) { results <- r }}
	failing.Add(job(clean))
	wg.Go(func() { failing.Run(ctx) })
	if r := next(); r.Outcome != scan.Failed || r.Attempts != 2 || r.Err == nil {
		t.Errorf("always failing: %s after %d attempts (%v), want failed after 2", r.Outcome, r.Attempts, r.Err)
	}

	// Queued again while it is being scanned (a rescan after a new database): scanned
	// again after, not lost.
	scanner.down.Store(false)
	gated := &flaky{ImageScanner: scanner.ImageScanner, gate: make(chan struct{})}
	again := &scan.Queue{Registry: reg.host, Scanner: gated, Key: scanKey, Remote: alice, Pull: &scan.Credentials{Username: "bob", Password: "bob-pw"},
		OnResult: func(r scan.Result) { results <- r }}
	again.Add(job(clean))
	wg.Go(func() { again.Run(ctx) })
	for deadline := time.Now().Add(30 * time.Second); gated.calls.Load() < 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !again.Add(scan.Job{Repository: "team-a/app", Digest: clean.DigestStr(), Cause: "rescan"}) || again.Len() != 1 {
		t.Errorf("queueing a running job again: Len = %d, want 1 (the running one)", again.Len())
	}
	gated.gate <- struct{}{}
	if r := next(); r.Outcome != scan.Scanned || r.Cause != "push" {
		t.Errorf("first run: %s %s (%v)", r.Outcome, r.Cause, r.Err)
	}
	gated.gate <- struct{}{}
	if r := next(); r.Outcome != scan.Scanned || r.Cause != "rescan" {
		t.Errorf("second run: %s %s (%v), want the rescan", r.Outcome, r.Cause, r.Err)
	}

	// The queue is bounded.
	full := &scan.Queue{Registry: reg.host, Scanner: scanner, Size: 1}
	if !full.Add(job(vuln)) || full.Add(job(clean)) {
		t.Error("a queue of size 1 took two jobs")
	}
}
