package server_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture/cosign"
	"github.com/dockyard-dev/dockyard/internal/workload/gc"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/prune"
	"github.com/dockyard-dev/dockyard/internal/workload/server"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

// pruneFixture is a registry with a repository of CI builds, a release, a multi-arch index
// and signatures in both forms, some of them a day old.
type pruneFixture struct {
	reg    *testRegistry
	root   string
	images map[string]ggcrv1.Image // by tag
	sigOCI ggcrv1.Image            // OCI 1.1 referrer of main-1
	sigTag ggcrv1.Image            // cosign sha256-<main-2>.sig
	index  ggcrv1.ImageIndex
}

func newPruneFixture(t *testing.T) *pruneFixture {
	t.Helper()
	f := &pruneFixture{reg: startRegistry(t, nil, nil), images: map[string]ggcrv1.Image{}}
	f.root = filepath.Join(f.reg.dir, "data")
	opts := f.reg.opts("", "")
	// main-1 (deleted) and main-3 (kept) share a base layer: it is not reclaimable.
	shared, _ := random.Layer(8<<10, types.DockerLayer)
	for _, tg := range []string{"main-1", "main-2", "main-3", "main-4", "v1.0.0", "v2.0.0-rc.1"} {
		img, _ := random.Image(4<<10, 2)
		if tg == "main-1" || tg == "main-3" {
			img, _ = mutate.AppendLayers(img, shared)
		}
		if err := remote.Write(mustTag(t, f.reg.host+"/team-a/app:"+tg), img, opts...); err != nil {
			t.Fatal(err)
		}
		f.images[tg] = img
	}
	idx, _ := random.Index(2<<10, 1, 2)
	if err := remote.WriteIndex(mustTag(t, f.reg.host+"/team-a/app:multi"), idx, opts...); err != nil {
		t.Fatal(err)
	}
	f.index = idx
	f.sigOCI = artifact(t, "application/vnd.dev.cosign.artifact.sig.v1+json", descriptorOf(t, f.images["main-1"]), nil)
	d, _ := f.sigOCI.Digest()
	ref, _ := name.NewDigest(f.reg.host + "/team-a/app@" + d.String())
	if err := remote.Write(ref, f.sigOCI, opts...); err != nil {
		t.Fatal(err)
	}
	f.sigTag, _ = random.Image(1<<10, 1)
	m2, _ := f.images["main-2"].Digest()
	if err := remote.Write(mustTag(t, f.reg.host+"/team-a/app:sha256-"+m2.Hex+".sig"), f.sigTag, opts...); err != nil {
		t.Fatal(err)
	}
	// A day old: main-1, main-2 (and their signatures), v2.0.0-rc.1 and the index.
	for _, tg := range []string{"main-1", "main-2", "v2.0.0-rc.1", "sha256-" + m2.Hex + ".sig"} {
		f.age(t, "tags", tg)
	}
	for _, img := range []ggcrv1.Image{f.images["main-1"], f.images["main-2"], f.images["v2.0.0-rc.1"], f.sigOCI, f.sigTag} {
		dd, _ := img.Digest()
		f.age(t, "revision", dd.String())
	}
	return f
}

func (f *pruneFixture) age(t *testing.T, kind, what string) {
	t.Helper()
	var p string
	if kind == "tags" {
		p = filepath.Join(f.root, layout.RepositoryPath("team-a/app"), "_manifests", "tags", what, "current", "link")
	} else {
		p = filepath.Join(f.root, layout.RevisionLinkPath("team-a/app", digest.Digest(what)))
	}
	dayAgo := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(p, dayAgo, dayAgo); err != nil {
		t.Fatal(err)
	}
}

func (f *pruneFixture) driver() *filesystem.Driver {
	return filesystem.New(filesystem.DriverParameters{RootDirectory: f.root, MaxThreads: 10})
}

