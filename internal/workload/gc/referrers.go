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
			if _, ok := kept[subject]; ok {
				delete(subjects, d)
				if err := c.markManifest(ctx, ms, d, kept); err != nil {
					return err
				}
				changed = true
			}
		}
		for tag, f := range pending {
			if _, ok := kept[f.subject]; ok {
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
		if _, ok := kept[f.subject]; ok {
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
