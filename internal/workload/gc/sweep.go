package gc

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// sweep deletes unmarked blobs that nothing used within the grace period.
func (c *collector) sweep(ctx context.Context) error {
	var candidates []digest.Digest
	if err := c.ns.Blobs().Enumerate(ctx, func(d digest.Digest) error {
		if _, ok := c.marked[d]; !ok {
			candidates = append(candidates, d)
		}
		return nil
	}); err != nil && !isNotFound(err) {
		return fmt.Errorf("list blobs: %w", err)
	}
	for _, d := range candidates {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.sweepBlob(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// touchedRecently re-reads d's marker.
func (c *collector) touchedRecently(ctx context.Context, d digest.Digest) (bool, error) {
	t, _, _, err := c.modTime(ctx, layout.TouchPath(d))
	return c.recent(t), err
}

func (c *collector) sweepBlob(ctx context.Context, d digest.Digest) error {
	data := layout.BlobDataPath(d)
	written, size, exists, err := c.modTime(ctx, data)
	if err != nil || !exists {
		return err
	}
	if c.recent(written) || c.recent(c.linked[d]) {
		c.res.BlobsKept++
		return nil
	}
	if recent, err := c.touchedRecently(ctx, d); err != nil || recent {
		c.res.BlobsKept++
		return err
	}
	// Move the blob aside, then look again: a push that relied on the blob before the move
	// left a fresh marker and gets it back; one that comes after finds it missing and
	// uploads it again.
	q := layout.QuarantinePath(d)
	if err := c.Driver.Move(ctx, data, q); err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("move blob %s aside: %w", d, err)
	}
	// From here on finish the decision even if the run is being cancelled, so that nothing
	// is left aside.
	ctx = context.WithoutCancel(ctx)
	recent, err := c.touchedRecently(ctx, d)
	if err != nil || recent {
		if rerr := c.restore(ctx, d); rerr != nil {
			return fmt.Errorf("restore blob %s: %w", d, rerr)
		}
		c.res.BlobsKept++
		return err
	}
	if err := c.Driver.Delete(ctx, q); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	c.res.BlobsDeleted++
	c.res.BytesFreed += size
	c.Logger.Debug("Deleted blob", "digest", d.String(), "size", size)
	return nil
}

// restore puts a quarantined blob back, unless a new upload already re-created it.
func (c *collector) restore(ctx context.Context, d digest.Digest) error {
	q, data := layout.QuarantinePath(d), layout.BlobDataPath(d)
	if _, _, exists, err := c.modTime(ctx, data); err != nil {
		return err
	} else if exists {
		return c.Driver.Delete(ctx, q)
	}
	return c.Driver.Move(ctx, q, data)
}

// restoreQuarantine puts back blobs a previous, interrupted run left aside.
func (c *collector) restoreQuarantine(ctx context.Context) error {
	var found []digest.Digest
	err := c.Driver.Walk(ctx, layout.QuarantineRoot, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			if d, ok := layout.DigestFromTouchOrQuarantinePath(fi.Path()); ok {
				found = append(found, d)
			}
		}
		return nil
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("list quarantine: %w", err)
	}
	for _, d := range found {
		c.Logger.Warn("Restoring blob left aside by an interrupted run", "digest", d.String())
		if err := c.restore(ctx, d); err != nil {
			return fmt.Errorf("restore blob %s: %w", d, err)
		}
	}
	return nil
}

// cleanMarkers deletes old markers of blobs that no longer exist, so markers do not pile up.
// Markers of existing blobs stay: rewriting and deleting could race.
func (c *collector) cleanMarkers(ctx context.Context) error {
	var stale []string
	err := c.Driver.Walk(ctx, layout.TouchRoot, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || c.recent(fi.ModTime()) {
			return nil
		}
		if d, ok := layout.DigestFromTouchOrQuarantinePath(fi.Path()); ok {
			if _, _, exists, err := c.modTime(ctx, layout.BlobDataPath(d)); err != nil {
				return err
			} else if !exists {
				stale = append(stale, fi.Path())
			}
		}
		return nil
	})
	if err != nil && !isNotFound(err) {
		return err
	}
	for _, p := range stale {
		if err := c.Driver.Delete(ctx, p); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete marker %s: %w", p, err)
		}
	}
	return nil
}
