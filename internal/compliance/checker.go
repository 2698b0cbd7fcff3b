package compliance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/scan"
)

// Checker decides about image references of one registry, as admission does: a tag is
// resolved to its digest, the newest report of each image is read from the registry
// (cached by digest for TTL), and the policy decides. A multi-platform index is as
// compliant as the least compliant of its images.
type Checker struct {
	// Remote reads manifests and reports (pull rights suffice).
	Remote []remote.Option
	// Keys are the scanner's public keys: only reports one of them signed count.
	Keys []ed25519.PublicKey
	// TTL bounds how long a report is reused (30 s when zero); its absence is reused
	// for 2 s at most.
	TTL time.Duration
	// MaxCached bounds the cache (default 10000 digests).
	MaxCached int
	// Now returns the time; time.Now when nil.
	Now func() time.Time

	mu          sync.Mutex
	cache       map[string]cachedReport
	cachedVulns int
	signed      map[string]cachedSignature
}

type cachedSignature struct {
	signed  bool
	fetched time.Time
}

type cachedReport struct {
	report  *scan.Report // nil: not scanned
	fetched time.Time
	vulns   int
}

// Decision is the verdict about one image reference.
type Decision struct {
	// Image is the reference checked; Digest what it resolved to.
	Image  string
	Digest string
	Verdict
	// Message explains a refusal (empty when allowed).
	Message string
}

// ErrManifestUnknown says the reference names no manifest (the first lookup answered 404).
var ErrManifestUnknown = errors.New("manifest unknown")

// ErrUnjudgeable says the manifest is of a shape the check refuses to judge (an index that
// nests an index, has no images or too many); retrying does not help.
var ErrUnjudgeable = errors.New("cannot be judged")

// maxIndexChildren bounds the images of an index that are checked.
const maxIndexChildren = 64

// Check decides about ref (by tag or digest) under policy p. A manifest that is not a
// container image (a signature, a report, an SBOM) is not judged: the error wraps
// scan.ErrNotImage.
func (c *Checker) Check(ctx context.Context, ref name.Reference, p Policy) (Decision, error) {
	opts := append(append([]remote.Option(nil), c.Remote...), remote.WithContext(ctx))
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		if isNotFound(err) {
			return Decision{}, fmt.Errorf("resolve %s: %w: %w", ref, ErrManifestUnknown, err)
		}
		return Decision{}, fmt.Errorf("resolve %s: %w", ref, err)
	}
	d := Decision{Image: ref.String(), Digest: desc.Digest.String()}
	repo := ref.Context()
	var images []v1.Hash
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return Decision{}, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return Decision{}, err
		}
		for _, m := range im.Manifests {
			if m.MediaType.IsIndex() {
				// A runtime may descend into it: refuse rather than judge it unseen.
				return Decision{}, fmt.Errorf("%w: %s holds a nested index (%s), which the compliance check does not read", ErrUnjudgeable, ref, m.Digest)
			}
			if !m.MediaType.IsImage() || (m.Platform != nil && m.Platform.OS == "unknown") {
				continue // attestations and other non-runnable entries
			}
			if len(images) == maxIndexChildren {
				return Decision{}, fmt.Errorf("%w: %s has more than %d images", ErrUnjudgeable, ref, maxIndexChildren)
			}
			images = append(images, m.Digest)
		}
		if len(images) == 0 {
			return Decision{}, fmt.Errorf("%w: %s is an index without images", ErrUnjudgeable, ref)
		}
	} else {
		if err := scan.Runnable(desc.MediaType, desc.Manifest); err != nil {
			// Signatures, reports, SBOMs: nothing runs them, nothing judges them.
			return Decision{}, fmt.Errorf("%s: %w", ref, err)
		}
		images = []v1.Hash{desc.Digest}
	}
	now := c.now()
	var worst *Verdict
	for _, h := range images {
		r, err := c.report(repo.Digest(h.String()), opts, now)
		if err != nil {
			return Decision{}, err
		}
		v := Evaluate(p, repo.RepositoryStr(), r, now)
		worst = merge(worst, v)
	}
	d.Verdict = *worst
	if p.Signatures != nil {
		// What is signed is what the reference names: the index of a multi-platform image.
		ok, err := c.signedBy(repo.Digest(desc.Digest.String()), p.Signatures, opts, now)
		if err != nil {
			return Decision{}, err
		}
		if !ok {
			d.Unsigned, d.Allowed = true, false
			if d.Reason == Compliant || d.Reason == NotScannedAllowed {
				d.Reason = Unsigned
			}
		}
	}
	d.Message = d.Verdict.Message(d.Image, p)
	return d, nil
}

