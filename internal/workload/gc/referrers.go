package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/referrers"
)

// referrersTag is a tag of the OCI referrers tag schema: `<alg>-<hex>` pointing at an index
// that lists the artifacts (signatures, SBOMs) whose subject is <alg>:<hex>. Registries
// without the referrers API, such as distribution 3.1, get these from clients.
type referrersTag struct {
	subject digest.Digest
	index   digest.Digest
}

var referrersTagPattern = regexp.MustCompile(`^([a-z0-9]+)-([a-f0-9]{32,})$`)

func referrersTagSubject(tag string) (digest.Digest, bool) {
	m := referrersTagPattern.FindStringSubmatch(tag)
	if m == nil {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(m[1]), m[2])
	return d, d.Validate() == nil
}

// markReferrers keeps, with deleteUntagged, what refers to a kept manifest: untagged
// manifests whose subject is kept (OCI 1.1 referrers pushed by digest) and the index behind
// a referrers tag whose subject is kept, following chains (a signature of a signature) until
// nothing changes.
func (c *collector) markReferrers(ctx context.Context, ms distribution.ManifestService,
	revisions map[digest.Digest]time.Time, fallback map[string]referrersTag, kept map[digest.Digest]struct{}) error {
	subjects := map[digest.Digest]digest.Digest{}
	for d := range revisions {
		if _, ok := kept[d]; ok {
			continue
		}
		subject, err := c.subjectOf(ctx, ms, d)
		if err != nil {
			return err
		}
		if subject != "" {
			subjects[d] = subject
		}
	}
	pending := map[string]referrersTag{}
	for tag, f := range fallback {
		pending[tag] = f
	}
	for changed := true; changed; {
		changed = false
		for d, subject := range subjects {
			if c.isKept(ctx, kept, subject) {
				delete(subjects, d)
				if err := c.markManifest(ctx, ms, d, kept); err != nil {
					return err
				}
				changed = true
			}
		}
		for tag, f := range pending {
			if c.isKept(ctx, kept, f.subject) {
				delete(pending, tag)
				if err := c.markManifest(ctx, ms, f.index, kept); err != nil {
					return err
				}
				changed = true
			}
		}
	}
	return nil
}

// isKept reports whether d, or the content its sha512 name links to, is kept.
func (c *collector) isKept(ctx context.Context, kept map[digest.Digest]struct{}, d digest.Digest) bool {
	if _, ok := kept[d]; ok {
		return true
	}
	target, err := c.aliasTarget(ctx, layout.RevisionLinkPath(c.repoName, d), d)
	if err != nil {
		return true // cannot tell: keeping is the safe answer
	}
	_, ok := kept[target]
	return ok
}

// subjectOf returns the subject of manifest d, or "" if it has none or is gone.
func (c *collector) subjectOf(ctx context.Context, ms distribution.ManifestService, d digest.Digest) (digest.Digest, error) {
	m, err := getManifest(ctx, ms, d)
	if err != nil || m == nil {
		return "", err
	}
	_, payload, err := m.Payload()
	if err != nil {
		return "", fmt.Errorf("read manifest %s: %w", d, err)
	}
	var withSubject struct {
		Subject *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"subject"`
	}
	// A payload that is not JSON with a subject (e.g. an old schema) has no subject.
	if jerr := json.Unmarshal(payload, &withSubject); jerr == nil && withSubject.Subject != nil {
		return withSubject.Subject.Digest, nil
	}
	return "", nil
}

// dropOrphanReferrersTags removes referrers tags whose subject is being collected, so their
// index and artifacts become untagged garbage. A tag whose index is itself kept (recently
// pushed, or referenced otherwise) stays.
func (c *collector) dropOrphanReferrersTags(ctx context.Context, repo distribution.Repository,
	fallback map[string]referrersTag, kept map[digest.Digest]struct{}) error {
	for tag, f := range fallback {
		if c.isKept(ctx, kept, f.subject) {
			continue
		}
		if _, ok := kept[f.index]; ok {
			continue
		}
		if err := repo.Tags(ctx).Untag(ctx, tag); err != nil && !isNotFound(err) {
			var unknown distribution.ErrTagUnknown
			if !errors.As(err, &unknown) {
				return fmt.Errorf("remove referrers tag %s: %w", tag, err)
			}
		}
		c.Logger.Debug("Removed referrers tag of a collected manifest", "tag", tag)
	}
	return nil
}

// ensureReferrer re-adds the referrers-index entry of a kept manifest with a subject when it
// is missing (pushed before the index existed, or lost with a failed write): the collector
// reads every kept manifest anyway, so it is the index's backstop.
func (c *collector) ensureReferrer(ctx context.Context, d digest.Digest, m distribution.Manifest) error {
	mt, payload, err := m.Payload()
	if err != nil {
		return fmt.Errorf("read manifest %s: %w", d, err)
	}
	subject, desc, ok := referrers.Describe(payload, mt, d)
	if !ok {
		return nil
	}
	if _, _, exists, err := c.modTime(ctx, layout.ReferrerPath(c.repoName, subject, d)); err != nil || exists {
		return err
	}
	// Pushed by its sha512 name, the same manifest is listed under that name already.
	entries, err := c.Driver.List(ctx, layout.ReferrersDir(c.repoName, subject))
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("list referrers of %s: %w", subject, err)
	}
	for _, p := range entries {
		if _, _, other, ok := layout.ParseReferrerPath(p); ok && other != d {
			if target, err := c.aliasTarget(ctx, layout.RevisionLinkPath(c.repoName, other), other); err != nil || target == d {
				return err
			}
		}
	}
	c.Logger.Info("Adding missing referrers index entry", "repository", c.repoName, "subject", subject.String(), "referrer", d.String())
	return referrers.Index{Driver: c.Driver}.Add(ctx, c.repoName, subject, desc)
}

// cleanReferrers removes index entries whose manifest is no longer in its repository and
// that are older than the grace period (a push writes its entry right after linking its
// manifest, so a young entry may belong to a push in flight).
func (c *collector) cleanReferrers(ctx context.Context) error {
	ix := referrers.Index{Driver: c.Driver}
	var stale []referrers.Entry
	err := ix.Walk(ctx, func(e referrers.Entry) error {
		if c.recent(e.FileInfo.ModTime()) {
			return nil
		}
		if _, _, exists, err := c.modTime(ctx, layout.RevisionLinkPath(e.Name, e.Referrer)); err != nil || exists {
			return err
		}
		stale = append(stale, e)
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range stale {
		// A push of the same referrer rewrites its entry after re-linking the manifest.
		if t, _, exists, err := c.modTime(ctx, e.Path); err != nil || !exists || c.recent(t) {
			if err != nil {
				return err
			}
			continue
		}
		if err := ix.Remove(ctx, e.Name, e.Subject, e.Referrer); err != nil {
			return err
		}
		c.res.ReferrersRemoved++
	}
	return nil
}
