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
// while the registry serves and garbage collection may run: before it copies a blob the
// store lacks it writes the blob's marker (layout.TouchPath) in the registry's storage,
// the mark a push makes, so the collector leaves it alone for its grace period; and only
// whole images are kept (a manifest needs its bytes, its blobs with their layer links and
// its index children), so a push caught half-way or an image deleted meanwhile is left
// out with its tags, and a backup never holds a broken image. Restoring writes the
// blobs and the index's files into a registry's storage: the same repositories, tags and
// digests, byte for byte.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sort"
	"strconv"
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
	// Modified is each file's modification time (Unix nanoseconds) in the source: restore
	// writes files oldest first, so the order retention reads from them survives.
	Modified map[string]int64 `json:"modified,omitempty"`
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
	// Prefix names the Registry's backups: each is <prefix>-<UTC start time>. Keep
	// counts and prunes only backups of this prefix.
	Prefix   string
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

// Backup copies the registry's storage into the store as backup <o.Prefix>-<start time>,
// then prunes the prefix's backups to o.Keep.
func Backup(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	name := Stamped(o.Prefix, o.Now())
	if err := ValidName(name); err != nil {
		return Result{}, err
	}
	if _, err := o.Store.Stat(ctx, StoreIndexPath(name)); err == nil {
		return Result{}, fmt.Errorf("backup %s already exists in the store", name)
	}
	idx := &Index{Version: FormatVersion, Name: name, Registry: o.Registry, Started: o.Now().UTC(),
		Files: map[string]string{}, Modified: map[string]int64{}, Blobs: map[digest.Digest]int64{}}
	res := Result{Name: name}

	// 1. The small files: links and tags of every repository, the referrers index, pull markers.
	for _, root := range []string{layout.RepositoriesRoot, layout.ReferrersRoot, layout.PulledRoot} {
		if err := readTree(ctx, o.Source, root, idx); err != nil {
			return res, err
		}
	}
	// 2. The blobs they name, unless the store has them: marked in the source first
	// (garbage collection leaves a marked blob alone for its grace period).
	for _, d := range referencedDigests(idx.Files) {
		size, copied, err := copyBlob(ctx, o, d)
		switch {
		case errors.As(err, new(storagedriver.PathNotFoundError)):
			continue // deleted since the links were read
		case err != nil:
			return res, fmt.Errorf("copy blob %s: %w", d, err)
		}
		idx.Blobs[d] = size
		res.BytesCopied += copied
	}
	// 3. Keep only whole images: a manifest whose bytes, blobs or child manifests are not
	// in the backup (deleted, or pushed half-way, while we read) is left out, with its tags.
	res.Skipped = keepWhole(ctx, o, idx)
	idx.Finished = o.Now().UTC()
	if err := writeIndex(ctx, o.Store, idx); err != nil {
		return res, err
	}
	count(idx, &res)
	o.Logger.Info("Backup written", "backup", name, "repositories", res.Repositories, "tags", res.Tags,
		"manifests", res.Manifests, "blobs", res.Blobs, "bytes", res.Bytes, "bytesCopied", res.BytesCopied, "skipped", res.Skipped)
	pruned, err := Prune(ctx, o.Store, o.Prefix, o.Keep, o.Logger)
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

// readTree puts every file under root into the index (path → content and modification
// time), skipping uploads in progress. A missing root is empty.
func readTree(ctx context.Context, d storagedriver.StorageDriver, root string, idx *Index) error {
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
		idx.Files[p] = string(b)
		idx.Modified[p] = fi.ModTime().UnixNano()
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

// copyBlob copies blob d into the store unless the store has it (a store blob exists only
// once it was completely written and verified). Before reading it marks d in the source,
// as a push does, so garbage collection keeps it; a blob the collector has just moved
// aside is read from there. It returns the blob's size and the bytes copied.
func copyBlob(ctx context.Context, o Options, d digest.Digest) (int64, int64, error) {
	if have, err := o.Store.Stat(ctx, StoreBlobPath(d)); err == nil {
		return have.Size(), 0, nil
	}
	stamp := []byte(o.Now().UTC().Format(time.RFC3339Nano))
	if err := o.Source.PutContent(ctx, layout.TouchPath(d), stamp); err != nil {
		return 0, 0, fmt.Errorf("mark %s for garbage collection: %w", d, err)
	}
	n, err := copyVerified(ctx, o.Source, layout.BlobDataPath(d), o.Store, StoreBlobPath(d), d)
	if errors.As(err, new(storagedriver.PathNotFoundError)) {
		n, err = copyVerified(ctx, o.Source, layout.QuarantinePath(d), o.Store, StoreBlobPath(d), d)
	}
	return n, n, err
}

// copyVerified streams from to to, checking that the bytes hash to d before committing.
func copyVerified(ctx context.Context, from storagedriver.StorageDriver, fromPath string, to storagedriver.StorageDriver, toPath string, d digest.Digest) (int64, error) {
	r, err := from.Reader(ctx, fromPath, 0)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	// Write aside and move into place once verified: the final path never holds a partial
	// or corrupt copy, even after a crash.
	tmp := path.Join(uploadsDir, d.Encoded()+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	w, err := to.Writer(ctx, tmp, false)
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
	if err := w.Close(); err != nil {
		return n, fmt.Errorf("close %s: %w", toPath, err)
	}
	if err := to.Move(ctx, tmp, toPath); err != nil {
		return n, fmt.Errorf("move %s into place: %w", toPath, err)
	}
	return n, nil
}

// uploadsDir holds copies in progress, in the store and in a restore's target alike.
const uploadsDir = "/dockyard-backup-uploads"

// keepWhole removes from idx, until nothing changes, every manifest revision that is not
// whole: its bytes, or a blob it references (with the repository's layer link), or a child
// manifest of an index (with its revision link) is not in the backup. Then tags and
// referrers-index entries of removed revisions go, and layer links of blobs not copied.
// It returns how many revisions it removed.
func keepWhole(ctx context.Context, o Options, idx *Index) int {
	refs := map[digest.Digest]manifestRefs{}
	removed := 0
	for changed := true; changed; {
		changed = false
		for p := range idx.Files {
			repo, d, ok := revisionOf(p)
			if !ok {
				continue
			}
			if _, ok := refs[d]; !ok {
				refs[d] = manifestReferences(ctx, o.Store, d)
			}
			if whole(idx, repo, d, refs[d]) {
				continue
			}
			delete(idx.Files, p)
			removed++
			changed = true
			o.Logger.Warn("Manifest not whole in the backup (deleted or pushed while it ran); left out", "repository", repo, "digest", d)
		}
	}
	for p, content := range idx.Files {
		switch repo, isTag := tagRepo(p); {
		case isTag:
			d, err := digest.Parse(strings.TrimSpace(content))
			if _, entry, ok := tagIndexEntry(p); ok {
				d, err = entry, nil
			}
			if err != nil || !hasFile(idx, layout.RevisionLinkPath(repo, d)) {
				delete(idx.Files, p)
			}
		case strings.HasPrefix(p, layout.ReferrersRoot+"/"):
			if name, subject, referrer, ok := layout.ParseReferrerPath(p); !ok ||
				!hasFile(idx, layout.RevisionLinkPath(name, subject)) || !hasFile(idx, layout.RevisionLinkPath(name, referrer)) {
				delete(idx.Files, p)
			}
		case strings.Contains(p, "/_layers/"):
			if d, ok := layout.DigestFromLinkPath(p); !ok || !hasBlob(idx, d) {
				delete(idx.Files, p)
			}
		}
	}
	for p := range idx.Modified {
		if !hasFile(idx, p) {
			delete(idx.Modified, p)
		}
	}
	return removed
}

func hasFile(idx *Index, p string) bool { _, ok := idx.Files[p]; return ok }

func hasBlob(idx *Index, d digest.Digest) bool { _, ok := idx.Blobs[d]; return ok }

// whole: manifest d of repo has its bytes, its blobs with their layer links and its child
// manifests with their revision links in the backup.
func whole(idx *Index, repo string, d digest.Digest, r manifestRefs) bool {
	if !hasBlob(idx, d) || r.unreadable {
		return false
	}
	for _, b := range r.blobs {
		if !hasBlob(idx, b) || !hasFile(idx, layout.LayerLinkPath(repo, b)) {
			return false
		}
	}
	for _, c := range r.children {
		if !hasFile(idx, layout.RevisionLinkPath(repo, c)) {
			return false
		}
	}
	return true
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

// manifestRefs are what a manifest references: blobs (config, layers, artifact blobs) and
// child manifests (an index's). The subject is not required: a referrer may outlive it.
type manifestRefs struct {
	blobs, children []digest.Digest
	unreadable      bool
}

// manifestReferences reads a manifest's bytes from the store. Content that is not JSON
// (or too large to be a manifest) references nothing; a read error makes it unreadable.
func manifestReferences(ctx context.Context, store storagedriver.StorageDriver, d digest.Digest) manifestRefs {
	b, err := store.GetContent(ctx, StoreBlobPath(d))
	if err != nil {
		return manifestRefs{unreadable: !errors.As(err, new(storagedriver.PathNotFoundError))}
	}
	if len(b) > 4<<20 {
		return manifestRefs{}
	}
	var m struct {
		Config    *struct{ Digest digest.Digest }  `json:"config"`
		Layers    []struct{ Digest digest.Digest } `json:"layers"`
		Manifests []struct{ Digest digest.Digest } `json:"manifests"`
		Blobs     []struct{ Digest digest.Digest } `json:"blobs"`
	}
	if json.Unmarshal(b, &m) != nil {
		return manifestRefs{}
	}
	var r manifestRefs
	if m.Config != nil && m.Config.Digest != "" {
		r.blobs = append(r.blobs, m.Config.Digest)
	}
	for _, l := range append(m.Layers, m.Blobs...) {
		r.blobs = append(r.blobs, l.Digest)
	}
	for _, c := range m.Manifests {
		r.children = append(r.children, c.Digest)
	}
	return r
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
