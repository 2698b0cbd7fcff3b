package server_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// writeCredential writes the files of a scanner credentials Secret as the pod sees them.
func writeCredential(t *testing.T, dir, password string) {
	t.Helper()
	for f, v := range map[string]string{"username": "dockyard-scanner", "password": password} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestScanSweepWithScannerCredential: the scanner as the operator deploys it, against a
// registry with access control. It acts with the scanner credential the operator signs
// (read from its Secret's files at every use, so a renewed one works without a restart);
// the sweep finds images nobody announced (a plain image, and an index's images one by
// one), skips signature tags, and a second sweep skips what already has a report.
func TestScanSweepWithScannerCredential(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	key := newKey(t, time.Now().Add(-time.Minute))
	withTokens(t, auth, key)
	reg := startRegistry(t, auth, nil)
	keys := registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}}

	plain := pushAlpine(t, reg, "team-a/app:v1", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}})
	child := pushAlpine(t, reg, "team-a/multi:child", []trivyfix.Package{{Name: "zlib", Version: "1.3.1-r0"}})
	childImg, err := remote.Image(child, reg.opts("alice", "alice-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: childImg})
	if err := remote.WriteIndex(mustTag(t, reg.host+"/team-a/multi:v1"), idx, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	// A cosign-style signature tag: not an image of its own, never queued.
	if err := remote.Write(mustTag(t, reg.host+"/team-a/app:sha256-"+plain.DigestStr()[7:]+".sig"), childImg, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	expired, _, err := registryconfig.SignScannerCredential(keys, testIssuer, testService, "ns/main", time.Now().Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeCredential(t, dir, expired)
	cred := &scan.Credentials{Dir: dir}
	results := make(chan scan.Result, 16)
	q := &scan.Queue{Registry: reg.host, Scanner: scanFixture(t, reg, time.Now()), Key: scanKey, Pull: cred,
		Remote: []remote.Option{remote.WithAuth(cred.Authenticator()), remote.WithTransport(reg.transport)}, Size: 16,
		OnResult: func(r scan.Result) { results <- r }}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	// An expired credential: the registry refuses the sweep.
	_, err = q.Sweep(ctx)
	if code, _ := statusOf(err); code != http.StatusUnauthorized {
		t.Errorf("sweep with an expired credential: %v, want 401", err)
	}
	// Renewed in place, as the kubelet updates a Secret volume: taken at the next use.
	fresh, _, err := registryconfig.SignScannerCredential(keys, testIssuer, testService, "ns/main", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeCredential(t, dir, fresh)
	// The scanner's identity writes manifests by digest only and deletes nothing: a
	// scanner taken over by a hostile image cannot move a tag or destroy an image.
	err = remote.Write(mustTag(t, reg.host+"/team-a/app:v1"), childImg, q.Remote...)
	if code, _ := statusOf(err); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("the scanner moving a tag: %v, want refused", err)
	}
	if err := remote.Delete(plain, q.Remote...); err == nil {
		t.Errorf("the scanner deleted an image")
	}
	if d, err := remote.Head(mustTag(t, reg.host+"/team-a/app:v1"), reg.opts("alice", "alice-pw")...); err != nil || d.Digest.String() != plain.DigestStr() {
		t.Errorf("team-a/app:v1 = %v, %v; want it untouched", d, err)
	}
	res, err := q.Sweep(ctx)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	// team-a/app:v1, team-a/multi:child (the same digest as the index's image: queued once)
	// and the index's image; the signature tag is left out.
	if res.Repositories != 2 || res.Tags != 3 || res.Queued != 3 || res.Scanned != 0 || res.Incomplete {
		t.Errorf("sweep = %+v, want 2 repositories, 3 tags, 3 queued, complete", res)
	}
	if q.Len() != 2 {
		t.Errorf("queue holds %d jobs, want 2 (the plain image, the index's image once)", q.Len())
	}
	wg.Go(func() { q.Run(ctx) })
	got := map[string]scan.Result{}
	for range 2 {
		select {
		case r := <-results:
			got[r.Repository+"@"+r.Digest] = r
		case <-time.After(2 * time.Minute):
			t.Fatal("no scan result within 2m")
		}
	}
	for _, d := range []string{"team-a/app@" + plain.DigestStr(), "team-a/multi@" + child.DigestStr()} {
		r, ok := got[d]
		if !ok || r.Outcome != scan.Scanned {
			t.Fatalf("%s: %+v, want scanned", d, r)
		}
	}
	if v := got["team-a/app@"+plain.DigestStr()].Report.Vulnerabilities; len(v) != 1 || v[0].ID != "CVE-2099-0001" {
		t.Errorf("team-a/app:v1 findings = %+v, want CVE-2099-0001", v)
	}
	// The reports are readable by anyone trusting the scanner's key, as the operator does.
	if _, err := scan.Latest(plain, scanKeys, reg.opts("bob", "bob-pw")...); err != nil {
		t.Errorf("report of team-a/app:v1: %v", err)
	}

	// A second sweep queues nothing: every image has a report.
	if res, err := q.Sweep(ctx); err != nil || res.Queued != 0 || res.Scanned != 3 {
		t.Fatalf("second sweep = %+v, %v; want 3 already scanned, none queued", res, err)
	}
	if q.Len() != 0 {
		t.Errorf("queue holds %d jobs after a sweep of scanned images", q.Len())
	}
	// A push of an image the sweep queued is not answered by "already has a report":
	// the waiting sweep job becomes a push job.
	q2 := &scan.Queue{Registry: reg.host, Scanner: q.Scanner, Key: scanKey, Pull: cred, Remote: q.Remote,
		OnResult: func(r scan.Result) { results <- r }}
	q2.Add(scan.Job{Repository: "team-a/app", Digest: plain.DigestStr(), Cause: scan.CauseSweep})
	q2.Add(scan.Job{Repository: "team-a/app", Digest: plain.DigestStr(), Cause: "push"})
	if q2.Len() != 1 {
		t.Errorf("queue holds %d jobs for one image", q2.Len())
	}
	wg.Go(func() { q2.Run(ctx) })
	select {
	case r := <-results:
		if r.Outcome != scan.Scanned || r.Cause != "push" {
			t.Errorf("the pushed image: %s (%v) as %q, want scanned again as a push", r.Outcome, r.Err, r.Cause)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("no result within 2m")
	}
}
