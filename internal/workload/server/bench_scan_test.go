package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

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
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { q.Run(ctx) })
			defer func() { cancel(); wg.Wait() }()
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
