package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// RestoreOptions configure a restore.
type RestoreOptions struct {
	// Store is the backup store; Target the registry's storage.
	Store, Target storagedriver.StorageDriver
	// Name of the backup; empty means the newest.
	Name   string
	Logger *slog.Logger
}

// Restore writes backup o.Name into the target storage: its blobs first, then the links,
// tags last, so no link ever names a blob that is not there yet. A restore that stopped
// half-way can simply be run again.
func Restore(ctx context.Context, o RestoreOptions) (Result, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	name := o.Name
	if name == "" {
		names, err := List(ctx, o.Store)
		if err != nil {
			return Result{}, err
		}
		if name = Newest(names); name == "" {
			return Result{}, errors.New("the backup store holds no backup")
		}
	} else if err := ValidName(name); err != nil {
		return Result{}, err
	}
	idx, err := ReadIndex(ctx, o.Store, name)
	if err != nil {
		return Result{Name: name}, err
	}
	res := Result{Name: name}
	// Refuse a hostile index before writing anything.
	for p := range idx.Files {
		if !restorable(p) {
			return res, fmt.Errorf("backup %s names %s, outside the registry's layout: refusing it", name, p)
		}
	}
	digests := make([]digest.Digest, 0, len(idx.Blobs))
	for d := range idx.Blobs {
		digests = append(digests, d)
	}
	sort.Slice(digests, func(i, j int) bool { return digests[i] < digests[j] })
	for _, d := range digests {
		if have, err := o.Target.Stat(ctx, layout.BlobDataPath(d)); err == nil && have.Size() == idx.Blobs[d] {
			continue
		}
		n, err := copyVerified(ctx, o.Store, StoreBlobPath(d), o.Target, layout.BlobDataPath(d), d)
		if err != nil {
			return res, fmt.Errorf("restore blob %s: %w", d, err)
		}
		res.BytesCopied += n
	}
	paths := make([]string, 0, len(idx.Files))
	for p := range idx.Files {
		paths = append(paths, p)
	}
	// Tags last (a tag never names a manifest that is not there yet); otherwise oldest
	// first, so modification times keep the source's order (retention reads push and pull
	// times from them; their absolute values restart at the restore).
	isTag := func(p string) bool { return strings.Contains(p, "/_manifests/tags/") }
	sort.Slice(paths, func(i, j int) bool {
		a, b := paths[i], paths[j]
		if isTag(a) != isTag(b) {
			return !isTag(a)
		}
		if idx.Modified[a] != idx.Modified[b] {
			return idx.Modified[a] < idx.Modified[b]
		}
		return a < b
	})
	for _, p := range paths {
		if err := o.Target.PutContent(ctx, p, []byte(idx.Files[p])); err != nil {
			return res, fmt.Errorf("restore %s: %w", p, err)
		}
	}
	count(idx, &res)
	o.Logger.Info("Backup restored", "backup", name, "repositories", res.Repositories, "tags", res.Tags,
		"manifests", res.Manifests, "blobs", res.Blobs, "bytes", res.Bytes, "bytesCopied", res.BytesCopied)
	return res, nil
}

// restorable: a restore writes only under the roots a backup reads, and no path escapes.
func restorable(p string) bool {
	if strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "//") {
		return false
	}
	for _, root := range []string{layout.RepositoriesRoot, layout.ReferrersRoot, layout.PulledRoot} {
		if strings.HasPrefix(p, root+"/") {
			return true
		}
	}
	return false
}
