package layout

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPathsRoundTrip(t *testing.T) {
	d := digest.FromString("dockyard")
	hex := d.Encoded()
	if got, want := BlobDataPath(d), "/docker/registry/v2/blobs/sha256/"+hex[:2]+"/"+hex+"/data"; got != want {
		t.Errorf("BlobDataPath = %s, want %s", got, want)
	}
	if got, ok := DigestFromLinkPath(RevisionLinkPath("team-a/app", d)); !ok || got != d {
		t.Errorf("DigestFromLinkPath(revision link) = %s, %v", got, ok)
	}
	if got, ok := DigestFromLinkPath(LayersPath("a") + "/sha256/" + hex + "/link"); !ok || got != d {
		t.Errorf("DigestFromLinkPath(layer link) = %s, %v", got, ok)
	}
	for _, p := range []string{TouchPath(d), QuarantinePath(d)} {
		if got, ok := DigestFromTouchOrQuarantinePath(p); !ok || got != d {
			t.Errorf("DigestFromTouchOrQuarantinePath(%s) = %s, %v", p, got, ok)
		}
	}
	for _, bad := range []string{"/x/link", "/a/sha256/nothex/link", "/a/sha256/" + hex + "/data"} {
		if _, ok := DigestFromLinkPath(bad); ok {
			t.Errorf("DigestFromLinkPath(%s) accepted", bad)
		}
	}
	if _, ok := DigestFromTouchOrQuarantinePath(TouchRoot + "/sha256/ab/" + hex + ".tmp"); ok {
		t.Error("temporary file accepted as a marker")
	}
}

func TestReferrerPathRoundTrip(t *testing.T) {
	subject, ref := digest.FromString("subject"), digest.SHA512.FromString("signature")
	for _, name := range []string{"a", "team-a/app", "x/_subjectsish/y", "a/blobs/b"} {
		n, s, r, ok := ParseReferrerPath(ReferrerPath(name, subject, ref))
		if !ok || n != name || s != subject || r != ref {
			t.Errorf("ParseReferrerPath(ReferrerPath(%q)) = %q, %s, %s, %v", name, n, s, r, ok)
		}
	}
	for _, bad := range []string{
		ReferrersRoot + "/a/sha256/" + subject.Encoded() + "/sha256-" + ref.Encoded(),
		ReferrersDir("a", subject),
		ReferrersDir("a", subject) + "/sha256-nothex",
		ReferrersDir("a", subject) + "/sha256-" + subject.Encoded() + ".tmp",
		TouchPath(subject),
	} {
		if _, _, _, ok := ParseReferrerPath(bad); ok {
			t.Errorf("ParseReferrerPath(%s) accepted", bad)
		}
	}
}
