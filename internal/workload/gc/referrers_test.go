package gc_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// ociImage is a random single-layer OCI image.
func ociImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(2<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	return mutate.MediaType(img, types.OCIManifestSchema1)
}

// referrer pushes, by digest only, an artifact whose subject is subject.
func referrer(t *testing.T, repo name.Repository, subject v1.Image) v1.Hash {
	t.Helper()
	desc, err := partial.Descriptor(subject)
	if err != nil {
		t.Fatal(err)
	}
	img, ok := mutate.Subject(ociImage(t), *desc).(v1.Image)
	if !ok {
		t.Fatal("mutate.Subject did not return an image")
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Digest(d.String()), img, plain...); err != nil {
		t.Fatalf("push referrer: %v", err)
	}
	return d
}

func TestCollectKeepsReferrersOfKeptManifests(t *testing.T) {
	root := t.TempDir()
	host := startServe(t, root, time.Hour)
	repo, _ := name.NewRepository(host + "/lib/signed")

	tagged := ociImage(t)
	if err := remote.Write(repo.Tag("v1"), tagged, plain...); err != nil {
		t.Fatal(err)
	}
	sig := referrer(t, repo, tagged)
	sigOfSig := referrer(t, repo, mustImage(t, repo, sig))

	orphanBase := ociImage(t)
	ob, _ := orphanBase.Digest()
	if err := remote.Write(repo.Digest(ob.String()), orphanBase, plain...); err != nil {
		t.Fatal(err)
	}
	orphanSig := referrer(t, repo, orphanBase)

	backdate(t, root, 2*time.Hour)
	res := collect(t, root, time.Hour, true)
	if res.ManifestsDeleted != 2 {
		t.Errorf("deleted %d manifests, want 2 (the untagged image and its referrer)", res.ManifestsDeleted)
	}
	for _, d := range []v1.Hash{sig, sigOfSig} {
		if _, err := remote.Image(repo.Digest(d.String()), plain...); err != nil {
			t.Errorf("referrer %s of a tagged image was collected: %v", d, err)
		}
	}
	for _, d := range []v1.Hash{ob, orphanSig} {
		if _, err := remote.Image(repo.Digest(d.String()), plain...); err == nil {
			t.Errorf("untagged %s (no kept subject) survived", d)
		}
	}
	// The referrers API still lists the kept signature; the collected one's index entry is
	// gone from storage.
	td, _ := tagged.Digest()
	refs, err := remote.Referrers(repo.Digest(td.String()), plain...)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := refs.IndexManifest(); len(m.Manifests) != 1 || m.Manifests[0].Digest != sig {
		t.Errorf("referrers of the tagged image after collection = %+v, want only %s", m.Manifests, sig)
	}
	entry := filepath.Join(root, filepath.FromSlash(layout.ReferrerPath("lib/signed", digest.Digest(ob.String()), digest.Digest(orphanSig.String()))))
	if _, err := os.Stat(entry); !os.IsNotExist(err) {
		t.Errorf("index entry of the collected referrer %s still exists (stat: %v)", orphanSig, err)
	}
	if res.ReferrersRemoved != 1 {
		t.Errorf("ReferrersRemoved = %d, want 1", res.ReferrersRemoved)
	}
}

// Registries without the referrers API get a tagged index per subject (`sha256-<hex>`) from
// clients; replicated content may carry them too. Such a tag lives as long as its subject.
func TestCollectFallbackReferrersTags(t *testing.T) {
	root := t.TempDir()
	host := startServe(t, root, time.Hour)
	repo, _ := name.NewRepository(host + "/lib/fallback")
	tagged := ociImage(t)
	if err := remote.Write(repo.Tag("v1"), tagged, plain...); err != nil {
		t.Fatal(err)
	}
	orphan := ociImage(t)
	od, _ := orphan.Digest()
	if err := remote.Write(repo.Digest(od.String()), orphan, plain...); err != nil {
		t.Fatal(err)
	}
	td, _ := tagged.Digest()
	for _, subject := range []v1.Hash{td, od} {
		sig := ociImage(t)
		if err := remote.Write(repo.Digest(mustDigest(t, sig)), sig, plain...); err != nil {
			t.Fatal(err)
		}
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: sig})
		if err := remote.WriteIndex(repo.Tag("sha256-"+subject.Hex), idx, plain...); err != nil {
			t.Fatal(err)
		}
	}
	backdate(t, root, 2*time.Hour)
	res := collect(t, root, time.Hour, true)
	// The orphan, its fallback index and the signature in it.
	if res.ManifestsDeleted != 3 {
		t.Errorf("deleted %d manifests, want 3 (the untagged image, its referrers index, its referrer)", res.ManifestsDeleted)
	}
	if _, err := remote.Index(repo.Tag("sha256-"+td.Hex), plain...); err != nil {
		t.Errorf("referrers index of the tagged image was collected: %v", err)
	}
	if _, err := remote.Index(repo.Tag("sha256-"+od.Hex), plain...); err == nil {
		t.Error("referrers tag of the collected image survived")
	}
}

func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func mustImage(t *testing.T, repo name.Repository, d v1.Hash) v1.Image {
	t.Helper()
	img, err := remote.Image(repo.Digest(d.String()), plain...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// A run interrupted between moving a blob aside and deciding leaves it in quarantine; the
// next run puts it back.
func TestCollectRestoresQuarantine(t *testing.T) {
	root := t.TempDir()
	host := startServe(t, root, time.Hour)
	repo, _ := name.NewRepository(host + "/lib/q")
	img := ociImage(t)
	if err := remote.Write(repo.Tag("v1"), img, plain...); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	data := filepath.Join(root, filepath.FromSlash(layout.BlobsRoot), "sha256", ld.Hex[:2], ld.Hex, "data")
	q := filepath.Join(root, filepath.FromSlash(layout.QuarantineRoot), "sha256", ld.Hex)
	if err := os.MkdirAll(filepath.Dir(q), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(data, q); err != nil {
		t.Fatal(err)
	}
	collect(t, root, time.Hour, true)
	if _, err := os.Stat(data); err != nil {
		t.Fatalf("quarantined blob not restored: %v", err)
	}
	got, err := remote.Image(repo.Tag("v1"), plain...)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(got); err != nil {
		t.Errorf("image broken after restore: %v", err)
	}
}
