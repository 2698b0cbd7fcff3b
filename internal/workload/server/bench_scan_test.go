package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dockyard-dev/dockyard/internal/compliance"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// BenchmarkScanQueue measures scan throughput and push-to-report latency with the real
// trivy on small images: each iteration pushes 20 distinct images, queues them as pushes
// arrive and waits until every report is stored. Reported: images/min, and p50/p99 of the
// latency from queueing to the stored report, at the default concurrency (1) and at 2.
func BenchmarkScanQueue(b *testing.B) {
	for _, conc := range []int{1, 2} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			_, auth := authFixture(b, testUsers)
			reg := startRegistry(b, auth, nil)
			trivy := scanFixture(b, reg, time.Now())
			const images = 20
			var (
				mu        sync.Mutex
				latencies []time.Duration
				done      = make(chan scan.Result, images)
			)
			q := &scan.Queue{Registry: reg.host, Scanner: trivy, Key: scanKey, Pull: &scan.Credentials{Username: "bob", Password: "bob-pw"},
				Remote: reg.opts("alice", "alice-pw"), Concurrency: conc, Size: images,
				OnResult: func(r scan.Result) { done <- r }}
			// Through the Service, as the scanner runs: it knows its database, so a scan does
			// not ask trivy about it each time.
			svc := &scan.Service{Trivy: trivy, Queue: q}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { svc.Run(ctx) })
			defer func() { cancel(); wg.Wait() }()
			for deadline := time.Now().Add(time.Minute); svc.Status().DBUpdatedAt == nil; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("the scanner has no database after a minute: %+v", svc.Status())
				}
			}
			b.ResetTimer()
			var scanned int
			for i := range b.N {
				for j := range images {
					d := pushAlpine(b, reg, fmt.Sprintf("team-a/bench:%d-%d", i, j),
						[]trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}, {Name: "zlib", Version: fmt.Sprintf("1.3.%d-r%d", i, j)}})
					if !q.Add(scan.Job{Repository: "team-a/bench", Digest: d.DigestStr(), Cause: "push"}) {
						b.Fatal("the queue refused a job")
					}
				}
				for range images {
					var r scan.Result
					select {
					case r = <-done:
					case <-time.After(5 * time.Minute):
						b.Fatal("no scan result within 5 minutes")
					}
					if r.Outcome != scan.Scanned {
						b.Fatalf("%s: %s (%v)", r.Digest, r.Outcome, r.Err)
					}
					mu.Lock()
					latencies = append(latencies, r.Latency)
					mu.Unlock()
					scanned++
				}
			}
			b.StopTimer()
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Milliseconds())
			}
			b.ReportMetric(float64(scanned)/b.Elapsed().Minutes(), "images/min")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}

// BenchmarkPushToVerdict measures, for small images pushed one at a time to an idle
// registry, the time from the acknowledged push to the first compliance verdict that
// rests on a report (what admission and the registry's gate answer): the registry's
// event (the one event path, delivered over HTTP to a receiver standing in for the
// operator's, which queues the job as the operator's forwarder does), the real trivy's
// scan, the signed report stored as a referrer, and the checker reading it back (polled
// every 20 ms). Reported: p50/p99 of that latency, as a fresh decision at every poll
// (pipeline) and as admission and the registry's gate decide (admission: "no report yet"
// is reused for 2 s).
func BenchmarkPushToVerdict(b *testing.B) {
	q := &scan.Queue{Key: scanKey, Pull: &scan.Credentials{Username: "bob", Password: "bob-pw"}, Concurrency: 1, Size: 100}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch registryconfig.EventBatch
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range batch.Events {
			if e.Action == registryconfig.EventPush && e.Digest != "" {
				q.Add(scan.Job{Repository: e.Repository, Digest: e.Digest, Cause: "push"})
			}
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	b.Cleanup(recv.Close)
	tok := filepath.Join(b.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("sa-token"), 0o600); err != nil {
		b.Fatal(err)
	}
	_, auth := authFixture(b, testUsers)
	reg := startRegistry(b, auth, func(c *registryconfig.Config) {
		c.Events = &registryconfig.Events{URL: recv.URL, TokenFile: tok, Registry: "ns/main"}
	})
	q.Registry, q.Scanner, q.Remote = reg.host, scanFixture(b, reg, time.Now()), reg.opts("alice", "alice-pw")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { q.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	policy := compliance.Policy{Severity: scan.SeverityHigh}
	// pipeline: a fresh decision at every poll; admission: the webhook's and the registry
	// gate's checker as configured (reports cached 30 s, "no report yet" 2 s).
	for _, mode := range []struct {
		name string
		ttl  time.Duration
	}{{"pipeline", time.Nanosecond}, {"admission", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			checker := &compliance.Checker{Remote: reg.opts("bob", "bob-pw"), Keys: scanKeys, TTL: mode.ttl}
			const images = 10
			var latencies []time.Duration
			b.ResetTimer()
			for i := range b.N {
				for j := range images {
					d := pushAlpine(b, reg, fmt.Sprintf("team-a/verdict-%s:%d-%d", mode.name, i, j),
						[]trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}, {Name: "zlib", Version: fmt.Sprintf("1.3.%d-r%d", i, j)}})
					t0 := time.Now()
					deadline := t0.Add(2 * time.Minute)
					for {
						v, err := checker.Check(ctx, d, policy)
						if err != nil {
							b.Fatal(err)
						}
						if v.Reason != compliance.NotScannedAllowed {
							if v.Reason != compliance.Vulnerable {
								b.Fatalf("%s: %s, want Vulnerable", d, v.Reason)
							}
							break
						}
						if time.Now().After(deadline) {
							b.Fatalf("%s: no verdict within 2 minutes of the push", d)
						}
						time.Sleep(20 * time.Millisecond)
					}
					latencies = append(latencies, time.Since(t0))
				}
			}
			b.StopTimer()
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Milliseconds())
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}