// exists reports whether a manifest pulls by digest.
func (f *pruneFixture) exists(t *testing.T, img ggcrv1.Image) bool {
	t.Helper()
	d, _ := img.Digest()
	ref, _ := name.NewDigest(f.reg.host + "/team-a/app@" + d.String())
	got, err := remote.Image(ref, f.reg.opts("", "")...)
	if err != nil {
		if strings.Contains(err.Error(), "MANIFEST_UNKNOWN") || strings.Contains(err.Error(), "404") {
			return false
		}
		t.Fatalf("pull %s: %v", d, err)
	}
	if _, err := got.RawManifest(); err != nil {
		t.Fatalf("pull %s: %v", d, err)
	}
	// Every layer of a kept image still pulls.
	layers, _ := got.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer of %s: %v", d, err)
		}
		rc.Close()
	}
	return true
}

func retentionRun(enforce bool) registryconfig.RetentionRun {
	return registryconfig.RetentionRun{Policy: "ci", Enforce: enforce, Policies: []registryconfig.RetentionPolicy{{
		Name:         "ci",
		Repositories: []string{"team-a/**"},
		Rules: []registryconfig.RetentionRule{
			{Name: "last-main", Glob: "main-*", KeepLast: 2},
			{Name: "releases", Semver: ">=1.0.0"},
			{Name: "multi", Glob: "multi"},
		},
		KeepUntagged:       true,
		MaxDeletionPercent: 50,
		MinAge:             registryconfig.Duration{Duration: time.Hour},
	}}}
}

