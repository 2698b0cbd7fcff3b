// Package regstore generates registry stores for tests and benchmarks: distribution's
// storage layout written directly, much faster than pushing.
package regstore

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// Generate writes a filesystem store of repos repositories with tags tagged images each,
// directly in distribution's layout (manifests, revision and tag links; the config and
// layer blobs are not needed to read the inventory). Tag i was pushed i hours ago.
func Generate(tb testing.TB, root string, repos, tags int) {
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
