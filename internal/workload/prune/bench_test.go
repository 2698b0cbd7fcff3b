package prune

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture/regstore"
)

func benchRun() registryconfig.RetentionRun {
	return registryconfig.RetentionRun{Policy: "p", Enforce: true, Policies: []registryconfig.RetentionPolicy{{
		Name: "p", Repositories: []string{"**"}, MaxDeletionPercent: 100, MinAge: registryconfig.Duration{Duration: time.Hour},
		Rules: []registryconfig.RetentionRule{{Name: "main", Glob: "main-*", KeepLast: 10}, {Name: "releases", Semver: ">=1"}},
	}}}
}

// BenchmarkEnforce measures a whole enforced run on a generated filesystem store of 25
// tags per repository: read, plan, then per repository re-read, re-plan and delete (13 of
// the 25 images go). It reports deletions per second.
func BenchmarkEnforce(b *testing.B) {
	for _, repos := range []int{100, 400} {
		b.Run(fmt.Sprintf("tags=%d", repos*25), func(b *testing.B) {
			b.ReportAllocs()
			var deleted int64
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				root := b.TempDir()
				regstore.Generate(b, root, repos, 25)
				driver := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100})
				b.StartTimer()
				start := time.Now()
				sum, err := Run(context.Background(), Options{Driver: driver, Run: benchRun()})
				elapsed += time.Since(start)
				if err != nil || sum.Failed > 0 {
					b.Fatalf("%v %+v", err, sum)
				}
				deleted += sum.ManifestsDeleted
			}
			b.ReportMetric(float64(deleted)/elapsed.Seconds(), "deletions/s")
		})
	}
}

// TestEnforceGeneratedStore: the benchmark's run deletes what it should.
func TestEnforceGeneratedStore(t *testing.T) {
	root := t.TempDir()
	regstore.Generate(t, root, 4, 25)
	driver := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10})
	sum, err := Run(context.Background(), Options{Driver: driver, Run: benchRun()})
	if err != nil {
		t.Fatal(err)
	}
	// Per repository: 22 main-* tags (keep 10), 3 releases (v1.0.0, v1.10.0, v1.20.0).
	if sum.Result != registryconfig.RetentionSucceeded || sum.ManifestsDeleted != 4*12 || sum.Skipped != 0 {
		t.Fatalf("%+v", sum)
	}
	again, err := Run(context.Background(), Options{Driver: driver, Run: benchRun()})
	if err != nil || again.ArtifactsToDelete != 0 || again.ManifestsDeleted != 0 {
		t.Fatalf("a second run finds nothing to do: %v %+v", err, again)
	}
}
