package gc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/manifest/manifestlist"
	"github.com/distribution/distribution/v3/manifest/schema2"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// isManifestType reports whether a descriptor's media type is a manifest or index (whose
// references must be followed), rather than a plain blob.
func isManifestType(mt string) bool {
	switch mt {
	case v1.MediaTypeImageManifest, v1.MediaTypeImageIndex, schema2.MediaTypeManifest,
		manifestlist.MediaTypeManifestList:
		return true
	}
	return false
}

// mark walks every repository and marks what must stay; with DeleteUntagged it deletes
// untagged manifests that are neither recent nor children of a kept index.
func (c *collector) mark(ctx context.Context) error {
	repos, ok := c.ns.(distribution.RepositoryEnumerator)
	if !ok {
		return errors.New("registry storage cannot enumerate repositories")
	}
	var names []string
	if err := repos.Enumerate(ctx, func(name string) error {
		names = append(names, name)
		return nil
	}); err != nil && !isNotFound(err) {
		return fmt.Errorf("list repositories: %w", err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.markRepository(ctx, name); err != nil {
			return fmt.Errorf("repository %s: %w", name, err)
		}
	}
	return nil
}

// links walks the link files under root and returns digest -> newest link mtime.
func (c *collector) links(ctx context.Context, root string) (map[digest.Digest]time.Time, error) {
	out := map[digest.Digest]time.Time{}
	err := c.Driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
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

func (c *collector) noteLinks(m map[digest.Digest]time.Time) {
	for d, t := range m {
		if t.After(c.linked[d]) {
			c.linked[d] = t
		}
	}
}

func (c *collector) markRepository(ctx context.Context, name string) error {
	named, err := reference.WithName(name)
	if err != nil {
		return fmt.Errorf("parse name: %w", err)
	}
	repo, err := c.ns.Repository(ctx, named)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return fmt.Errorf("open manifests: %w", err)
	}
	layers, err := c.links(ctx, layout.LayersPath(name))
	if err != nil {
		return err
	}
	c.noteLinks(layers)
	revisions, err := c.links(ctx, layout.RevisionsPath(name))
	if err != nil {
		return err
	}
	c.noteLinks(revisions)

	var roots []digest.Digest
	fallback := map[string]referrersTag{}
	tags, err := repo.Tags(ctx).All(ctx)
	if err != nil && !isRepoUnknown(err) && !isNotFound(err) {
		return fmt.Errorf("list tags: %w", err)
	}
	for _, tag := range tags {
		desc, err := repo.Tags(ctx).Get(ctx, tag)
		if err != nil {
			var unknown distribution.ErrTagUnknown
			if errors.As(err, &unknown) || isNotFound(err) {
				continue // deleted meanwhile
			}
			return fmt.Errorf("read tag %s: %w", tag, err)
		}
		if subject, ok := referrersTagSubject(tag); ok && c.DeleteUntagged {
			// Lives as long as its subject does (see markReferrers).
			fallback[tag] = referrersTag{subject: subject, index: desc.Digest}
			continue
		}
		roots = append(roots, desc.Digest)
	}
	for d, t := range revisions {
		keep := !c.DeleteUntagged || c.recent(t)
		if !keep {
			touched, _, _, err := c.modTime(ctx, layout.TouchPath(d))
			if err != nil {
				return err
			}
			keep = c.recent(touched)
		}
		if keep {
			roots = append(roots, d)
		}
	}
	c.repoName = name
	kept := map[digest.Digest]struct{}{}
	for _, d := range roots {
		if err := c.markManifest(ctx, ms, d, kept); err != nil {
			return err
		}
	}
	if !c.DeleteUntagged {
		return nil
	}
	if err := c.markReferrers(ctx, ms, revisions, fallback, kept); err != nil {
		return err
	}
	if err := c.dropOrphanReferrersTags(ctx, repo, fallback, kept); err != nil {
		return err
	}
	for d := range revisions {
		if _, ok := kept[d]; ok {
			continue
		}
		// A sha512 name of a kept manifest stays with it.
		if target, err := c.aliasTarget(ctx, layout.RevisionLinkPath(name, d), d); err != nil {
			return err
		} else if _, ok := kept[target]; ok && target != d {
			continue
		}
		if err := c.deleteManifest(ctx, name, ms, d, kept); err != nil {
			return err
		}
	}
	return nil
}

func isRepoUnknown(err error) bool {
	var u distribution.ErrRepositoryUnknown
	return errors.As(err, &u)
}

// markManifest marks d, its blobs and, for an index, its children (recursively).
func (c *collector) markManifest(ctx context.Context, ms distribution.ManifestService, d digest.Digest, kept map[digest.Digest]struct{}) error {
	if _, ok := kept[d]; ok {
		return nil
	}
	kept[d] = struct{}{}
	if err := c.markDigest(ctx, d); err != nil {
		return err
	}
	// Kept under one name means kept under the name it links to: a sha512 name keeps its
	// sha256 revision, so referrers naming either find their subject kept.
	if target, err := c.aliasTarget(ctx, layout.RevisionLinkPath(c.repoName, d), d); err != nil {
		return err
	} else if target != d {
		kept[target] = struct{}{}
	}
	m, err := getManifest(ctx, ms, d)
	if err != nil {
		// Without the manifest we cannot know what it needs: stop rather than guess.
		return err
	}
	if m == nil {
		return nil // deleted meanwhile, or a child that was never pushed here
	}
	if err := c.ensureReferrer(ctx, d, m); err != nil {
		return err
	}
	for _, ref := range m.References() {
		if err := c.markDigest(ctx, ref.Digest); err != nil {
			return err
		}
		if isManifestType(ref.MediaType) {
			if err := c.markManifest(ctx, ms, ref.Digest, kept); err != nil {
				return err
			}
		}
	}
	return nil
}

// markDigest keeps d and, for a digest of another algorithm than the canonical sha256 (an OCI 1.1
// sha512 blob or manifest), the canonical blob its link in the current repository names:
// distribution stores content once, under its sha256, and links other digests to it.
func (c *collector) markDigest(ctx context.Context, d digest.Digest) error {
	c.marked[d] = struct{}{}
	if d.Algorithm() == digest.Canonical {
		return nil
	}
	for _, p := range []string{layout.LayerLinkPath(c.repoName, d), layout.RevisionLinkPath(c.repoName, d)} {
		target, err := c.aliasTarget(ctx, p, d)
		if err != nil {
			return err
		}
		c.marked[target] = struct{}{}
	}
	return nil
}

// aliasTarget reads the link at p, which names d in a repository, and returns the digest it
// points to (d itself for a missing or unreadable link, or a canonical digest).
func (c *collector) aliasTarget(ctx context.Context, p string, d digest.Digest) (digest.Digest, error) {
	if d.Algorithm() == digest.Canonical {
		return d, nil
	}
	b, err := c.Driver.GetContent(ctx, p)
	if err != nil {
		if isNotFound(err) {
			return d, nil
		}
		return "", fmt.Errorf("read link %s: %w", p, err)
	}
	if target, perr := digest.Parse(string(b)); perr == nil {
		return target, nil
	}
	return d, nil // not a link we understand: keep d itself
}

// deleteManifest removes an untagged manifest from a repository after re-checking, just
// before the delete, that it was not re-pushed or relied on meanwhile. For a sha512 name the
// checks look at the content it names (pushes mark the sha256 content), and a restored link
// names that content again.
func (c *collector) deleteManifest(ctx context.Context, repo string, ms distribution.ManifestService, d digest.Digest, kept map[digest.Digest]struct{}) error {
	link := layout.RevisionLinkPath(repo, d)
	linkTime, _, exists, err := c.modTime(ctx, link)
	if err != nil || !exists {
		return err
	}
	target, err := c.aliasTarget(ctx, link, d)
	if err != nil {
		return err
	}
	recentlyUsed := func() (bool, error) {
		for _, x := range []digest.Digest{d, target} {
			if recent, err := c.touchedRecently(ctx, x); err != nil || recent {
				return recent, err
			}
		}
		return false, nil
	}
	if used, err := recentlyUsed(); err != nil {
		return err
	} else if used || c.recent(linkTime) {
		// Relied on during this run (e.g. an index naming it was just pushed): keep it with
		// everything it references, not only its own blob.
		return c.markManifest(ctx, ms, d, kept)
	}
	if err := ms.Delete(ctx, d); err != nil {
		var unknown distribution.ErrManifestUnknownRevision
		if errors.As(err, &unknown) || isNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete untagged manifest %s: %w", d, err)
	}
	// A push of the same manifest (e.g. tagging it) touches its marker before it writes;
	// if that happened between the check above and the delete, put the link back.
	ctx = context.WithoutCancel(ctx)
	if used, err := recentlyUsed(); err != nil || used {
		if perr := c.Driver.PutContent(ctx, link, []byte(target.String())); perr != nil {
			return fmt.Errorf("restore manifest %s in %s: %w", d, repo, perr)
		}
		if err != nil {
			return err
		}
		return c.markManifest(ctx, ms, d, kept)
	}
	c.res.ManifestsDeleted++
	c.Logger.Debug("Deleted untagged manifest", "repository", repo, "digest", d.String())
	return nil
}

// getManifest reads manifest d; it returns nil and no error when the manifest is gone.
func getManifest(ctx context.Context, ms distribution.ManifestService, d digest.Digest) (distribution.Manifest, error) {
	m, err := ms.Get(ctx, d)
	var unknown distribution.ErrManifestUnknownRevision
	switch {
	case err == nil:
		return m, nil
	case errors.As(err, &unknown), errors.Is(err, distribution.ErrBlobUnknown), isNotFound(err):
		return nil, nil
	}
	return nil, fmt.Errorf("read manifest %s: %w", d, err)
}
