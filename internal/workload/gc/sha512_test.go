package gc_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// sha512Client pushes and pulls content addressed by sha512 over the plain HTTP API, as an
// OCI 1.1 client that chose sha512 does.
type sha512Client struct {
	t    *testing.T
	base string
}

// answer is a response whose body has been read and closed.
type answer struct {
	StatusCode int
	Header     http.Header
}

func (c sha512Client) do(method, path string, body []byte, header map[string]string) (answer, []byte) {
	c.t.Helper()
	u := path
	if u[0] == '/' {
		u = "http://" + c.base + path
	}
	req, _ := http.NewRequest(method, u, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header}, b
}

func (c sha512Client) pushBlob(repo string, data []byte) ocispec.Descriptor {
	c.t.Helper()
	d := digest.SHA512.FromBytes(data)
	resp, _ := c.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("start upload: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	resp, body := c.do(http.MethodPut, loc+"&digest="+d.String(), data, map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != d.String() {
		c.t.Fatalf("upload %s: %d %s %s", d, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), body)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(data))}
}

func (c sha512Client) pushManifest(repo, ref string, m ocispec.Manifest) digest.Digest {
	c.t.Helper()
	b, _ := json.Marshal(m)
	d := digest.SHA512.FromBytes(b)
	if ref == "" {
		ref = d.String()
	}
	resp, body := c.do(http.MethodPut, "/v2/"+repo+"/manifests/"+ref, b, map[string]string{"Content-Type": ocispec.MediaTypeImageManifest})
	if resp.StatusCode != http.StatusCreated {
		c.t.Fatalf("push manifest %s: %d %s", ref, resp.StatusCode, body)
	}
	return d
}

func (c sha512Client) get(repo, kind string, d digest.Digest) (int, []byte) {
	resp, body := c.do(http.MethodGet, fmt.Sprintf("/v2/%s/%s/%s", repo, kind, d), nil,
		map[string]string{"Accept": ocispec.MediaTypeImageManifest})
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Content-Digest") != d.String() {
		c.t.Errorf("GET %s %s answered Docker-Content-Digest %s", kind, d, resp.Header.Get("Docker-Content-Digest"))
	}
	return resp.StatusCode, body
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Distribution stores sha512 content under its sha256 and links the sha512 name to it. The
// collector must keep that content for a kept sha512 manifest, and collect it with an
// untagged one.
func TestCollectSHA512Content(t *testing.T) {
	root := t.TempDir()
	c := sha512Client{t: t, base: startServe(t, root, time.Hour)}
	image := func(repo, ref string) (digest.Digest, [][]byte) {
		cfgData := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
		layer := randomBytes(t, 4096)
		cfg := c.pushBlob(repo, cfgData)
		cfg.MediaType = ocispec.MediaTypeImageConfig
		l := c.pushBlob(repo, layer)
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{l}}
		m.SchemaVersion = 2
		d := c.pushManifest(repo, "", m)
		if ref != "" {
			c.pushManifest(repo, ref, m)
		}
		return d, [][]byte{layer}
	}
	kept, keptLayers := image("lib/s512", "v1")
	gone, _ := image("lib/s512", "")

	backdate(t, root, 2*time.Hour)
	res := collect(t, root, time.Hour, true)
	if code, _ := c.get("lib/s512", "manifests", kept); code != http.StatusOK {
		t.Fatalf("kept sha512 manifest: GET %d", code)
	}
	// The kept layer is still served, byte for byte, under its sha512 name.
	if code, body := c.get("lib/s512", "blobs", digest.SHA512.FromBytes(keptLayers[0])); code != http.StatusOK || !bytes.Equal(body, keptLayers[0]) {
		t.Errorf("kept sha512 layer: GET %d, %d bytes", code, len(body))
	}
	if code, _ := c.get("lib/s512", "manifests", gone); code != http.StatusNotFound {
		t.Errorf("untagged sha512 manifest: GET %d, want 404", code)
	}
	// The untagged image's manifest (sha512 alias and sha256 revision), config and layer go.
	if res.ManifestsDeleted < 1 || res.BlobsDeleted < 2 {
		t.Errorf("result %+v: want the untagged manifest and its blobs collected", res)
	}
}

// Deleting a manifest deletes it under every name: by sha256, its sha512 name goes too; by
// its sha512 name, the sha256 manifest goes (and its tag, as distribution's delete does).
func TestDeleteRemovesEveryName(t *testing.T) {
	root := t.TempDir()
	c := sha512Client{t: t, base: startServe(t, root, time.Hour)}
	push := func(ref string) (sha512Name, sha256Name digest.Digest) {
		l := c.pushBlob("lib/del", randomBytes(t, 512))
		cfg := c.pushBlob("lib/del", []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
		cfg.MediaType = ocispec.MediaTypeImageConfig
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{l}}
		m.SchemaVersion = 2
		b, _ := json.Marshal(m)
		d := c.pushManifest("lib/del", "", m)
		if ref != "" {
			c.pushManifest("lib/del", ref, m)
		}
		return d, digest.FromBytes(b)
	}
	del := func(d digest.Digest) {
		t.Helper()
		resp, body := c.do(http.MethodDelete, "/v2/lib/del/manifests/"+d.String(), nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("DELETE %s: %d %s", d, resp.StatusCode, body)
		}
	}
	y1, x1 := push("")
	del(x1)
	if code, _ := c.get("lib/del", "manifests", y1); code != http.StatusNotFound {
		t.Errorf("after DELETE by sha256, GET by its sha512 name = %d, want 404", code)
	}
	y2, x2 := push("v2")
	del(y2)
	if code, _ := c.get("lib/del", "manifests", x2); code != http.StatusNotFound {
		t.Errorf("after DELETE by sha512, GET by sha256 = %d, want 404", code)
	}
	resp, _ := c.do(http.MethodGet, "/v2/lib/del/manifests/v2", nil, map[string]string{"Accept": ocispec.MediaTypeImageManifest})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("after DELETE by sha512, GET of its tag = %d, want 404", resp.StatusCode)
	}
}
