// Package inventory reads what a registry's storage holds into a retention.Store: every
// repository, its tags with the time each last moved (the tag link's modification time),
// its manifests with their push time (the revision link's), index children, OCI 1.1
// subject, and the blobs each references with their sizes. It reads distribution's storage
// layout through a storage driver, so it works on every backend the registry supports, and
// it changes nothing.
package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/distribution/distribution/v3"
	dstorage "github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/retention"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// Read reads the whole store.
func Read(ctx context.Context, driver storagedriver.StorageDriver) (retention.Store, error) {
	ns, err := dstorage.NewRegistry(ctx, driver)
	if err != nil {
		return retention.Store{}, fmt.Errorf("open registry storage: %w", err)
	}
	repos, ok := ns.(distribution.RepositoryEnumerator)
	if !ok {
		return retention.Store{}, errors.New("registry storage cannot enumerate repositories")
	}
	var names []string
	if err := repos.Enumerate(ctx, func(name string) error {
		names = append(names, name)
		return nil
	}); err != nil && !isNotFound(err) {
		return retention.Store{}, fmt.Errorf("list repositories: %w", err)
	}
	slices.Sort(names)
	var store retention.Store
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return retention.Store{}, err
		}
		repo, err := readRepository(ctx, ns, driver, name)
		if err != nil {
			return retention.Store{}, fmt.Errorf("repository %s: %w", name, err)
		}
		store.Repositories = append(store.Repositories, repo)
	}
	return store, nil
}

// ReadRepository reads one repository (an empty one when it does not exist).
func ReadRepository(ctx context.Context, driver storagedriver.StorageDriver, name string) (retention.Repository, error) {
	ns, err := dstorage.NewRegistry(ctx, driver)
	if err != nil {
		return retention.Repository{}, fmt.Errorf("open registry storage: %w", err)
	}
	return readRepository(ctx, ns, driver, name)
}

func readRepository(ctx context.Context, ns distribution.Namespace, driver storagedriver.StorageDriver, name string) (retention.Repository, error) {
	out := retention.Repository{Name: name}
	named, err := reference.WithName(name)
	if err != nil {
		return out, fmt.Errorf("parse name: %w", err)
	}
	repo, err := ns.Repository(ctx, named)
	if err != nil {
		return out, fmt.Errorf("open: %w", err)
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return out, fmt.Errorf("open manifests: %w", err)
	}
	revisions, err := links(ctx, driver, layout.RevisionsPath(name))
	if err != nil {
		return out, err
	}
	pulled, err := PullTimes(ctx, driver, name)
	if err != nil {
		return out, err
	}
	// Other names of the same content (sha512 links to the sha256 revision) are not
	// manifests of their own: fold them into the content they name.
	aliases := map[digest.Digest]digest.Digest{}
	for d, t := range revisions {
		target, err := AliasTarget(ctx, driver, name, d)
		if err != nil {
			return out, err
		}
		if target != d {
			aliases[d] = target
			if revisions[target].IsZero() {
				revisions[target] = t // a dangling alias: Get below tells
			}
			delete(revisions, d)
		}
	}
	canonical := func(s string) string {
		if t, ok := aliases[digest.Digest(s)]; ok {
			return t.String()
		}
		return s
	}
	for alias, target := range aliases {
		if t := pulled[alias]; t.After(pulled[target]) {
			pulled[target] = t
		}
	}
	for _, d := range sortedKeys(revisions) {
		m, err := ms.Get(ctx, d)
		if err != nil {
			var unknown distribution.ErrManifestUnknownRevision
			if errors.As(err, &unknown) || errors.Is(err, distribution.ErrBlobUnknown) || isNotFound(err) {
				continue // deleted meanwhile
			}
			return out, fmt.Errorf("read manifest %s: %w", d, err)
		}
		_, payload, err := m.Payload()
		if err != nil {
			return out, fmt.Errorf("manifest %s: %w", d, err)
		}
		man, err := ParseManifest(d, payload)
		if err != nil {
			return out, err
		}
		for alias, target := range aliases {
			if target == d {
				man.Aliases = append(man.Aliases, alias.String())
			}
		}
		slices.Sort(man.Aliases)
		man.PushedAt = revisions[d]
		man.PulledAt = pulled[d]
		for i, c := range man.Children {
			man.Children[i] = canonical(c)
		}
		man.Subject = canonical(man.Subject)
		out.Manifests = append(out.Manifests, man)
	}
	tagsRoot := path.Join(layout.RepositoryPath(name), "_manifests", "tags")
	tagDirs, err := driver.List(ctx, tagsRoot)
	if err != nil && !isNotFound(err) {
		return out, fmt.Errorf("list tags: %w", err)
	}
	slices.Sort(tagDirs)
	for _, dir := range tagDirs {
		link := path.Join(dir, "current", "link")
		raw, err := driver.GetContent(ctx, link)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("read tag %s: %w", path.Base(dir), err)
		}
		d, err := digest.Parse(strings.TrimSpace(string(raw)))
		if err != nil {
			continue // not a tag link
		}
		fi, err := driver.Stat(ctx, link)
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return out, fmt.Errorf("stat tag %s: %w", path.Base(dir), err)
		}
		out.Tags = append(out.Tags, retention.Tag{Name: path.Base(dir), Digest: canonical(d.String()), PushedAt: fi.ModTime()})
	}
	return out, nil
}

