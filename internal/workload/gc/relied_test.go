package gc_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

func head(t *testing.T, url string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, url, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// An old untagged manifest that a push relies on during a run (containerd HEADs an index's
// children before pushing the index) is kept with everything it references, not only its
// own blob.
func TestManifestReliedOnIsKeptWithItsLayers(t *testing.T) {
	root := t.TempDir()
	host := startServe(t, root, time.Hour)
	repo, _ := name.NewRepository(host + "/lib/child")
	img := ociImage(t)
	d, _ := img.Digest()
	if err := remote.Write(repo.Digest(d.String()), img, plain...); err != nil {
		t.Fatal(err)
	}
	backdate(t, root, 2*time.Hour)
	// The existence check of a push that is about to name it in an index.
	if code := head(t, "http://"+host+"/v2/lib/child/manifests/"+d.String()); code != http.StatusOK {
		t.Fatalf("HEAD manifest = %d", code)
	}
	res := collect(t, root, time.Hour, true)
	got, err := remote.Image(repo.Digest(d.String()), plain...)
	if err != nil {
		t.Fatalf("the relied-on manifest was collected: %v (result %+v)", err, res)
	}
	if err := verifyImage(got); err != nil {
		t.Fatalf("the relied-on manifest lost content: %v (result %+v)", err, res)
	}
}

// An existence check in a repository that does not hold the blob protects nothing: it writes
// no marker (or anyone who may push anywhere could keep any blob from collection).
func TestHeadInAnotherRepositoryWritesNoMarker(t *testing.T) {
	root := t.TempDir()
	host := startServe(t, root, time.Hour)
	repo, _ := name.NewRepository(host + "/lib/owner")
	img := ociImage(t)
	if err := remote.Write(repo.Tag("v1"), img, plain...); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	marker := filepath.Join(root, filepath.FromSlash(layout.TouchPath(digest.Digest(ld.String()))))
	_ = os.Remove(marker)
	if code := head(t, "http://"+host+"/v2/lib/stranger/blobs/"+ld.String()); code != http.StatusNotFound {
		t.Fatalf("HEAD in another repository = %d, want 404", code)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("a HEAD in a repository without the blob wrote its marker (stat: %v)", err)
	}
	if code := head(t, "http://"+host+"/v2/lib/owner/blobs/"+ld.String()); code != http.StatusOK {
		t.Fatalf("HEAD in the owner = %d", code)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("a HEAD in the repository holding the blob wrote no marker: %v", err)
	}
}
