package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/retention"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// generate writes a filesystem store of repos repositories with tags tagged images each,
// directly in distribution's layout (manifests, revision and tag links; the config and
// layer blobs are not needed to read the inventory). Tag i was pushed i hours ago.
func generate(tb testing.TB, root string, repos, tags int) {
	tb.Helper()
	write := func(p string, data []byte, mtime time.Time) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			tb.Fatal(err)
		}
		if !mtime.IsZero() {
			if err := os.Chtimes(full, mtime, mtime); err != nil {
				tb.Fatal(err)
			}
		}
	}
	now := time.Now()
	for r := range repos {
		name := fmt.Sprintf("team-%d/app-%d", r%50, r)
		for t := range tags {
			layer := digest.FromString(fmt.Sprintf("layer %d/%d", r, t))
			manifest, _ := json.Marshal(map[string]any{
				"schemaVersion": 2,
				"mediaType":     "application/vnd.oci.image.manifest.v1+json",
				"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromString("config"), "size": 100},
				"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 1 << 20}},
			})
			d := digest.FromBytes(manifest)
			pushed := now.Add(-time.Duration(t) * time.Hour)
			write(layout.BlobDataPath(d), manifest, time.Time{})
			write(layout.RevisionLinkPath(name, d), []byte(d.String()), pushed)
			tag := fmt.Sprintf("main-%d", t)
			if t%10 == 0 {
				tag = fmt.Sprintf("v1.%d.0", t)
			}
			write(filepath.Join(layout.RepositoryPath(name), "_manifests", "tags", tag, "current", "link"), []byte(d.String()), pushed)
		}
	}
}

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
		generate(b, root, repos, 25)
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
	generate(t, root, 3, 12)
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
