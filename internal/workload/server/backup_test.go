package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload"
	"github.com/dockyard-dev/dockyard/internal/workload/backup"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

func fsDriver(t *testing.T, dir string) storagedriver.StorageDriver {
	t.Helper()
	d, err := storage.NewDriver(context.Background(), registryconfig.Storage{Filesystem: &registryconfig.FilesystemStorage{RootDirectory: dir}}, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func atDir(dir string) func(*registryconfig.Config) {
	return func(c *registryconfig.Config) { c.Storage.Filesystem.RootDirectory = dir }
}

// TestBackupAndRestore pushes images (a multi-arch index, a tagged image, a signature
// referring to it) to a real registry, backs its storage up while it serves, restores the
// backup into an empty storage, serves that with a second registry, and pulls everything
// back with the same digests; the referrers API answers as before. A second backup copies
// no blob again; keeping one prunes the first backup but not the blobs the second needs.
func TestBackupAndRestore(t *testing.T) {
	ctx := context.Background()
	srcDir, storeDir, dstDir := t.TempDir(), t.TempDir(), t.TempDir()
	src := startRegistry(t, nil, atDir(srcDir))

	img, _ := random.Image(64<<10, 2)
	app := mustTag(t, src.host+"/team-a/app:v1")
	if err := remote.Write(app, img, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	idx, _ := random.Index(32<<10, 1, 2)
	multi := mustTag(t, src.host+"/team-a/multi:latest")
	if err := remote.WriteIndex(multi, idx, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	sig := artifact(t, sigType, descriptorOf(t, img), nil)
	sigD := descriptorOf(t, sig)
	if err := remote.Write(app.Context().Digest(sigD.Digest.String()), sig, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	// A tag moved to a new image: the old one stays as an untagged revision.
	extra, _ := random.Layer(1024, "application/vnd.oci.image.layer.v1.tar")
	img2, _ := mutate.AppendLayers(img, extra)
	if err := remote.Write(mustTag(t, src.host+"/team-a/app:v2"), img2, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}

	clock := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	o := backup.Options{Source: fsDriver(t, srcDir), Store: fsDriver(t, storeDir), Prefix: "main",
		Registry: "platform/main", Now: func() time.Time { return clock }}
	res, err := backup.Backup(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Repositories != 2 || res.Tags != 3 || res.Skipped != 0 || res.BytesCopied == 0 || res.BytesCopied != res.Bytes {
		t.Errorf("first backup = %+v", res)
	}
	// Every blob the backup copied is marked in the source, as a push marks it, so garbage
	// collection leaves it alone while the backup runs.
	appDigest, _ := img.Digest()
	if _, err := os.Stat(filepath.Join(srcDir, layout.TouchPath(digest.Digest(appDigest.String())))); err != nil {
		t.Errorf("the source has no GC marker for a copied manifest: %v", err)
	}

	// Restore into an empty storage and serve it.
	rres, err := backup.Restore(ctx, backup.RestoreOptions{Store: fsDriver(t, storeDir), Target: fsDriver(t, dstDir)})
	if err != nil {
		t.Fatal(err)
	}
	if rres.Name != "main-20261202T030000Z" || rres.Name != res.Name || rres.Manifests != res.Manifests || rres.BytesCopied != res.Bytes {
		t.Errorf("restore = %+v, backup = %+v", rres, res)
	}
	dst := startRegistry(t, nil, atDir(dstDir))
	for _, c := range []struct {
		ref  string
		want ggcrv1.Hash
	}{
		{"team-a/app:v1", appDigest},
		{"team-a/app:v2", must(img2.Digest())},
		{"team-a/multi:latest", must(idx.Digest())},
		{"team-a/app@" + sigD.Digest.String(), sigD.Digest},
	} {
		desc, err := remote.Get(mustRef(t, dst.host+"/"+c.ref), dst.opts("", "")...)
		if err != nil {
			t.Errorf("pull %s from the restored registry: %v", c.ref, err)
			continue
		}
		if desc.Digest != c.want {
			t.Errorf("%s: digest %s, want %s", c.ref, desc.Digest, c.want)
		}
		if desc.MediaType.IsImage() {
			pulled, _ := desc.Image()
			if err := verifyImage(pulled); err != nil {
				t.Errorf("%s: %v", c.ref, err)
			}
		}
	}
	code, _, refs := getReferrers(t, dst, "", "", "team-a/app", appDigest.String(), "")
	if code != http.StatusOK || len(refs.Manifests) != 1 || refs.Manifests[0].Digest.String() != sigD.Digest.String() {
		t.Errorf("referrers of the restored image: %d %+v", code, refs.Manifests)
	}
	if tags, err := remote.List(mustTag(t, dst.host+"/team-a/app:v1").Context(), dst.opts("", "")...); err != nil || !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Errorf("tags of the restored repository = %v, %v", tags, err)
	}

	// Push times survive in order: v1's tag was written before v2's, in the source and
	// in the restored storage (retention's keepLast reads them).
	tagTime := func(dir, tag string) time.Time {
		fi, err := os.Stat(filepath.Join(dir, layout.RepositoryPath("team-a/app"), "_manifests", "tags", tag, "current", "link"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	if !tagTime(srcDir, "v1").Before(tagTime(srcDir, "v2")) || !tagTime(dstDir, "v1").Before(tagTime(dstDir, "v2")) {
		t.Errorf("restored tags lost their order: v1 %s, v2 %s", tagTime(dstDir, "v1"), tagTime(dstDir, "v2"))
	}

	// Another Registry's backups in the same store are neither counted nor pruned.
	other := o
	other.Prefix = "main-restored"
	if _, err := backup.Backup(ctx, other); err != nil {
		t.Fatal(err)
	}

	// An incremental backup copies nothing new; keeping one prunes the first, not its blobs.
	clock = clock.Add(24 * time.Hour)
	o.Keep = 1
	res2, err := backup.Backup(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res2.BytesCopied != 0 || res2.Bytes != res.Bytes || res2.Pruned != 1 {
		t.Errorf("second backup = %+v: want nothing copied and the first pruned", res2)
	}
	names, _ := backup.List(ctx, fsDriver(t, storeDir))
	if !slices.Equal(names, []string{"main-20261203T030000Z", "main-restored-20261202T030000Z"}) {
		t.Errorf("backups in the store = %v", names)
	}
	again := t.TempDir()
	if _, err := backup.Restore(ctx, backup.RestoreOptions{Store: fsDriver(t, storeDir), Target: fsDriver(t, again), Name: "main-20261203T030000Z"}); err != nil {
		t.Errorf("restore after pruning: %v", err)
	}
	if _, err := backup.Restore(ctx, backup.RestoreOptions{Store: fsDriver(t, storeDir), Target: fsDriver(t, again), Name: "main-20261202T030000Z"}); err == nil {
		t.Error("a pruned backup restored")
	}
}

// TestBackupLeavesOutWhatWasDeletedMeanwhile: a manifest whose blob is gone when the
// backup copies it (deleted and collected while the backup ran) is left out with its tag;
// the rest of the backup restores and serves.
func TestBackupLeavesOutWhatWasDeletedMeanwhile(t *testing.T) {
	ctx := context.Background()
	srcDir, storeDir, dstDir := t.TempDir(), t.TempDir(), t.TempDir()
	src := startRegistry(t, nil, atDir(srcDir))
	keep, _ := random.Image(4<<10, 1)
	gone, _ := random.Image(4<<10, 1)
	if err := remote.Write(mustTag(t, src.host+"/team/keep:v1"), keep, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustTag(t, src.host+"/team/gone:v1"), gone, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	// The collector removed a layer of "gone" (its manifest was deleted) after the backup
	// listed the links.
	layers, _ := gone.Layers()
	ld, _ := layers[0].Digest()
	if err := os.RemoveAll(filepath.Join(srcDir, layout.BlobDir(digest.Digest(ld.String())))); err != nil {
		t.Fatal(err)
	}
	// "half" was being pushed while the backup read the links: its manifest and tag are
	// there, one layer link is not yet.
	half, _ := random.Image(4<<10, 2)
	if err := remote.Write(mustTag(t, src.host+"/team/half:v1"), half, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	hl, _ := half.Layers()
	hd, _ := hl[1].Digest()
	if err := os.Remove(filepath.Join(srcDir, layout.LayerLinkPath("team/half", digest.Digest(hd.String())))); err != nil {
		t.Fatal(err)
	}
	// An index whose only child is such an image is not whole either.
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: gone})
	if err := remote.WriteIndex(mustTag(t, src.host+"/team/gone:multi"), idx, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	res, err := backup.Backup(ctx, backup.Options{Source: fsDriver(t, srcDir), Store: fsDriver(t, storeDir), Prefix: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 3 || res.Tags != 1 {
		t.Errorf("backup = %+v: want the broken image left out", res)
	}
	if _, err := backup.Restore(ctx, backup.RestoreOptions{Store: fsDriver(t, storeDir), Target: fsDriver(t, dstDir)}); err != nil {
		t.Fatal(err)
	}
	dst := startRegistry(t, nil, atDir(dstDir))
	if _, err := remote.Image(mustRef(t, dst.host+"/team/keep:v1"), dst.opts("", "")...); err != nil {
		t.Errorf("the intact image did not restore: %v", err)
	}
	for _, ref := range []string{"team/gone:v1", "team/gone:multi", "team/half:v1"} {
		if _, err := remote.Head(mustRef(t, dst.host+"/"+ref), dst.opts("", "")...); err == nil {
			t.Errorf("%s, not whole in the backup, was restored", ref)
		}
	}
}

// TestRestoreRefusesAHostileIndex: an index naming paths outside the registry's layout or
// invalid digests is refused before anything is written.
func TestRestoreRefusesAHostileIndex(t *testing.T) {
	if err := backup.ValidName("../x"); err == nil {
		t.Error("a name with a slash is valid")
	}
	if _, err := backup.Restore(context.Background(), backup.RestoreOptions{Store: fsDriver(t, t.TempDir()), Target: fsDriver(t, t.TempDir())}); err == nil {
		t.Error("restore from an empty store succeeded")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestBackupToS3WithTheCommands runs `dockyard registry backup` and `restore` as the jobs
// do, from config files, with the backup store in a real S3 server (versitygw) and its
// credentials in the environment: the restored registry serves the image with its digest.
func TestBackupToS3WithTheCommands(t *testing.T) {
	const access, secret = "backup-test", "backup-test-secret"
	endpoint := startS3(t, "backups", access, secret)
	t.Setenv(registryconfig.EnvBackupS3AccessKeyID, access)
	t.Setenv(registryconfig.EnvBackupS3SecretAccessKey, secret)
	store := registryconfig.Storage{S3: &registryconfig.S3Storage{Bucket: "backups", Region: "us-east-1", Endpoint: endpoint,
		ForcePathStyle: true, RootDirectory: "/platform/main", AccessKeyIDEnv: registryconfig.EnvBackupS3AccessKeyID,
		SecretAccessKeyEnv: registryconfig.EnvBackupS3SecretAccessKey}}

	srcDir, dstDir := t.TempDir(), t.TempDir()
	src := startRegistry(t, nil, atDir(srcDir))
	img, _ := random.Image(128<<10, 2)
	if err := remote.Write(mustTag(t, src.host+"/team/app:v1"), img, src.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	write := func(c *registryconfig.Config) string {
		t.Helper()
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := func(dir string) *registryconfig.Config {
		return &registryconfig.Config{APIVersion: registryconfig.APIVersion, HTTP: registryconfig.HTTP{Addr: ":5000"},
			Storage: registryconfig.Storage{Filesystem: &registryconfig.FilesystemStorage{RootDirectory: dir}}, Log: registryconfig.Log{Level: "warn"}}
	}
	bc := base(srcDir)
	bc.Backup = &registryconfig.Backup{Store: store, Keep: 2, Name: "main", Registry: "platform/main"}
	summary := filepath.Join(t.TempDir(), "summary.json")
	var out strings.Builder
	if err := workload.Run(context.Background(), []string{"backup", "--config", write(bc), "--summary-file", summary}, &out, &out); err != nil {
		t.Fatalf("backup: %v\n%s", err, out.String())
	}
	var sum registryconfig.BackupSummary
	b, _ := os.ReadFile(summary)
	if err := json.Unmarshal(b, &sum); err != nil || sum.Result != "Succeeded" || sum.Tags != 1 || sum.Bytes == 0 || !strings.HasPrefix(sum.Backup, "main-") {
		t.Fatalf("backup summary = %s (%v)", b, err)
	}

	rc := base(dstDir)
	rc.Restore = &registryconfig.Restore{Store: store, Backup: sum.Backup}
	out.Reset()
	if err := workload.Run(context.Background(), []string{"restore", "--config", write(rc), "--summary-file", summary}, &out, &out); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	dst := startRegistry(t, nil, atDir(dstDir))
	desc, err := remote.Get(mustRef(t, dst.host+"/team/app:v1"), dst.opts("", "")...)
	if err != nil || desc.Digest != must(img.Digest()) {
		t.Fatalf("restored image: %v %v", desc, err)
	}

	// A wrong secret fails the run, with the reason in the summary.
	t.Setenv(registryconfig.EnvBackupS3SecretAccessKey, "wrong")
	out.Reset()
	if err := workload.Run(context.Background(), []string{"backup", "--config", write(bc), "--summary-file", summary}, &out, &out); err == nil {
		t.Fatal("a backup with a wrong secret succeeded")
	}
	b, _ = os.ReadFile(summary)
	if err := json.Unmarshal(b, &sum); err != nil || sum.Result != "Failed" || sum.Message == "" {
		t.Errorf("failed backup summary = %s", b)
	}
}
