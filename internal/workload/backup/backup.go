// Package backup copies a registry's storage to a backup store and back, through storage
// drivers (a volume, S3, GCS or Azure on either side).
//
// A backup store holds content-addressed blobs, shared by all its backups (so each backup
// copies only blobs the store does not have yet), and one index per backup:
//
//	<root>/blobs/<alg>/<hex>                 blob and manifest bytes, verified by digest
//	<root>/backups/<name>.json.gz            the backup: every link, tag, referrers-index
//	                                         entry and pull marker of the registry, inline
//
// The index is written last, so a backup that did not finish does not exist. A backup runs
// while the registry serves and garbage collection may run: before it copies a blob it
// writes the blob's marker (layout.TouchPath) in the registry's storage, the mark a push
// makes, so the collector leaves it alone for its grace period; and a manifest whose
// bytes or referenced blobs are gone by the time they are copied (deleted meanwhile) is
// left out with its tags, so a backup never holds a broken image. Restoring writes the
// blobs and the index's files into a registry's storage: the same repositories, tags and
// digests, byte for byte.
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

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// FormatVersion is the index format written; Restore refuses others.
const FormatVersion = 1

// Index is one backup.
type Index struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Registry names the Registry backed up (namespace/name), for people.
	Registry string    `json:"registry,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Files are the registry's small files by storage path: links, tags, the referrers
	// index and pull markers.
	Files map[string]string `json:"files"`
	// Blobs are every blob and manifest digest the files reference, with its size.
	Blobs map[digest.Digest]int64 `json:"blobs"`
}

// Result counts what a backup or restore did.
type Result struct {
	Name         string
	Repositories int
	Tags         int
	Manifests    int
	Blobs        int
	// Bytes is the size of every blob of the backup; BytesCopied what this run copied.
	Bytes, BytesCopied int64
	// Skipped counts manifests left out because they were deleted while the backup ran.
	Skipped int
	// Pruned counts backups deleted because more than Keep exist.
	Pruned int
}

// Options configure a backup.
type Options struct {
	// Source is the registry's storage; Store the backup store.
	Source, Store storagedriver.StorageDriver
	// Name of the backup (unique in the store), e.g. main-20261202T030000Z.
	Name     string
	Registry string
	// Keep is how many backups the store keeps (the newest by name); 0 keeps all.
	Keep   int
	Logger *slog.Logger
	Now    func() time.Time
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// StoreBlobPath is where the store keeps blob d.
func StoreBlobPath(d digest.Digest) string {
	return path.Join("/blobs", d.Algorithm().String(), d.Encoded())
}

// StoreIndexPath is where the store keeps the index of backup name.
func StoreIndexPath(name string) string { return path.Join("/backups", name+".json.gz") }

const backupsDir = "/backups"

// Backup copies the registry's storage into the store as backup o.Name, then prunes the
// store to o.Keep backups.
func Backup(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	if err := ValidName(o.Name); err != nil {
		return Result{}, err
	}
	if _, err := o.Store.Stat(ctx, StoreIndexPath(o.Name)); err == nil {
		return Result{}, fmt.Errorf("backup %s already exists in the store", o.Name)
	}
	idx := &Index{Version: FormatVersion, Name: o.Name, Registry: o.Registry, Started: o.Now().UTC(),
		Files: map[string]string{}, Blobs: map[digest.Digest]int64{}}
	res := Result{Name: o.Name}

	// 1. The small files: links and tags of every repository, the referrers index, pull markers.
	for _, root := range []string{layout.RepositoriesRoot, layout.ReferrersRoot, layout.PulledRoot} {
		if err := readTree(ctx, o.Source, root, idx.Files); err != nil {
			return res, err
		}
	}
	// 2. The blobs they name: marked in the source first (garbage collection leaves a
	// marked blob alone for its grace period), then copied unless the store has them.
	missing := map[digest.Digest]bool{}
	for _, d := range referencedDigests(idx.Files) {
		size, copied, err := copyBlob(ctx, o, d)
		switch {
		case errors.As(err, new(storagedriver.PathNotFoundError)):
			missing[d] = true
			continue
		case err != nil:
			return res, fmt.Errorf("copy blob %s: %w", d, err)
		}
		idx.Blobs[d] = size
		res.BytesCopied += copied
	}
	// 3. Manifests whose bytes or blobs went missing were deleted while we ran: drop them,
	// their tags and their links, and note them.
	res.Skipped = dropBroken(ctx, o, idx, missing)
	idx.Finished = o.Now().UTC()
	if err := writeIndex(ctx, o.Store, idx); err != nil {
		return res, err
	}
	count(idx, &res)
	o.Logger.Info("Backup written", "backup", o.Name, "repositories", res.Repositories, "tags", res.Tags,
		"manifests", res.Manifests, "blobs", res.Blobs, "bytes", res.Bytes, "bytesCopied", res.BytesCopied, "skipped", res.Skipped)
	pruned, err := Prune(ctx, o.Store, o.Keep, o.Logger)
	res.Pruned = pruned
	return res, err
}

// ValidName refuses names that are not a single safe path segment.
func ValidName(name string) error {
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("backup name %q: use 1-128 characters, no slashes, not starting with a dot", name)
	}
	for _, r := range name {
		if !nameRune(r) {
			return fmt.Errorf("backup name %q: only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

func nameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}

func validDigest(d digest.Digest) bool { return d.Validate() == nil }

// readTree puts every file under root into files (path → content), skipping uploads in
// progress. A missing root is empty.
func readTree(ctx context.Context, d storagedriver.StorageDriver, root string, files map[string]string) error {
	err := d.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		p := fi.Path()
		if fi.IsDir() {
			if path.Base(p) == "_uploads" {
				return storagedriver.ErrSkipDir
			}
			return nil
		}
		b, err := d.GetContent(ctx, p)
		if errors.As(err, new(storagedriver.PathNotFoundError)) {
			return nil // removed while we walked
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		files[p] = string(b)
		return nil
	})
	if errors.As(err, new(storagedriver.PathNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("walk %s: %w", root, err)
	}
	return nil
}

// referencedDigests are the digests the repositories' links name (layers and manifest
// revisions; tags name revisions), sorted.
func referencedDigests(files map[string]string) []digest.Digest {
	set := map[digest.Digest]bool{}
	for p, content := range files {
		if !strings.HasPrefix(p, layout.RepositoriesRoot+"/") || path.Base(p) != "link" {
			continue
		}
		if d, err := digest.Parse(strings.TrimSpace(content)); err == nil {
			set[d] = true
		}
	}
	out := make([]digest.Digest, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// copyBlob marks blob d in the source, then copies it into the store unless the store has
// it already. It returns the blob's size and the bytes copied.
func copyBlob(ctx context.Context, o Options, d digest.Digest) (int64, int64, error) {
	stamp := []byte(o.Now().UTC().Format(time.RFC3339Nano))
	if err := o.Source.PutContent(ctx, layout.TouchPath(d), stamp); err != nil {
		return 0, 0, fmt.Errorf("mark %s for garbage collection: %w", d, err)
	}
	src, err := o.Source.Stat(ctx, layout.BlobDataPath(d))
	if err != nil {
		return 0, 0, err
	}
	if have, err := o.Store.Stat(ctx, StoreBlobPath(d)); err == nil && have.Size() == src.Size() {
		return src.Size(), 0, nil
	}
	n, err := copyVerified(ctx, o.Source, layout.BlobDataPath(d), o.Store, StoreBlobPath(d), d)
	return src.Size(), n, err
}

// copyVerified streams from to to, checking that the bytes hash to d before committing.
func copyVerified(ctx context.Context, from storagedriver.StorageDriver, fromPath string, to storagedriver.StorageDriver, toPath string, d digest.Digest) (int64, error) {
	r, err := from.Reader(ctx, fromPath, 0)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	w, err := to.Writer(ctx, toPath, false)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", toPath, err)
	}
	verifier := d.Verifier()
	n, err := io.Copy(io.MultiWriter(w, verifier), r)
	if err != nil {
		_ = w.Cancel(ctx)
		return n, fmt.Errorf("copy %s: %w", fromPath, err)
	}
	if !verifier.Verified() {
		_ = w.Cancel(ctx)
		return n, fmt.Errorf("%s does not hash to %s: the stored blob is corrupt", fromPath, d)
	}
	if err := w.Commit(ctx); err != nil {
		return n, fmt.Errorf("commit %s: %w", toPath, err)
	}
	return n, nil
}

// dropBroken removes from idx every manifest revision whose bytes are missing or that
// references a missing blob, with the tags pointing to it and its referrers-index entries;
// then the layer links and blobs nothing references any more. It returns how many
// revisions it dropped.
func dropBroken(ctx context.Context, o Options, idx *Index, missing map[digest.Digest]bool) int {
	if len(missing) == 0 {
		return 0
	}
	dropped := map[string]bool{} // "<repo>@<digest>"
	for p, content := range idx.Files {
		repo, d, ok := revisionOf(p)
		if !ok {
			continue
		}
		_ = content
		broken := missing[d]
		if !broken {
			for _, ref := range manifestReferences(ctx, o.Store, d) {
				if missing[ref] {
					broken = true
					break
				}
			}
		}
		if broken {
			dropped[repo+"@"+d.String()] = true
			delete(idx.Files, p)
			o.Logger.Warn("Manifest deleted while the backup ran; left out", "repository", repo, "digest", d)
		}
	}
	for p, content := range idx.Files {
		repo, ok := tagRepo(p)
		if !ok {
			continue
		}
		if d, err := digest.Parse(strings.TrimSpace(content)); err == nil && (dropped[repo+"@"+d.String()] || missing[d]) {
			delete(idx.Files, p)
		}
		if _, d, ok := tagIndexEntry(p); ok && (dropped[repo+"@"+d.String()] || missing[d]) {
			delete(idx.Files, p)
		}
	}
	for p := range idx.Files {
		if name, subject, referrer, ok := layout.ParseReferrerPath(p); ok &&
			(dropped[name+"@"+subject.String()] || dropped[name+"@"+referrer.String()]) {
			delete(idx.Files, p)
		}
	}
	for p, content := range idx.Files {
		if strings.Contains(p, "/_layers/") {
			if d, err := digest.Parse(strings.TrimSpace(content)); err == nil && missing[d] {
				delete(idx.Files, p)
			}
		}
	}
	for d := range missing {
		delete(idx.Blobs, d)
	}
	return len(dropped)
}

// revisionOf parses `<repos>/<name>/_manifests/revisions/<alg>/<hex>/link`.
func revisionOf(p string) (string, digest.Digest, bool) {
	rest, ok := strings.CutPrefix(p, layout.RepositoriesRoot+"/")
	if !ok {
		return "", "", false
	}
	i := strings.Index(rest, "/_manifests/revisions/")
	if i <= 0 {
		return "", "", false
	}
	d, ok := layout.DigestFromLinkPath(p)
	return rest[:i], d, ok
}

// tagRepo is the repository of a tag file (`<repos>/<name>/_manifests/tags/...`).
func tagRepo(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, layout.RepositoriesRoot+"/")
	if !ok {
		return "", false
	}
	i := strings.Index(rest, "/_manifests/tags/")
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}

// tagIndexEntry parses a tag's history entry `.../_manifests/tags/<tag>/index/<alg>/<hex>/link`.
func tagIndexEntry(p string) (string, digest.Digest, bool) {
	if !strings.Contains(p, "/index/") {
		return "", "", false
	}
	repo, ok := tagRepo(p)
	if !ok {
		return "", "", false
	}
	d, ok := layout.DigestFromLinkPath(p)
	return repo, d, ok
}

// manifestReferences reads a manifest's bytes from the store and returns the digests it
// references (config, layers, index children, subject excluded). Unknown content yields none.
func manifestReferences(ctx context.Context, store storagedriver.StorageDriver, d digest.Digest) []digest.Digest {
	b, err := store.GetContent(ctx, StoreBlobPath(d))
	if err != nil || len(b) > 4<<20 {
		return nil
	}
	var m struct {
		Config    *struct{ Digest digest.Digest }  `json:"config"`
		Layers    []struct{ Digest digest.Digest } `json:"layers"`
		Manifests []struct{ Digest digest.Digest } `json:"manifests"`
		Blobs     []struct{ Digest digest.Digest } `json:"blobs"`
	}
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	var out []digest.Digest
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	for _, l := range m.Manifests {
		out = append(out, l.Digest)
	}
	for _, l := range m.Blobs {
		out = append(out, l.Digest)
	}
	return out
}

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

// List returns the names of the store's backups, oldest first (names sort by time).
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

// Prune deletes the oldest backups beyond keep (0 keeps all), then the blobs no remaining
// backup references. It returns how many backups it deleted.
func Prune(ctx context.Context, store storagedriver.StorageDriver, keep int, log *slog.Logger) (int, error) {
	names, err := List(ctx, store)
	if err != nil || keep <= 0 || len(names) <= keep {
		return 0, err
	}
	old, kept := names[:len(names)-keep], names[len(names)-keep:]
	used := map[digest.Digest]bool{}
	for _, n := range kept {
		idx, err := ReadIndex(ctx, store, n)
		if err != nil {
			return 0, fmt.Errorf("prune: %w", err) // never delete blobs a backup we cannot read may need
		}
		for d := range idx.Blobs {
			used[d] = true
		}
	}
	for _, n := range old {
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

func count(idx *Index, res *Result) {
	repos := map[string]bool{}
	for p := range idx.Files {
		if r, _, ok := revisionOf(p); ok {
			repos[r] = true
			res.Manifests++
		}
		if strings.HasSuffix(p, "/current/link") {
			res.Tags++
		}
	}
	res.Repositories = len(repos)
	res.Blobs = len(idx.Blobs)
	for _, s := range idx.Blobs {
		res.Bytes += s
	}
}