// signedBy is SignedBy, cached per digest and key set for TTL.
func (c *Checker) signedBy(d name.Digest, keys *Keys, opts []remote.Option, now time.Time) (bool, error) {
	key := d.String() + " " + keys.ID
	c.mu.Lock()
	if cs, ok := c.signed[key]; ok && now.Sub(cs.fetched) < c.ttl() {
		c.mu.Unlock()
		return cs.signed, nil
	}
	c.mu.Unlock()
	ok, err := SignedBy(d, keys, opts...)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.signed == nil || len(c.signed) >= c.maxCached() {
		c.signed = map[string]cachedSignature{}
	}
	c.signed[key] = cachedSignature{signed: ok, fetched: now}
	return ok, nil
}

func (c *Checker) ttl() time.Duration {
	if c.TTL <= 0 {
		return 30 * time.Second
	}
	return c.TTL
}

func (c *Checker) maxCached() int {
	if c.MaxCached <= 0 {
		return 10000
	}
	return c.MaxCached
}

// reasonRank orders reasons from most to least permissive, for merging.
var reasonRank = map[Reason]int{Compliant: 0, NotScannedAllowed: 1, Unsigned: 2, Vulnerable: 3, NotScanned: 4}

// merge combines the verdicts of an index's images: the least permissive reason wins
// (whatever the order of the images), and every blocking vulnerability is listed once.
func merge(acc *Verdict, v Verdict) *Verdict {
	if acc == nil {
		return &v
	}
	if reasonRank[v.Reason] > reasonRank[acc.Reason] {
		acc.Reason = v.Reason
	}
	acc.Allowed = acc.Allowed && v.Allowed
	seen := map[string]bool{}
	for _, b := range acc.Blocking {
		seen[b.ID+" "+b.Package+" "+b.InstalledVersion] = true
	}
	for _, b := range v.Blocking {
		if !seen[b.ID+" "+b.Package+" "+b.InstalledVersion] {
			acc.Blocking = append(acc.Blocking, b)
		}
	}
	acc.Exempted = append(acc.Exempted, v.Exempted...)
	return acc
}

func (c *Checker) report(d name.Digest, opts []remote.Option, now time.Time) (*scan.Report, error) {
	key := d.String()
	ttl := c.ttl()
	c.mu.Lock()
	if cr, ok := c.cache[key]; ok && now.Sub(cr.fetched) < entryTTL(cr, ttl) {
		c.mu.Unlock()
		return cr.report, nil
	}
	c.mu.Unlock()
	var r *scan.Report
	if len(c.Keys) == 0 {
		return nil, nil // no scanner key (no scanner yet): nothing can count as scanned
	}
	st, err := scan.Latest(d, c.Keys, opts...)
	switch {
	case errors.Is(err, scan.ErrUnreadable):
		// Reports exist but none reads back (a network error, a deleted blob): not the
		// same as "not scanned", which a policy may let through.
		return nil, err
	case errors.Is(err, scan.ErrNoReport):
	case err != nil:
		return nil, err
	default:
		r = st.Report
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = map[string]cachedReport{}
	}
	n := 0
	if r != nil {
		n = len(r.Vulnerabilities)
	}
	limit := c.maxCached()
	if old, ok := c.cache[key]; ok {
		c.cachedVulns -= old.vulns
	}
	if len(c.cache) >= limit || c.cachedVulns+n > maxCachedVulnerabilities {
		// Drop what has expired; if that is not enough, start over (bounded memory beats
		// a slightly colder cache).
		for k, v := range c.cache {
			if now.Sub(v.fetched) >= entryTTL(v, ttl) {
				c.cachedVulns -= v.vulns
				delete(c.cache, k)
			}
		}
		if len(c.cache) >= limit || c.cachedVulns+n > maxCachedVulnerabilities {
			clear(c.cache)
			c.cachedVulns = 0
		}
	}
	c.cache[key] = cachedReport{report: r, fetched: now, vulns: n}
	c.cachedVulns += n
	return r, nil
}

// notScannedTTL bounds how long "no report yet" is reused: a scan usually lands seconds
// after the push, and the verdict follows it without waiting for the whole TTL.
const notScannedTTL = 2 * time.Second

func entryTTL(cr cachedReport, ttl time.Duration) time.Duration {
	if cr.report == nil {
		return min(ttl, notScannedTTL)
	}
	return ttl
}

// maxCachedVulnerabilities bounds the vulnerabilities the cache holds (about 300 bytes
// each at most, once read back: ~60 MiB).
const maxCachedVulnerabilities = 200000

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