// descriptor is the part of an OCI descriptor the planner needs.
type descriptor struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// ParseManifest reads children, subject and blobs from any manifest: OCI image and index, Docker
// schema 2 manifest and manifest list (same field names), OCI artifact manifests.
func ParseManifest(d digest.Digest, payload []byte) (retention.Manifest, error) {
	var doc struct {
		Manifests []descriptor `json:"manifests"`
		Config    *descriptor  `json:"config"`
		Layers    []descriptor `json:"layers"`
		Blobs     []descriptor `json:"blobs"`
		Subject   *descriptor  `json:"subject"`
	}
	if err := json.Unmarshal(payload, &doc); err != nil {
		return retention.Manifest{}, fmt.Errorf("manifest %s: %w", d, err)
	}
	m := retention.Manifest{Digest: d.String(), Blobs: []retention.Blob{{Digest: d.String(), Size: int64(len(payload))}}}
	for _, c := range doc.Manifests {
		m.Children = append(m.Children, c.Digest)
	}
	if doc.Config != nil {
		m.Blobs = append(m.Blobs, retention.Blob{Digest: doc.Config.Digest, Size: doc.Config.Size})
	}
	for _, l := range append(doc.Layers, doc.Blobs...) {
		m.Blobs = append(m.Blobs, retention.Blob{Digest: l.Digest, Size: l.Size})
	}
	if doc.Subject != nil {
		m.Subject = doc.Subject.Digest
	}
	return m, nil
}

// links walks the link files under root: digest -> newest link modification time.
func links(ctx context.Context, driver storagedriver.StorageDriver, root string) (map[digest.Digest]time.Time, error) {
	out := map[digest.Digest]time.Time{}
	err := driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		if d, ok := layout.DigestFromLinkPath(fi.Path()); ok {
			if t := fi.ModTime(); t.After(out[d]) {
				out[d] = t
			}
		}
		return nil
	})
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return out, nil
}

// AliasTarget returns the content digest a manifest name of repo stands for: itself for a
// sha256 name, the digest its revision link holds for another algorithm (sha512 names are
// links to the sha256 content), itself when there is no such link.
func AliasTarget(ctx context.Context, driver storagedriver.StorageDriver, repo string, d digest.Digest) (digest.Digest, error) {
	return LinkTarget(ctx, driver, layout.RevisionLinkPath(repo, d), d)
}

// LinkTarget returns the content digest the link at p (a revision or layer link of name
// d) holds, for a non-sha256 d; d itself otherwise or when there is no such link.
func LinkTarget(ctx context.Context, driver storagedriver.StorageDriver, p string, d digest.Digest) (digest.Digest, error) {
	if d.Algorithm() == digest.Canonical {
		return d, nil
	}
	b, err := driver.GetContent(ctx, p)
	if err != nil {
		if isNotFound(err) {
			return d, nil
		}
		return "", fmt.Errorf("read link of %s: %w", d, err)
	}
	if target, err := digest.Parse(strings.TrimSpace(string(b))); err == nil {
		return target, nil
	}
	return d, nil
}

// PullTimes reads a repository's pull markers (one walk): digest -> last pull, from the
// marker's modification time.
func PullTimes(ctx context.Context, driver storagedriver.StorageDriver, name string) (map[digest.Digest]time.Time, error) {
	out := map[digest.Digest]time.Time{}
	err := driver.Walk(ctx, layout.PulledRepositoryPath(name), func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		if d, ok := layout.DigestFromPulledPath(fi.Path()); ok && fi.ModTime().After(out[d]) {
			out[d] = fi.ModTime()
		}
		return nil
	})
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("walk pull markers: %w", err)
	}
	return out, nil
}

func sortedKeys(m map[digest.Digest]time.Time) []digest.Digest {
	out := make([]digest.Digest, 0, len(m))
	for d := range m {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}
