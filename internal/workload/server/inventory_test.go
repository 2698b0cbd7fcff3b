package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/retention"
	"github.com/dockyard-dev/dockyard/internal/scan"
	"github.com/dockyard-dev/dockyard/internal/workload/inventory"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// TestInventoryFeedsThePlanner pushes images, a multi-arch index and a referrer through the
// real registry, reads the store back with inventory.Read and plans over it: what the
// planner sees is what clients pushed (push times from the storage links, children,
// subjects, blob sizes), and the plan deletes exactly the expired image and its referrer.
func TestInventoryFeedsThePlanner(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	root := filepath.Join(reg.dir, "data")
	opts := reg.opts("", "")
	push := func(tag string) {
		img, _ := random.Image(4<<10, 2)
		if err := remote.Write(mustTag(t, reg.host+"/team-a/app:"+tag), img, opts...); err != nil {
			t.Fatal(err)
		}
	}
	for _, tg := range []string{"main-1", "main-2", "main-3"} {
		push(tg)
	}
	idx, _ := random.Index(2<<10, 1, 2)
	if err := remote.WriteIndex(mustTag(t, reg.host+"/team-a/app:multi"), idx, opts...); err != nil {
		t.Fatal(err)
	}
	old, err := remote.Image(mustTag(t, reg.host+"/team-a/app:main-1"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	sig := artifact(t, "application/vnd.dev.cosign.artifact.sig.v1+json", descriptorOf(t, old), nil)
	sigDigest, _ := sig.Digest()
	sigRef, err := name.NewDigest(reg.host + "/team-a/app@" + sigDigest.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(sigRef, sig, opts...); err != nil {
		t.Fatal(err)
	}
	// main-1 was pushed a day ago: age its tag and revision links.
	oldDigest, _ := old.Digest()
	dayAgo := time.Now().Add(-24 * time.Hour)
	for _, p := range []string{
		filepath.Join(root, layout.RepositoryPath("team-a/app"), "_manifests", "tags", "main-1", "current", "link"),
		filepath.Join(root, layout.RevisionLinkPath("team-a/app", digest.Digest(oldDigest.String()))),
	} {
		if err := os.Chtimes(p, dayAgo, dayAgo); err != nil {
			t.Fatal(err)
		}
	}

	store, err := inventory.Read(context.Background(), filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10}))
	if err != nil {
		t.Fatal(err)
	}
	if len(store.Repositories) != 1 {
		t.Fatalf("repositories = %+v", store.Repositories)
	}
	repo := store.Repositories[0]
	// 3 images + index + 2 children + the signature; 4 tags.
	if len(repo.Manifests) != 7 || len(repo.Tags) != 4 {
		t.Fatalf("%d manifests, %d tags", len(repo.Manifests), len(repo.Tags))
	}
	idxDigest, _ := idx.Digest()
	for _, m := range repo.Manifests {
		switch m.Digest {
		case idxDigest.String():
			if len(m.Children) != 2 {
				t.Errorf("index children = %v", m.Children)
			}
		case sigDigest.String():
			if m.Subject != oldDigest.String() {
				t.Errorf("signature subject = %q, want %s", m.Subject, oldDigest)
			}
		case oldDigest.String():
			if !m.PushedAt.Before(time.Now().Add(-23 * time.Hour)) {
				t.Errorf("push time = %s, want the revision link's (a day ago)", m.PushedAt)
			}
			// Manifest, config and two layers.
			if len(m.Blobs) != 4 {
				t.Errorf("blobs = %+v", m.Blobs)
			}
		}
	}

	plan, err := retention.Make(store, retention.Policy{Repositories: []string{"team-a/**"}, MaxDeletionPercent: 50, SampleSize: 10,
		Rules: []retention.Rule{{Name: "rules[0]", Selector: retention.TagSelector{Glob: "main-*"}, KeepLast: 2},
			{Name: "rules[1]", Selector: retention.TagSelector{Glob: "multi"}}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, a := range plan.Actions {
		deleted = append(deleted, string(a.Kind)+" "+a.Digest)
	}
	slices.Sort(deleted)
	want := []string{"Delete " + oldDigest.String(), "Delete " + sigDigest.String()}
	slices.Sort(want)
	if !slices.Equal(deleted, want) {
		t.Errorf("plan = %q, want %q", deleted, want)
	}
	if plan.ReclaimableBytes <= 4<<10 {
		t.Errorf("reclaimable = %d, want at least the old image's layers", plan.ReclaimableBytes)
	}
}

// TestPullTimesAreRecorded pulls through the real registry and reads the pull times back
// with the inventory: a GET or HEAD of a manifest records it, at most once an hour per
// digest, and a nested repository's pulls are its own.
func TestPullTimesAreRecorded(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	root := filepath.Join(reg.dir, "data")
	opts := reg.opts("", "")
	for _, repo := range []string{"team-a", "team-a/app"} {
		img, _ := random.Image(1<<10, 1)
		if err := remote.Write(mustTag(t, reg.host+"/"+repo+":v1"), img, opts...); err != nil {
			t.Fatal(err)
		}
	}
	driver := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10})
	pulledAt := func(repo string) time.Time {
		t.Helper()
		store, err := inventory.Read(context.Background(), driver)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range store.Repositories {
			if r.Name == repo {
				return r.Manifests[0].PulledAt
			}
		}
		t.Fatalf("no repository %s", repo)
		return time.Time{}
	}
	if !pulledAt("team-a/app").IsZero() {
		t.Error("a push is not a pull")
	}
	// The scanner reading the image (its own requests, Trivy's) is not a use of it.
	for _, ua := range []string{scan.UserAgent, "trivy/0.74.0"} {
		if _, err := remote.Get(mustTag(t, reg.host+"/team-a/app:v1"), append(append([]remote.Option(nil), opts...), remote.WithUserAgent(ua))...); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // written after the response, if at all
	if !pulledAt("team-a/app").IsZero() {
		t.Error("the scanner's reads counted as pulls")
	}
	// containerd resolving a tag whose content it has: a HEAD counts.
	if _, err := remote.Head(mustTag(t, reg.host+"/team-a/app:v1"), opts...); err != nil {
		t.Fatal(err)
	}
	var first time.Time
	for i := 0; i < 100 && first.IsZero(); i++ {
		time.Sleep(20 * time.Millisecond) // written after the response
		first = pulledAt("team-a/app")
	}
	if time.Since(first) > time.Minute {
		t.Fatalf("pull time = %s, want just now", first)
	}
	if !pulledAt("team-a").IsZero() {
		t.Error("team-a/app's pull counted for team-a")
	}
	// Age the marker; another pull within the hour does not rewrite it.
	img, _ := remote.Image(mustTag(t, reg.host+"/team-a/app:v1"), opts...)
	d, _ := img.Digest()
	marker := filepath.Join(root, layout.PulledPath("team-a/app", digest.Digest(d.String())))
	tenMin := time.Now().Add(-10 * time.Minute)
	if err := os.Chtimes(marker, tenMin, tenMin); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(mustTag(t, reg.host+"/team-a/app:v1"), opts...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := pulledAt("team-a/app"); got.After(tenMin.Add(time.Second)) {
		t.Errorf("a pull within the hour rewrote the marker: %s", got)
	}
}
