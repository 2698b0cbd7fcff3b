package server_test

import (
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// A Registry caching a second real registry (TLS, credentials) under the prefix "up":
// pulls return the upstream's exact digests, whole; a moved tag shows after its TTL; what
// was pulled is served when the upstream is gone; nothing can be pushed there.
func TestPullThroughCache(t *testing.T) {
	_, upAuth := authFixture(t, testUsers)
	up := startRegistry(t, upAuth, nil)
	img, _ := random.Image(32<<10, 2)
	d := mustPush(t, up, "library/app:v1", img)
	idx, _ := random.Index(8<<10, 1, 2)
	if err := remote.WriteIndex(mustTag(t, up.host+"/library/multi:v1"), idx, up.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	idxD, _ := idx.Digest()

	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"username": "bob", "password": "bob-pw"} { // bob may pull team-a/** only
		if err := os.WriteFile(filepath.Join(creds, f), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, cacheAuth := authFixture(t, testUsers)
	cache := startRegistry(t, cacheAuth, func(c *registryconfig.Config) {
		c.Cache = &registryconfig.Cache{Upstreams: []registryconfig.CacheUpstream{{Prefix: "up", URL: "https://" + up.host,
			CredentialsDir: creds, CAFile: caFile, TagTTL: registryconfig.Duration{Duration: time.Second}}}}
	})

	// Access rules apply first: alice may not pull up/**, and her pull fetches nothing.
	_, err := remote.Image(mustTag(t, cache.host+"/up/library/app:v1"), cache.opts("alice", "alice-pw")...)
	if code, _ := statusOf(err); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("alice pulled through the cache: %v", err)
	}
	// The cache's credentials cannot read library/**: a clear 503 naming the upstream.
	_, err = remote.Image(mustTag(t, cache.host+"/up/library/app:v1"), cache.opts("admin", "admin-pw")...)
	wantStatus(t, "a pull the upstream refuses", err, http.StatusServiceUnavailable, "UNAVAILABLE")

	for f, v := range map[string]string{"username": "admin", "password": "admin-pw"} { // credentials are re-read
		if err := os.WriteFile(filepath.Join(creds, f), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := remote.Image(mustTag(t, cache.host+"/up/library/app:v1"), cache.opts("admin", "admin-pw")...)
	if err != nil {
		t.Fatalf("pull through the cache: %v", err)
	}
	if gd, _ := got.Digest(); gd != d {
		t.Errorf("cached digest %s, upstream %s", gd, d)
	}
	if err := verifyImage(got); err != nil {
		t.Error(err)
	}
	gi, err := remote.Index(mustTag(t, cache.host+"/up/library/multi:v1"), cache.opts("admin", "admin-pw")...)
	if err != nil {
		t.Fatalf("pull an index through the cache: %v", err)
	}
	if gd, _ := gi.Digest(); gd != idxD {
		t.Errorf("cached index %s, upstream %s", gd, idxD)
	}
	im, _ := gi.IndexManifest()
	for _, m := range im.Manifests {
		child, err := gi.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyImage(child); err != nil {
			t.Errorf("child %s: %v", m.Digest, err)
		}
	}

	// Read-only for clients.
	err = remote.Write(mustTag(t, cache.host+"/up/library/app:mine"), img, cache.opts("admin", "admin-pw")...)
	wantStatus(t, "a push into the cache", err, http.StatusMethodNotAllowed, "UNSUPPORTED")

	// A moved tag shows once its TTL passed.
	img2, _ := random.Image(8<<10, 1)
	d2 := mustPush(t, up, "library/app:v1", img2)
	time.Sleep(1100 * time.Millisecond)
	got, err = remote.Image(mustTag(t, cache.host+"/up/library/app:v1"), cache.opts("admin", "admin-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); gd != d2 {
		t.Errorf("after the TTL the cache serves %s, the upstream has %s", gd, d2)
	}

	// The upstream goes away: what was pulled is still served, by tag and by digest.
	up.cancel()
	<-up.done
	up.done <- nil // the cleanup waits for it
	time.Sleep(1100 * time.Millisecond)
	for _, ref := range []string{"up/library/app:v1", "up/library/app@" + d.String(), "up/library/multi:v1"} {
		if _, err := remote.Head(mustRef(t, cache.host+"/"+ref), cache.opts("admin", "admin-pw")...); err != nil {
			t.Errorf("%s with the upstream gone: %v", ref, err)
		}
	}
	_, err = remote.Image(mustTag(t, cache.host+"/up/library/never:v1"), cache.opts("admin", "admin-pw")...)
	wantStatus(t, "an uncached image with the upstream gone", err, http.StatusServiceUnavailable, "UNAVAILABLE")
}

func mustPush(t *testing.T, reg *testRegistry, ref string, img ggcrv1.Image) ggcrv1.Hash {
	t.Helper()
	if err := remote.Write(mustTag(t, reg.host+"/"+ref), img, reg.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
