package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// The backup store's indexes: writing, reading, listing, naming and pruning backups.

func writeIndex(ctx context.Context, store storagedriver.StorageDriver, idx *Index) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(idx); err != nil {
		return fmt.Errorf("encode the index: %w", err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := store.PutContent(ctx, StoreIndexPath(idx.Name), buf.Bytes()); err != nil {
		return fmt.Errorf("write the index of %s: %w", idx.Name, err)
	}
	return nil
}

// ReadIndex reads backup name from the store.
func ReadIndex(ctx context.Context, store storagedriver.StorageDriver, name string) (*Index, error) {
	b, err := store.GetContent(ctx, StoreIndexPath(name))
	if err != nil {
		if errors.As(err, new(storagedriver.PathNotFoundError)) {
			return nil, fmt.Errorf("backup %s not found in the store", name)
		}
		return nil, fmt.Errorf("read backup %s: %w", name, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", name, err)
	}
	var idx Index
	if err := json.NewDecoder(io.LimitReader(zr, 1<<30)).Decode(&idx); err != nil {
		return nil, fmt.Errorf("backup %s: %w", name, err)
	}
	if idx.Version != FormatVersion {
		return nil, fmt.Errorf("backup %s has format %d; this version reads %d", name, idx.Version, FormatVersion)
	}
	for d := range idx.Blobs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("backup %s names an invalid digest %q: %w", name, d, err)
		}
	}
	return &idx, nil
}

// List returns the names of the store's backups, sorted by name.
func List(ctx context.Context, store storagedriver.StorageDriver) ([]string, error) {
	entries, err := store.List(ctx, backupsDir)
	if errors.As(err, new(storagedriver.PathNotFoundError)) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(path.Base(e), ".json.gz"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// stampLayout is the UTC start time every backup name ends in: <prefix>-<stamp>.
const stampLayout = "20060102T150405Z"

// Stamped is prefix's backup name for start time t.
func Stamped(prefix string, t time.Time) string { return prefix + "-" + t.UTC().Format(stampLayout) }

// stampOf parses the start time at the end of a backup name.
func stampOf(name string) (prefix string, t time.Time, ok bool) {
	i := strings.LastIndex(name, "-")
	if i <= 0 {
		return "", time.Time{}, false
	}
	t, err := time.Parse(stampLayout, name[i+1:])
	return name[:i], t, err == nil
}

// Newest is the backup that started last (by the time its name ends in); "" for none.
func Newest(names []string) string {
	var best string
	var bestAt time.Time
	for _, n := range names {
		if _, at, ok := stampOf(n); ok && (best == "" || at.After(bestAt) || at.Equal(bestAt) && n > best) {
			best, bestAt = n, at
		}
	}
	return best
}

// Prune deletes the oldest backups of prefix beyond keep (0 keeps all), then the blobs no
// remaining backup in the store references. Other prefixes' backups (another Registry
// sharing the store) are never counted or deleted. It returns how many it deleted.
func Prune(ctx context.Context, store storagedriver.StorageDriver, prefix string, keep int, log *slog.Logger) (int, error) {
	names, err := List(ctx, store)
	if err != nil || keep <= 0 {
		return 0, err
	}
	var mine []string
	for _, n := range names {
		if p, _, ok := stampOf(n); ok && p == prefix {
			mine = append(mine, n)
		}
	}
	sort.Slice(mine, func(i, j int) bool {
		_, a, _ := stampOf(mine[i])
		_, b, _ := stampOf(mine[j])
		return a.Before(b)
	})
	if len(mine) <= keep {
		return 0, nil
	}
	old := map[string]bool{}
	for _, n := range mine[:len(mine)-keep] {
		old[n] = true
	}
	used := map[digest.Digest]bool{}
	for _, n := range names {
		if old[n] {
			continue
		}
		idx, err := ReadIndex(ctx, store, n)
		if err != nil {
			return 0, fmt.Errorf("prune: %w", err) // never delete blobs a backup we cannot read may need
		}
		for d := range idx.Blobs {
			used[d] = true
		}
	}
	for n := range old {
		if err := store.Delete(ctx, StoreIndexPath(n)); err != nil && !errors.As(err, new(storagedriver.PathNotFoundError)) {
			return 0, fmt.Errorf("delete backup %s: %w", n, err)
		}
		log.Info("Backup pruned", "backup", n)
	}
	err = store.Walk(ctx, "/blobs", func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		parts := strings.Split(fi.Path(), "/")
		if len(parts) < 2 {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(parts[len(parts)-2]), parts[len(parts)-1])
		if !validDigest(d) || used[d] {
			return nil // not a blob of ours, or still needed
		}
		if err := store.Delete(ctx, fi.Path()); err != nil && !errors.As(err, new(storagedriver.PathNotFoundError)) {
			return fmt.Errorf("delete blob %s: %w", d, err)
		}
		return nil
	})
	if err != nil && !errors.As(err, new(storagedriver.PathNotFoundError)) {
		return len(old), err
	}
	return len(old), nil
}
