package server_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Blob downloads are served by Dockyard's own path for filesystem storage; everything a
// client relies on must match what distribution answers.
func TestBlobDownloadPath(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(64<<10, 1)
	tag := mustTag(t, reg.host+"/team-a/fast:v1")
	if err := remote.Write(tag, img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	want, _ := io.ReadAll(rc)
	other, _ := random.Image(1024, 1)
	if err := remote.Write(mustTag(t, reg.host+"/team-b/other:v1"), other, reg.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		StatusCode int
		Header     http.Header
	}
	get := func(user, pw, path string, hdr map[string]string) (answer, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+reg.host+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := reg.transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header}, b
	}
	path := "/v2/team-a/fast/blobs/" + ld.String()

	resp, body := get("bob", "bob-pw", path, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("GET: %d, %d bytes (want %d)", resp.StatusCode, len(body), len(want))
	}
	for k, v := range map[string]string{
		"Docker-Content-Digest": ld.String(), "Etag": `"` + ld.String() + `"`, "Content-Type": "application/octet-stream",
		"Docker-Distribution-Api-Version": "registry/2.0", "Cache-Control": "max-age=31536000",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	resp, body = get("bob", "bob-pw", path, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[10:20]) {
		t.Errorf("range GET: %d %q", resp.StatusCode, body)
	}
	if resp, _ = get("bob", "bob-pw", path, map[string]string{"If-None-Match": `"` + ld.String() + `"`}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: %d, want 304", resp.StatusCode)
	}
	if resp, _ = get("", "", path, nil); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("anonymous GET: %d %q, want 401 with a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, _ = get("carol", "carol-pw", path, nil); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Errorf("GET without pull: %d %v, want 403 with distribution's headers", resp.StatusCode, resp.Header)
	}
	if resp, _ = get("admin", "admin-pw", "/v2/team-a/fast/blobs/sha256:"+strings.Repeat("0", 64), nil); len(resp.Header.Values("Docker-Distribution-Api-Version")) != 1 {
		t.Errorf("fallback answer carries Docker-Distribution-API-Version %d times, want once", len(resp.Header.Values("Docker-Distribution-Api-Version")))
	}
	// A blob that exists in storage but not in this repository is not served from it.
	ol, _ := other.Layers()
	od, _ := ol[0].Digest()
	if resp, body = get("admin", "admin-pw", "/v2/team-a/fast/blobs/"+od.String(), nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "BLOB_UNKNOWN") {
		t.Errorf("blob of another repository: %d %s, want 404 BLOB_UNKNOWN", resp.StatusCode, body)
	}
	if resp, body = get("admin", "admin-pw", "/v2/team-a/fast/blobs/sha256:"+strings.Repeat("0", 64), nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "BLOB_UNKNOWN") {
		t.Errorf("unknown blob: %d %s, want 404 BLOB_UNKNOWN", resp.StatusCode, body)
	}
}
