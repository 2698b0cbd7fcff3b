package server_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func TestImmutableTags(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, func(c *registryconfig.Config) {
		c.ImmutableTags = []registryconfig.ImmutableTagRule{{Repositories: []string{"team-a/**"}, Tags: []string{"v*"}}}
	})
	admin := reg.opts("admin", "admin-pw") // Manager of everything: immutability binds it too
	v1, _ := random.Image(2<<10, 1)
	v1b, _ := random.Image(2<<10, 1)
	tag := mustTag(t, reg.host+"/team-a/app:v1.0.0")
	if err := remote.Write(tag, v1, admin...); err != nil {
		t.Fatal(err)
	}
	// The same manifest again is fine (a retried CI job).
	if err := remote.Write(tag, v1, admin...); err != nil {
		t.Errorf("re-pushing the same manifest to an immutable tag: %v", err)
	}
	err := remote.Write(tag, v1b, admin...)
	wantStatus(t, "moving an immutable tag", err, http.StatusForbidden, "DENIED")
	if err == nil || !strings.Contains(err.Error(), "immutableTags[0]") {
		t.Errorf("the refusal must name the rule: %v", err)
	}
	got, err := remote.Image(tag, admin...)
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); gd != imageDigest(t, v1) {
		t.Errorf("the tag moved to %s", gd)
	}
	wantStatus(t, "deleting an immutable tag", remote.Delete(tag, admin...), http.StatusForbidden, "DENIED")
	d, err := name.NewDigest(reg.host + "/team-a/app@" + imageDigest(t, v1).String())
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "deleting the manifest of an immutable tag", remote.Delete(d, admin...), http.StatusForbidden, "DENIED")

	// Under another name: the sha512 name of the same manifest is a link to it.
	raw, _ := v1.RawManifest()
	mt, _ := v1.MediaType()
	sum := sha512.Sum512(raw)
	sha512Ref := "/v2/team-a/app/manifests/sha512:" + hex.EncodeToString(sum[:])
	req, _ := http.NewRequest(http.MethodPut, "https://"+reg.host+sha512Ref, bytes.NewReader(raw))
	req.Header.Set("Content-Type", string(mt))
	req.SetBasicAuth("admin", "admin-pw")
	resp, err := reg.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT by sha512: %d", resp.StatusCode)
	}
	if code := reg.do(t, http.MethodDelete, sha512Ref, basic("admin", "admin-pw")).StatusCode; code != http.StatusForbidden {
		t.Errorf("deleting an immutable tag's manifest by its sha512 name: %d, want 403", code)
	}
	// What the tag needs: a layer of its image, the platform manifests of an index.
	layers, _ := v1.Layers()
	ld, _ := layers[0].Digest()
	if code := reg.do(t, http.MethodDelete, "/v2/team-a/app/blobs/"+ld.String(), basic("admin", "admin-pw")).StatusCode; code != http.StatusForbidden {
		t.Errorf("deleting a layer of an immutable tag's image: %d, want 403", code)
	}
	idx, _ := random.Index(1<<10, 1, 2)
	if err := remote.WriteIndex(mustTag(t, reg.host+"/team-a/app:v2.0.0"), idx, admin...); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if code := reg.do(t, http.MethodDelete, "/v2/team-a/app/manifests/"+im.Manifests[0].Digest.String(), basic("admin", "admin-pw")).StatusCode; code != http.StatusForbidden {
		t.Errorf("deleting a platform manifest of an immutable index: %d, want 403", code)
	}
	if got, err := remote.Index(mustTag(t, reg.host+"/team-a/app:v2.0.0"), admin...); err != nil {
		t.Errorf("the immutable index no longer pulls: %v", err)
	} else if _, err := got.IndexManifest(); err != nil {
		t.Error(err)
	}

	// Other tags and other repositories stay mutable.
	latest := mustTag(t, reg.host+"/team-a/app:latest")
	for _, img := range []ggcrv1.Image{v1, v1b} {
		if err := remote.Write(latest, img, admin...); err != nil {
			t.Errorf("a tag outside the rule's patterns is mutable: %v", err)
		}
	}
	other := mustTag(t, reg.host+"/team-b/app:v1.0.0")
	for _, img := range []ggcrv1.Image{v1, v1b} {
		if err := remote.Write(other, img, admin...); err != nil {
			t.Errorf("a tag outside the rule's repositories is mutable: %v", err)
		}
	}
	// A client that may not push gets the usual answer, not a hint that the tag exists.
	err = remote.Write(tag, v1b, reg.opts("carol", "carol-pw")...)
	if code, _ := statusOf(err); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("carol: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "immutable") {
		t.Errorf("an unauthorized client learned about the immutable tag: %v", err)
	}
}

func imageDigest(t *testing.T, img ggcrv1.Image) ggcrv1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
