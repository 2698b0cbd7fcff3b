// Package gc is Dockyard's garbage collector for registry storage. It marks from tags
// (index-aware), optionally deletes untagged manifests, and sweeps unreferenced blobs, but
// unlike distribution's garbage-collect it is safe while pushes run: nothing written,
// linked or relied on by a push (see layout.TouchRoot) within the grace period before the
// mark began is deleted, and every blob is moved aside and re-checked before it goes.
package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/distribution/distribution/v3"
	dstorage "github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Options configure one collection.
type Options struct {
	Driver storagedriver.StorageDriver
	// DeleteUntagged removes manifests no tag references (children of referenced indexes
	// are kept).
	DeleteUntagged bool
	// GracePeriod protects anything written, linked or touched more recently than this
	// before the run started.
	GracePeriod time.Duration
	Logger      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Result counts what a run did.
type Result struct {
	BlobsDeleted     int64
	ManifestsDeleted int64
	BytesFreed       int64
	// BlobsKept counts unreferenced blobs kept because they were recently used.
	BlobsKept int64
	// ReferrersRemoved counts referrers-index entries of manifests that are gone.
	ReferrersRemoved int64
}

// Collect runs one mark and sweep.
func Collect(ctx context.Context, o Options) (Result, error) {
	c := &collector{Options: o, marked: map[digest.Digest]struct{}{}, linked: map[digest.Digest]time.Time{}}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	ns, err := dstorage.NewRegistry(ctx, o.Driver, dstorage.EnableDelete)
	if err != nil {
		return Result{}, fmt.Errorf("open registry storage: %w", err)
	}
	c.ns = ns
	if err := c.restoreQuarantine(ctx); err != nil {
		return c.res, err
	}
	start := c.Now()
	c.cutoff = start.Add(-o.GracePeriod)
	c.Logger.Info("Marking", "cutoff", c.cutoff, "deleteUntagged", o.DeleteUntagged)
	if err := c.mark(ctx); err != nil {
		return c.res, fmt.Errorf("mark: %w", err)
	}
	c.Logger.Info("Sweeping", "marked", len(c.marked), "manifestsDeleted", c.res.ManifestsDeleted)
	if err := c.sweep(ctx); err != nil {
		return c.res, fmt.Errorf("sweep: %w", err)
	}
	if err := c.cleanReferrers(ctx); err != nil {
		return c.res, fmt.Errorf("clean referrers index: %w", err)
	}
	if err := c.cleanMarkers(ctx); err != nil {
		return c.res, fmt.Errorf("clean markers: %w", err)
	}
	c.Logger.Info("Collected garbage", "blobsDeleted", c.res.BlobsDeleted, "bytesFreed", c.res.BytesFreed,
		"manifestsDeleted", c.res.ManifestsDeleted, "blobsKeptRecent", c.res.BlobsKept)
	return c.res, nil
}

type collector struct {
	Options
	ns     distribution.Namespace
	cutoff time.Time
	// marked holds every digest (manifest or blob) that must stay.
	marked map[digest.Digest]struct{}
	// linked holds, per digest, the newest link file (layer or revision) seen anywhere.
	linked map[digest.Digest]time.Time
	// repoName is the repository being marked.
	repoName string
	res      Result
}

// recent reports whether t is inside the grace period.
func (c *collector) recent(t time.Time) bool { return !t.Before(c.cutoff) }

// modTime stats p; ok is false when it does not exist.
func (c *collector) modTime(ctx context.Context, p string) (time.Time, int64, bool, error) {
	fi, err := c.Driver.Stat(ctx, p)
	if err != nil {
		if isNotFound(err) {
			return time.Time{}, 0, false, nil
		}
		return time.Time{}, 0, false, fmt.Errorf("stat %s: %w", p, err)
	}
	return fi.ModTime(), fi.Size(), true, nil
}

func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// Summary turns a run's outcome into the report the operator reads. The message is cut so
// the JSON stays well under the 4 KiB termination-message limit.
func Summary(res Result, err error, d time.Duration) registryconfig.GCSummary {
	s := registryconfig.GCSummary{
		Result:           registryconfig.GCResultSucceeded,
		BlobsDeleted:     res.BlobsDeleted,
		ManifestsDeleted: res.ManifestsDeleted,
		BytesFreed:       res.BytesFreed,
		DurationSeconds:  d.Round(time.Millisecond).Seconds(),
	}
	if err != nil {
		s.Result = registryconfig.GCResultFailed
		msg := err.Error()
		if len(msg) > 2048 {
			msg = msg[:2048] + "..."
		}
		s.Message = msg
	}
	return s
}
