package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/replication"
	"github.com/dockyard-dev/dockyard/internal/retention"
)

// replicationPair is two real registries on 127.0.0.1, each with TLS and access control:
// the source with htpasswd users, the destination with the token service, written to by
// the operator's replication credential.
type replicationPair struct {
	src, dst *testRegistry
	dstKeys  registryconfig.TokenKeys
}

func newReplicationPair(t testing.TB) *replicationPair {
	t.Helper()
	_, srcAuth := authFixture(t, testUsers)
	_, dstAuth := authFixture(t, testUsers)
	key := newKey(t, time.Now().Add(-time.Minute))
	withTokens(t, dstAuth, key)
	return &replicationPair{src: startRegistry(t, srcAuth, nil), dst: startRegistry(t, dstAuth, nil),
		dstKeys: registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}}}
}

func (p *replicationPair) srcEndpoint() replication.Endpoint {
	return replication.Endpoint{Host: p.src.host, Transport: p.src.transport, Auth: &authn.Basic{Username: "admin", Password: "admin-pw"}}
}

// dstEndpoint writes with a replication credential granting pull and push on mirror/**.
func (p *replicationPair) dstEndpoint(t testing.TB, rt http.RoundTripper) replication.Endpoint {
	t.Helper()
	cred, err := registryconfig.SignReplicationCredential(p.dstKeys, testIssuer, testService, "ns/rule",
		[]string{"mirror/**"}, []string{"pull", "push", "delete"}, time.Now(), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if rt == nil {
		rt = p.dst.transport
	}
	return replication.Endpoint{Host: p.dst.host, Transport: rt, Auth: &authn.Basic{Username: "replicator", Password: cred}}
}

func mirrorRule() replication.Rule {
	return replication.Rule{Repositories: []string{"team-a/**"}, Exclude: []string{"team-a/private"},
		Tags: retention.TagSelector{Glob: "v*"}, Referrers: true,
		Rename: func(s string) string { return "mirror/" + s }}
}

func (p *replicationPair) push(t testing.TB, ref string, img ggcrv1.Image) ggcrv1.Hash {
	t.Helper()
	if err := remote.Write(mustTag(t, p.src.host+"/"+ref), img, p.src.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

// dstDigest is the digest a destination tag names ("" when it has none).
func (p *replicationPair) dstDigest(t testing.TB, ref string) string {
	t.Helper()
	d, err := remote.Head(mustTag(t, p.dst.host+"/"+ref), p.dst.opts("admin", "admin-pw")...)
	if code, _ := statusOf(err); code == http.StatusNotFound {
		return ""
	}
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return d.Digest.String()
}

func replicate(t *testing.T, src, dst replication.Endpoint, rule replication.Rule) replication.Result {
	t.Helper()
	res, err := replication.Sync(context.Background(), src, dst, rule, replication.Options{})
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

func TestReplicationCopiesWholeArtifacts(t *testing.T) {
	p := newReplicationPair(t)
	app, _ := random.Image(32<<10, 3)
	appD := p.push(t, "team-a/app:v1", app)
	p.push(t, "team-a/app:v1.0", app) // a second tag of the same artifact
	p.push(t, "team-a/app:latest", app)
	p.push(t, "team-a/app:dev", app) // a tag the filter does not match
	idx, _ := random.Index(16<<10, 2, 3)
	if err := remote.WriteIndex(mustTag(t, p.src.host+"/team-a/multi:v2"), idx, p.src.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	idxD, _ := idx.Digest()
	secret, _ := random.Image(1<<10, 1)
	p.push(t, "team-a/private:v1", secret)
	// A signature through the referrers API, and a cosign-style signature tag.
	subject := descriptorOf(t, app)
	sig := artifact(t, sigType, subject, nil)
	sigD, _ := sig.Digest()
	if err := remote.Write(mustTag(t, p.src.host+"/team-a/app").Context().Digest(sigD.String()), sig, p.src.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	cosignSig, _ := random.Image(512, 1)
	cosignTag := "sha256-" + strings.TrimPrefix(appD.String(), "sha256:") + ".sig"
	cosignD := p.push(t, "team-a/app:"+cosignTag, cosignSig)

	res := replicate(t, p.srcEndpoint(), p.dstEndpoint(t, nil), mirrorRule())
	if res.Repositories != 2 || res.Artifacts != 2 || res.Copied != 2 || res.Failed != 0 || res.Referrers != 2 {
		t.Fatalf("first run: %+v", res)
	}
	if res.Bytes < 32<<10*3 {
		t.Errorf("first run sent %d bytes, want at least the image's layers", res.Bytes)
	}
	for ref, want := range map[string]string{
		"mirror/team-a/app:v1": appD.String(), "mirror/team-a/app:v1.0": appD.String(),
		"mirror/team-a/multi:v2": idxD.String(), "mirror/team-a/app:" + cosignTag: cosignD.String(),
		"mirror/team-a/app:latest": "", "mirror/team-a/app:dev": "", "mirror/team-a/private:v1": "",
	} {
		if got := p.dstDigest(t, ref); got != want {
			t.Errorf("%s at the destination: %q, want %q", ref, got, want)
		}
	}
	// Whole and byte-exact: every blob of every child of the index, and the signature
	// found through the destination's referrers API.
	dIdx, err := remote.Index(mustTag(t, p.dst.host+"/mirror/team-a/multi:v2"), p.dst.opts("admin", "admin-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := dIdx.IndexManifest()
	for _, m := range im.Manifests {
		child, err := dIdx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyImage(child); err != nil {
			t.Errorf("child %s: %v", m.Digest, err)
		}
	}
	code, _, refs := getReferrers(t, p.dst, "admin", "admin-pw", "mirror/team-a/app", appD.String(), "")
	if code != http.StatusOK || len(refs.Manifests) != 1 || refs.Manifests[0].Digest.String() != sigD.String() {
		t.Errorf("referrers at the destination: %d %+v", code, refs.Manifests)
	}

	// A second run copies nothing and sends no blob.
	res = replicate(t, p.srcEndpoint(), p.dstEndpoint(t, nil), mirrorRule())
	if res.Copied != 0 || res.Skipped != 2 || res.Bytes != 0 || res.Referrers != 0 || res.Failed != 0 {
		t.Errorf("second run: %+v", res)
	}

	// A moved tag follows; a deleted one stays unless deletes propagate.
	app2, _ := random.Image(8<<10, 1)
	app2D := p.push(t, "team-a/app:v1", app2)
	if err := remote.Delete(mustTag(t, p.src.host+"/team-a/multi:v2"), p.src.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	res = replicate(t, p.srcEndpoint(), p.dstEndpoint(t, nil), mirrorRule())
	if res.Copied != 1 || res.TagsDeleted != 0 {
		t.Errorf("after a tag move: %+v", res)
	}
	if got := p.dstDigest(t, "mirror/team-a/app:v1"); got != app2D.String() {
		t.Errorf("moved tag at the destination: %s, want %s", got, app2D)
	}
	if got := p.dstDigest(t, "mirror/team-a/app:v1.0"); got != appD.String() {
		t.Errorf("the other tag of the old artifact: %s", got)
	}
	if p.dstDigest(t, "mirror/team-a/multi:v2") == "" {
		t.Error("a tag deleted at the source went at the destination without propagateDeletes")
	}
	rule := mirrorRule()
	rule.PropagateDeletes = true
	res = replicate(t, p.srcEndpoint(), p.dstEndpoint(t, nil), rule)
	if res.TagsDeleted != 1 || res.Failed != 0 {
		t.Errorf("propagating deletes: %+v", res)
	}
	if p.dstDigest(t, "mirror/team-a/multi:v2") != "" {
		t.Error("a tag deleted at the source is still at the destination with propagateDeletes")
	}
	if p.dstDigest(t, "mirror/team-a/app:"+cosignTag) == "" {
		t.Error("propagateDeletes removed a signature tag")
	}
}

// flakyTransport fails every blob upload once failAfter uploads have gone through, until
// healed: a remote that goes away in the middle of a copy.
type flakyTransport struct {
	next      http.RoundTripper
	failAfter int64
	uploads   atomic.Int64
	healed    atomic.Bool
}

func (f *flakyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !f.healed.Load() && strings.Contains(req.URL.Path, "/blobs/uploads/") && req.Method != http.MethodPost {
		if f.uploads.Add(1) > f.failAfter {
			if req.Body != nil {
				_ = req.Body.Close() // as every RoundTripper must, or the source stream stays open
			}
			return nil, &net.OpError{Op: "write", Net: "tcp", Err: errors.New("connection reset by peer (test)")}
		}
	}
	return f.next.RoundTrip(req)
}

func TestReplicationResumesAfterTheRemoteFails(t *testing.T) {
	p := newReplicationPair(t)
	var naive int64
	for i, tag := range []string{"v1", "v2", "v3", "v4"} {
		img, _ := random.Image(64<<10, 3)
		p.push(t, "team-a/app:"+tag, img)
		naive += 64 << 10 * 3
		_ = i
	}
	flaky := &flakyTransport{next: p.dst.transport, failAfter: 5}
	res, err := replication.Sync(context.Background(), p.srcEndpoint(), p.dstEndpoint(t, flaky), mirrorRule(), replication.Options{Parallel: 1, Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed == 0 || res.Copied+res.Failed != 4 {
		t.Fatalf("run against a failing remote: %+v", res)
	}
	if got := replication.Reason(res.FirstErr); got != v1alpha1.ReasonRemoteUnreachable {
		t.Errorf("reason %q for %v", got, res.FirstErr)
	}
	// Nothing partial is visible: every tag there names a complete image.
	for _, tag := range []string{"v1", "v2", "v3", "v4"} {
		img, err := remote.Image(mustTag(t, p.dst.host+"/mirror/team-a/app:"+tag), p.dst.opts("admin", "admin-pw")...)
		if code, _ := statusOf(err); code == http.StatusNotFound {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyImage(img); err != nil {
			t.Errorf("tag %s visible before it was complete: %v", tag, err)
		}
	}
	firstBytes := res.Bytes
	flaky.healed.Store(true)
	res = replicate(t, p.srcEndpoint(), p.dstEndpoint(t, flaky), mirrorRule())
	if res.Failed != 0 || res.Copied == 0 || res.Copied+res.Skipped != 4 {
		t.Errorf("run after the remote came back: %+v", res)
	}
	// It resumes: blobs already sent are not sent again.
	if res.Bytes+firstBytes > naive+naive/2 || res.Bytes >= naive {
		t.Errorf("resumed run sent %d bytes after %d (all blobs: %d)", res.Bytes, firstBytes, naive)
	}
	for _, tag := range []string{"v1", "v2", "v3", "v4"} {
		img, err := remote.Image(mustTag(t, p.dst.host+"/mirror/team-a/app:"+tag), p.dst.opts("admin", "admin-pw")...)
		if err != nil {
			t.Fatalf("%s after the resumed run: %v", tag, err)
		}
		if err := verifyImage(img); err != nil {
			t.Errorf("%s: %v", tag, err)
		}
	}
}

func TestReplicationFailuresHaveAReason(t *testing.T) {
	p := newReplicationPair(t)
	img, _ := random.Image(1<<10, 1)
	p.push(t, "team-a/app:v1", img)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	for _, tc := range []struct {
		name     string
		src, dst func() replication.Endpoint
		want     string
	}{
		{"wrong password at the source", func() replication.Endpoint {
			e := p.srcEndpoint()
			e.Auth = &authn.Basic{Username: "admin", Password: "wrong"}
			return e
		}, func() replication.Endpoint { return p.dstEndpoint(t, nil) }, v1alpha1.ReasonAuthenticationFailed},
		{"a credential without push at the destination", p.srcEndpoint, func() replication.Endpoint {
			e := p.dstEndpoint(t, nil)
			e.Auth = &authn.Basic{Username: "bob", Password: "bob-pw"}
			return e
		}, v1alpha1.ReasonPermissionDenied},
		{"an untrusted certificate", p.srcEndpoint, func() replication.Endpoint {
			return p.dstEndpoint(t, &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}})
		}, v1alpha1.ReasonTLSUntrusted},
		{"nobody listening", p.srcEndpoint, func() replication.Endpoint {
			e := p.dstEndpoint(t, nil)
			e.Host = closed
			return e
		}, v1alpha1.ReasonRemoteUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := replication.Sync(context.Background(), tc.src(), tc.dst(), mirrorRule(), replication.Options{})
			if err == nil {
				err = res.FirstErr
			}
			if err == nil {
				t.Fatalf("no failure: %+v", res)
			}
			if got := replication.Reason(err); got != tc.want {
				t.Errorf("reason %q, want %q (%v)", got, tc.want, err)
			}
			if slices.ContainsFunc(res.Errors, func(s string) bool { return strings.Contains(s, "admin-pw") || strings.Contains(s, "eyJ") }) {
				t.Errorf("a credential in the errors: %v", res.Errors)
			}
		})
	}
}

// Blobs another destination repository already has are mounted, not sent again.
func TestReplicationMountsAcrossRepositories(t *testing.T) {
	p := newReplicationPair(t)
	img, _ := random.Image(256<<10, 2)
	p.push(t, "team-a/one:v1", img)
	p.push(t, "team-a/two:v1", img)
	res, err := replication.Sync(context.Background(), p.srcEndpoint(), p.dstEndpoint(t, nil), mirrorRule(), replication.Options{Parallel: 1})
	if err != nil || res.Copied != 2 || res.Failed != 0 {
		t.Fatalf("sync: %v %+v", err, res)
	}
	if res.Bytes > 256<<10*2+64<<10 {
		t.Errorf("sent %d bytes for two repositories sharing 512 KiB of layers: the second should mount them", res.Bytes)
	}
	for _, repo := range []string{"one", "two"} {
		got, err := remote.Image(mustTag(t, p.dst.host+"/mirror/team-a/"+repo+":v1"), p.dst.opts("admin", "admin-pw")...)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyImage(got); err != nil {
			t.Errorf("%s: %v", repo, err)
		}
	}
}
