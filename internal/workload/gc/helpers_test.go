package gc_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	dstorage "github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/gc"
	"github.com/dockyard-dev/dockyard/internal/workload/internal/imagecheck"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/server"
)

func TestMain(m *testing.M) {
	logrus.SetLevel(logrus.ErrorLevel)
	os.Exit(m.Run())
}

// startServe runs `serve` on 127.0.0.1 (plain HTTP) over a filesystem root.
func startServe(t testing.TB, root string, grace time.Duration) string {
	t.Helper()
	cfg := &registryconfig.Config{
		APIVersion: registryconfig.APIVersion,
		HTTP:       registryconfig.HTTP{Addr: "127.0.0.1:0"},
		Storage:    registryconfig.Storage{Filesystem: &registryconfig.FilesystemStorage{RootDirectory: root}},
		GC:         registryconfig.GC{DeleteUntagged: true, GracePeriod: registryconfig.Duration{Duration: grace}},
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.Options{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("server did not stop")
		}
	})
	return srv.Addr()
}

func collect(t *testing.T, root string, grace time.Duration, deleteUntagged bool) gc.Result {
	t.Helper()
	res, err := gc.Collect(context.Background(), gc.Options{
		Driver:         filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}),
		DeleteUntagged: deleteUntagged, GracePeriod: grace,
	})
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	return res
}

// backdate sets the mtime of every file under root/sub to age ago.
func backdate(t *testing.T, root string, age time.Duration) {
	t.Helper()
	when := time.Now().Add(-age)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// backdateDigest ages everything on disk that belongs to digest d: its data, its marker
// and its links in repo.
func backdateDigest(root, repo string, d v1.Hash, age time.Duration) error {
	when := time.Now().Add(-age)
	dg := fmt.Sprintf("%s:%s", d.Algorithm, d.Hex)
	hex := d.Hex
	paths := []string{
		filepath.Join(root, filepath.FromSlash(layout.BlobsRoot), "sha256", hex[:2], hex, "data"),
		filepath.Join(root, filepath.FromSlash(layout.TouchRoot), "sha256", hex[:2], hex),
		filepath.Join(root, filepath.FromSlash(layout.LayersPath(repo)), "sha256", hex, "link"),
		filepath.Join(root, filepath.FromSlash(layout.RevisionsPath(repo)), "sha256", hex, "link"),
	}
	for _, p := range paths {
		if err := os.Chtimes(p, when, when); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("backdate %s of %s: %w", p, dg, err)
		}
	}
	return nil
}

func blobExists(root string, d v1.Hash) bool {
	_, err := os.Stat(filepath.Join(root, filepath.FromSlash(layout.BlobsRoot), "sha256", d.Hex[:2], d.Hex, "data"))
	return err == nil
}

// verifyImage reads every blob of img and checks it against its digest.
func verifyImage(img v1.Image) error { return imagecheck.Verify(img) }

var plain = []remote.Option{}

func collectErr(ctx context.Context, root string, grace time.Duration) (gc.Result, error) {
	return gc.Collect(ctx, gc.Options{
		Driver:         filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}),
		DeleteUntagged: true, GracePeriod: grace,
	})
}

// upstreamCollect is distribution's own garbage-collect (`registry garbage-collect
// --delete-untagged`), for comparison.
func upstreamCollect(ctx context.Context, root string, _ time.Duration) (gc.Result, error) {
	d := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100})
	ns, err := dstorage.NewRegistry(ctx, d, dstorage.EnableDelete)
	if err != nil {
		return gc.Result{}, err
	}
	stdout := os.Stdout
	os.Stdout, _ = os.Open(os.DevNull) // MarkAndSweep prints with fmt.Printf
	defer func() { os.Stdout = stdout }()
	// Its runs fail now and then when content changes under them; the loop goes on, as a
	// CronJob would on its next schedule.
	if err := dstorage.MarkAndSweep(ctx, d, ns, dstorage.GCOpts{RemoveUntagged: true, Quiet: true}); err != nil {
		upstreamErrors.Add(1)
	}
	return gc.Result{}, ctx.Err()
}

var upstreamErrors atomic.Int64