// TestRetentionDryRunThenEnforce: a dry run deletes nothing and says what an enforced run
// deletes; the enforced run deletes exactly that (old builds with their signatures in both
// forms), every kept image still pulls with its digest, and the next garbage collection
// frees the bytes the plan predicted.
func TestRetentionDryRunThenEnforce(t *testing.T) {
	f := newPruneFixture(t)
	ctx := context.Background()
	dry, err := prune.Run(ctx, prune.Options{Driver: f.driver(), Run: retentionRun(false)})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Result != registryconfig.RetentionPlanned || dry.ArtifactsToDelete != 3 || dry.ManifestsToDelete != 5 || dry.TagsToRemove != 3 {
		t.Fatalf("dry run = %+v; want Planned, 3 artifacts (main-1, main-2, v2.0.0-rc.1) and 5 manifests (with two signatures)", dry)
	}
	for tg, img := range f.images {
		if !f.exists(t, img) {
			t.Fatalf("the dry run deleted %s", tg)
		}
	}

	sum, err := prune.Run(ctx, prune.Options{Driver: f.driver(), Run: retentionRun(true)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Result != registryconfig.RetentionSucceeded || sum.PlanHash != dry.PlanHash || sum.ManifestsDeleted != 5 || sum.TagsRemoved != 4 || sum.Skipped != 0 || sum.Failed != 0 {
		t.Fatalf("enforced run = %+v; want the dry run's plan (%s) carried out: 5 manifests, 4 tags (3 + cosign's)", sum, dry.PlanHash)
	}
	for tg, img := range f.images {
		want := tg != "main-1" && tg != "main-2" && tg != "v2.0.0-rc.1"
		if got := f.exists(t, img); got != want {
			t.Errorf("%s pulls = %v, want %v", tg, got, want)
		}
	}
	if f.exists(t, f.sigOCI) || f.exists(t, f.sigTag) {
		t.Error("a signature of a deleted image is still there")
	}
	idxDigest, _ := f.index.Digest()
	idxRef, _ := name.NewDigest(f.reg.host + "/team-a/app@" + idxDigest.String())
	kept, err := remote.Index(idxRef, f.reg.opts("", "")...)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := kept.IndexManifest()
	for _, c := range im.Manifests {
		if _, err := kept.Image(c.Digest); err != nil {
			t.Errorf("platform %s of the kept index: %v", c.Digest, err)
		}
	}

	res, err := gc.Collect(ctx, gc.Options{Driver: f.driver(), GracePeriod: time.Hour, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.BytesFreed != sum.ReclaimableBytes {
		t.Errorf("garbage collection freed %d bytes, the plan predicted %d", res.BytesFreed, sum.ReclaimableBytes)
	}
	for tg, img := range f.images {
		if tg != "main-1" && tg != "main-2" && tg != "v2.0.0-rc.1" && !f.exists(t, img) {
			t.Errorf("%s lost after garbage collection", tg)
		}
	}
}

// TestRetentionComparesBeforeDeleting: between planning and deleting a client moves one
// planned tag to a new image and pushes another again; both stay. Over the ceiling, nothing
// is deleted.
func TestRetentionComparesBeforeDeleting(t *testing.T) {
	f := newPruneFixture(t)
	ctx := context.Background()
	opts := f.reg.opts("", "")
	moved, _ := random.Image(1<<10, 1)
	_, err := prune.Run(ctx, prune.Options{Driver: f.driver(), Run: retentionRun(true), BeforeRepository: func(string) {
		if err := remote.Write(mustTag(t, f.reg.host+"/team-a/app:main-1"), moved, opts...); err != nil {
			t.Error(err)
		}
		// Put, not Write: Write skips a tag that already names the manifest.
		if err := remote.Put(mustTag(t, f.reg.host+"/team-a/app:main-2"), f.images["main-2"], opts...); err != nil {
			t.Error(err)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tag  string
		want ggcrv1.Image
	}{{"main-1", moved}, {"main-2", f.images["main-2"]}} {
		got, err := remote.Image(mustTag(t, f.reg.host+"/team-a/app:"+c.tag), opts...)
		if err != nil {
			t.Fatalf("%s after the run: %v", c.tag, err)
		}
		gd, _ := got.Digest()
		wd, _ := c.want.Digest()
		if gd != wd {
			t.Errorf("%s = %s, want %s", c.tag, gd, wd)
		}
	}
	if f.exists(t, f.images["v2.0.0-rc.1"]) {
		t.Error("the unchanged part of the plan was not carried out")
	}

	run := retentionRun(true)
	run.Policies[0].MaxDeletionPercent = 10
	over, err := prune.Run(ctx, prune.Options{Driver: f.driver(), Run: run, Now: time.Now().Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if over.Result != registryconfig.RetentionCeilingExceeded || over.ManifestsDeleted != 0 || !strings.Contains(over.Message, "maxDeletionPercent (10%)") {
		t.Fatalf("over the ceiling: %+v", over)
	}
}

// TestRetentionRacesConcurrentPushes: an enforced run while 120 tags are pushed and re-pushed
// loses none of them.
func TestRetentionRacesConcurrentPushes(t *testing.T) {
	f := newPruneFixture(t)
	ctx := context.Background()
	opts := f.reg.opts("", "")
	const n = 120
	imgs := make([]ggcrv1.Image, n)
	for i := range imgs {
		imgs[i], _ = random.Image(256, 1)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, n)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// Half are new tags; half move the old builds' tags or push them again.
				tg := fmt.Sprintf("new-%d", i)
				if i%2 == 1 {
					tg = []string{"main-1", "main-2", "v2.0.0-rc.1"}[i%3]
				}
				if err := remote.Write(mustTag(t, f.reg.host+"/team-a/app:"+tg), imgs[i], opts...); err != nil {
					errs <- err
				}
				if i%6 == 5 { // and push an old build again, unchanged
					if err := remote.Put(mustTag(t, f.reg.host+"/team-a/app:main-3"), f.images["main-3"], opts...); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	runDone := make(chan error, 1)
	go func() {
		_, err := prune.Run(ctx, prune.Options{Driver: f.driver(), Run: retentionRun(true)})
		runDone <- err
	}()
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 2 {
		if _, err := remote.Image(mustTag(t, fmt.Sprintf("%s/team-a/app:new-%d", f.reg.host, i)), opts...); err != nil {
			t.Errorf("new-%d: %v", i, err)
		}
	}
	for _, tg := range []string{"main-1", "main-2", "main-3", "v2.0.0-rc.1"} {
		img, err := remote.Image(mustTag(t, f.reg.host+"/team-a/app:"+tg), opts...)
		if err != nil {
			t.Errorf("%s, pushed during the run: %v", tg, err)
			continue
		}
		if _, err := img.RawManifest(); err != nil {
			t.Errorf("%s: %v", tg, err)
		}
	}
}

// TestRetentionFinishesAnInterruptedRun: a journal left by an interrupted run makes the next
// run delete the manifests it names, although untagged artifacts are kept, and then it is
// removed.
func TestRetentionFinishesAnInterruptedRun(t *testing.T) {
	f := newPruneFixture(t)
	ctx := context.Background()
	// The interrupted run had removed the tag v2.0.0-rc.1 and journaled its manifest.
	rc, _ := f.images["v2.0.0-rc.1"].Digest()
	if err := os.RemoveAll(filepath.Join(f.root, layout.RepositoryPath("team-a/app"), "_manifests", "tags", "v2.0.0-rc.1")); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(f.root, "dockyard", "retention", "team-a", "app", "_journal", "ci")
	if err := os.MkdirAll(filepath.Dir(journal), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(journal, []byte(rc.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := prune.Run(ctx, prune.Options{Driver: f.driver(), Run: retentionRun(true)})
	if err != nil {
		t.Fatal(err)
	}
	if f.exists(t, f.images["v2.0.0-rc.1"]) {
		t.Fatalf("the journaled manifest is still there: %+v", sum)
	}
	if _, err := os.Stat(journal); !os.IsNotExist(err) {
		t.Errorf("journal after the run: %v", err)
	}
	if !f.exists(t, f.images["main-3"]) {
		t.Error("main-3 lost")
	}
}

// Retention works through the storage driver: on S3 (a real S3 server) the enforced run
// deletes the old builds, the registry serving from the same bucket stops serving them at
// once, and the newest build still pulls.
func TestRetentionOnS3(t *testing.T) {
	const access, secret = "dockyard-test", "dockyard-test-secret"
	endpoint := startS3(t, "registry", access, secret)
	env := map[string]string{registryconfig.EnvS3AccessKeyID: access, registryconfig.EnvS3SecretAccessKey: secret}
	getenv := func(k string) string { return env[k] }
	st := registryconfig.Storage{S3: &registryconfig.S3Storage{
		Bucket: "registry", Region: "us-east-1", Endpoint: endpoint, ForcePathStyle: true, RootDirectory: "/dockyard",
		AccessKeyIDEnv: registryconfig.EnvS3AccessKeyID, SecretAccessKeyEnv: registryconfig.EnvS3SecretAccessKey,
	}}
	cfg := &registryconfig.Config{APIVersion: registryconfig.APIVersion, HTTP: registryconfig.HTTP{Addr: "127.0.0.1:0"}, Storage: st}
	cfg.Defaults()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, cfg, server.Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	imgs := map[string]ggcrv1.Image{}
	for _, tg := range []string{"main-1", "main-2", "main-3"} {
		imgs[tg], _ = random.Image(64<<10, 1)
		if err := remote.Write(mustTag(t, srv.Addr()+"/team-a/app:"+tg), imgs[tg]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // S3 keeps modification times to the second
	}
	driver, err := storage.NewDriver(ctx, st, getenv)
	if err != nil {
		t.Fatal(err)
	}
	run := retentionRun(true)
	run.Policies[0].Rules = []registryconfig.RetentionRule{{Name: "last", Glob: "main-*", KeepLast: 1}}
	run.Policies[0].MaxDeletionPercent = 100
	// Two days from now, everything is old enough.
	sum, err := prune.Run(ctx, prune.Options{Driver: driver, Run: run, Now: time.Now().Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Result != registryconfig.RetentionSucceeded || sum.ManifestsDeleted != 2 || sum.TagsRemoved != 2 {
		t.Fatalf("run on S3 = %+v", sum)
	}
	for tg, img := range imgs {
		d, _ := img.Digest()
		_, err := remote.Image(mustTag(t, srv.Addr()+"/team-a/app:"+tg).Context().Digest(d.String()))
		if (err == nil) != (tg == "main-3") {
			t.Errorf("%s after the run: %v", tg, err)
		}
	}
	if _, err := driver.List(ctx, "/dockyard/retention/team-a/app/_journal"); err == nil {
		t.Error("the journal is still there")
	}
}

// Images signed with the real cosign: the enforced run deletes an old build together with
// its cosign signature (the sha256-<digest>.sig tag), keeps the newest build with its
// signature, and cosign still verifies the kept image after garbage collection.
func TestRetentionWithCosignSignatures(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	signer := cosign.New(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.ca.cert.Raw}))
	root := filepath.Join(reg.dir, "data")
	opts := reg.opts("", "")
	refs := map[string]string{}
	for _, tg := range []string{"main-1", "main-2"} {
		img, _ := random.Image(32<<10, 2)
		if err := remote.Write(mustTag(t, reg.host+"/team-a/app:"+tg), img, opts...); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		refs[tg] = reg.host + "/team-a/app@" + d.String()
		if err := signer.Sign(refs[tg]); err != nil {
			t.Fatal(err)
		}
		if err := signer.Verify(refs[tg]); err != nil {
			t.Fatalf("cosign verify before the run: %v", err)
		}
	}
	// main-1 and its signature were pushed two days ago.
	old := time.Now().Add(-48 * time.Hour)
	d1 := digest.Digest(strings.TrimPrefix(refs["main-1"], reg.host+"/team-a/app@"))
	sigTag := "sha256-" + d1.Encoded() + ".sig"
	sigLink := filepath.Join(root, layout.RepositoryPath("team-a/app"), "_manifests", "tags", sigTag, "current", "link")
	raw, err := os.ReadFile(sigLink)
	if err != nil {
		t.Fatalf("cosign pushed no %s tag: %v", sigTag, err)
	}
	for _, p := range []string{
		filepath.Join(root, layout.RepositoryPath("team-a/app"), "_manifests", "tags", "main-1", "current", "link"), sigLink,
		filepath.Join(root, layout.RevisionLinkPath("team-a/app", d1)),
		filepath.Join(root, layout.RevisionLinkPath("team-a/app", digest.Digest(strings.TrimSpace(string(raw))))),
	} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	run := retentionRun(true)
	run.Policies[0].Rules = []registryconfig.RetentionRule{{Name: "last", Glob: "main-*", KeepLast: 1}}
	run.Policies[0].MaxDeletionPercent = 100
	driver := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10})
	sum, err := prune.Run(context.Background(), prune.Options{Driver: driver, Run: run})
	if err != nil {
		t.Fatal(err)
	}
	// The image and its signature; main-1 and cosign's tag.
	if sum.Result != registryconfig.RetentionSucceeded || sum.ManifestsDeleted != 2 || sum.TagsRemoved != 2 {
		t.Fatalf("run = %+v", sum)
	}
	if _, err := os.Stat(sigLink); !os.IsNotExist(err) {
		t.Errorf("the deleted image's signature tag is still there: %v", err)
	}
	if err := signer.Verify(refs["main-1"]); err == nil {
		t.Error("cosign still verifies the deleted image")
	}
	if _, err := gc.Collect(context.Background(), gc.Options{Driver: driver, GracePeriod: time.Hour, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	if err := signer.Verify(refs["main-2"]); err != nil {
		t.Errorf("cosign no longer verifies the kept image: %v", err)
	}
}
