package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/server"
)

func countMarkers(t *testing.T, root string) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(filepath.Join(root, filepath.FromSlash(layout.TouchRoot)), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// A manifest naming blobs that do not exist writes no garbage-collection markers, and one
// naming more descriptors than MaxManifestReferences is refused before any storage work.
func TestBogusManifestsWriteNoMarkers(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	root := filepath.Join(reg.dir, "data")
	put := func(layers int) (int, string) {
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
			Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.Digest("sha256:" + strings.Repeat("0", 64)), Size: 2}}
		m.SchemaVersion = 2
		for i := range layers {
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip,
				Digest: digestOfInt(i), Size: 1})
		}
		b, _ := json.Marshal(m)
		req, _ := http.NewRequest(http.MethodPut, "https://"+reg.host+"/v2/bogus/manifests/v1", bytes.NewReader(b))
		req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
		resp, err := reg.transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Errors []struct{ Code string } }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		code := ""
		if len(body.Errors) > 0 {
			code = body.Errors[0].Code
		}
		return resp.StatusCode, code
	}
	if status, code := put(200); status != http.StatusBadRequest || code != "MANIFEST_BLOB_UNKNOWN" {
		t.Errorf("manifest naming 200 absent layers: %d %s, want 400 MANIFEST_BLOB_UNKNOWN", status, code)
	}
	if n := countMarkers(t, root); n != 0 {
		t.Errorf("%d markers written for absent blobs, want 0", n)
	}
	if status, code := put(server.MaxManifestReferences + 1); status != http.StatusBadRequest || code != "MANIFEST_INVALID" {
		t.Errorf("manifest naming %d layers: %d %s, want 400 MANIFEST_INVALID", server.MaxManifestReferences+1, status, code)
	}
	if n := countMarkers(t, root); n != 0 {
		t.Errorf("%d markers written, want 0", n)
	}
}

func digestOfInt(i int) digest.Digest {
	return digest.Digest(fmt.Sprintf("sha256:%064x", i+1))
}
