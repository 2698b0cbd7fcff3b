package gc_test

import (
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestCollectIndexAwareAndGrace(t *testing.T) {
	root := t.TempDir()
	host := startServe(t, root, time.Hour)
	repo, _ := name.NewRepository(host + "/lib/app")

	idx, err := random.Index(16<<10, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(repo.Tag("multi"), idx, plain...); err != nil {
		t.Fatal(err)
	}
	tagged, _ := random.Image(16<<10, 2)
	if err := remote.Write(repo.Tag("v1"), tagged, plain...); err != nil {
		t.Fatal(err)
	}
	untagged, _ := random.Image(16<<10, 2)
	ud, _ := untagged.Digest()
	if err := remote.Write(repo.Digest(ud.String()), untagged, plain...); err != nil {
		t.Fatal(err)
	}
	uLayers, _ := untagged.Layers()

	// Everything is recent: nothing goes, whatever the options.
	if res := collect(t, root, time.Hour, true); res.BlobsDeleted != 0 || res.ManifestsDeleted != 0 {
		t.Fatalf("recent content collected: %+v", res)
	}
	backdate(t, root, 2*time.Hour)

	// Without deleteUntagged, the untagged image is still referenced by its revision.
	if res := collect(t, root, time.Hour, false); res.BlobsDeleted != 0 || res.ManifestsDeleted != 0 {
		t.Fatalf("deleteUntagged=false collected: %+v", res)
	}
	res := collect(t, root, time.Hour, true)
	// The untagged image: 1 manifest; its manifest blob, config and 2 layers.
	if res.ManifestsDeleted != 1 || res.BlobsDeleted != 4 || res.BytesFreed <= 32<<10 {
		t.Errorf("deleteUntagged run = %+v, want 1 manifest and 4 blobs (> 32KiB)", res)
	}
	for _, l := range uLayers {
		d, _ := l.Digest()
		if blobExists(root, d) {
			t.Errorf("layer %s of the untagged image survived", d)
		}
	}
	// The index, its untagged children and the tagged image pull intact.
	gotIdx, err := remote.Index(repo.Tag("multi"), plain...)
	if err != nil {
		t.Fatalf("pull index: %v", err)
	}
	im, _ := gotIdx.IndexManifest()
	for _, m := range im.Manifests {
		img, err := gotIdx.Image(m.Digest)
		if err != nil {
			t.Fatalf("index child %s: %v", m.Digest, err)
		}
		if err := verifyImage(img); err != nil {
			t.Errorf("index child %s broken: %v", m.Digest, err)
		}
	}
	img, err := remote.Image(repo.Tag("v1"), plain...)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(img); err != nil {
		t.Errorf("tagged image broken: %v", err)
	}
	// A second run finds nothing more.
	if res := collect(t, root, time.Hour, true); res.BlobsDeleted != 0 || res.ManifestsDeleted != 0 {
		t.Errorf("second run collected %+v", res)
	}
	// Re-pushing the collected image works (no stale cache claims its blobs exist).
	if err := remote.Write(repo.Tag("again"), untagged, plain...); err != nil {
		t.Fatalf("re-push collected image: %v", err)
	}
	again, err := remote.Image(repo.Tag("again"), plain...)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(again); err != nil {
		t.Errorf("re-pushed image broken: %v", err)
	}
}
