package inventory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/dockyard-dev/dockyard/internal/retention"
	"github.com/dockyard-dev/dockyard/internal/testfixture/regstore"
)

// BenchmarkReadAndPlan reads a generated filesystem store and plans "keep the last 10
// main-* and every release" over it: 500 and 2,000 repositories of 25 tags (12,500 and
// 50,000 tags). It reports the time and memory of read + plan together.
func BenchmarkReadAndPlan(b *testing.B) {
	p := retention.Policy{Repositories: []string{"**"}, MaxDeletionPercent: 100, SampleSize: 50, Rules: []retention.Rule{
		{Name: "rules[0]", Selector: retention.TagSelector{Glob: "main-*"}, KeepLast: 10},
		{Name: "rules[1]", Selector: retention.TagSelector{Semver: ">=1"}},
	}}
	for _, repos := range []int{500, 2000} {
		root := b.TempDir()
		regstore.Generate(b, root, repos, 25)
		driver := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100})
		b.Run(fmt.Sprintf("tags=%d", repos*25), func(b *testing.B) {
			b.ReportAllocs()
			var plan retention.Plan
			for b.Loop() {
				store, err := Read(context.Background(), driver)
				if err != nil {
					b.Fatal(err)
				}
				if plan, err = retention.Make(store, p, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(plan.ArtifactsToDelete), "deleted")
		})
	}
}

// TestGeneratedStore checks the generator and the reader agree (so the benchmark measures
// a store the reader understands).
func TestGeneratedStore(t *testing.T) {
	root := t.TempDir()
	regstore.Generate(t, root, 3, 12)
	store, err := Read(context.Background(), filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10}))
	if err != nil {
		t.Fatal(err)
	}
	if len(store.Repositories) != 3 {
		t.Fatalf("repositories = %d", len(store.Repositories))
	}
	for _, r := range store.Repositories {
		if len(r.Manifests) != 12 || len(r.Tags) != 12 {
			t.Errorf("%s: %d manifests, %d tags", r.Name, len(r.Manifests), len(r.Tags))
		}
		for _, m := range r.Manifests {
			if len(m.Blobs) != 3 || m.PushedAt.IsZero() {
				t.Errorf("%s %s: blobs %v pushed %s", r.Name, m.Digest, m.Blobs, m.PushedAt)
			}
		}
	}
	plan, err := retention.Make(store, retention.Policy{Repositories: []string{"**"}, MaxDeletionPercent: 100,
		Rules: []retention.Rule{{Name: "r", Selector: retention.TagSelector{Glob: "main-*"}, KeepLast: 5}, {Name: "v", Selector: retention.TagSelector{Glob: "v*"}}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Per repository: 10 main-* tags (t=1..9, 11), keep 5; v1.0.0 and v1.10.0 kept.
	if plan.ArtifactsToDelete != 3*5 {
		t.Errorf("to delete = %d, want 15", plan.ArtifactsToDelete)
	}
}
