// Package retention decides what a RetentionPolicy deletes. It is pure: a snapshot of the
// registry's content and a policy in, a plan out — no storage, no clock, no Kubernetes —
// so every decision has a table test and the same input always gives the same plan (and
// plan hash).
//
// The unit of retention is an artifact: a top-level manifest (an image or an index; not a
// child of an index, not a referrer) with all its tags. Rules keep tags; an artifact is
// kept when any of its tags is kept (or, untagged, when untagged artifacts are kept). A
// kept manifest keeps its index children and its referrers (OCI 1.1 subject, and cosign's
// sha256-<digest>.<kind> tags), recursively. A tag no rule keeps is removed; its manifest
// is deleted only when nothing keeps it. Repositories outside the policy's scope are never
// touched, and their manifests' blobs are never counted as reclaimable.
package retention

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
)

// Store is a snapshot of a registry's content.
type Store struct {
	Repositories []Repository
}

// Repository is one repository: its manifests and tags.
type Repository struct {
	Name      string
	Manifests []Manifest
	Tags      []Tag
}

// Tag names a manifest. PushedAt is when the tag last moved.
type Tag struct {
	Name     string
	Digest   string
	PushedAt time.Time
}

// Manifest is one manifest of a repository.
type Manifest struct {
	Digest   string
	PushedAt time.Time
	// PulledAt is when it was last pulled (zero: never, or not recorded).
	PulledAt time.Time
	// Children are the manifests an index lists.
	Children []string
	// Subject is the manifest an OCI 1.1 referrer refers to.
	Subject string
	// Aliases are other names of the same content in the repository (a sha512 revision
	// link to the sha256 one); deleting the manifest deletes them too.
	Aliases []string
	// Blobs are the manifest's own blob (its digest and size) and the config and layers
	// it references.
	Blobs []Blob
}

// Blob is a content-addressed blob and its size.
type Blob struct {
	Digest string
	Size   int64
}

// Policy is what the planner needs of a RetentionPolicy.
type Policy struct {
	// Repositories and ExcludeRepositories are repository patterns (the access rules'
	// grammar); a repository is in scope when it matches one of the first and none of the
	// second.
	Repositories        []string
	ExcludeRepositories []string
	// Rules keep tags; a tag no rule keeps is removed.
	Rules []Rule
	// KeepUntagged keeps untagged artifacts (manifests no tag, index or subject reaches).
	KeepUntagged bool
	// MaxDeletionPercent is the ceiling: a plan deleting more than this share of the
	// artifacts in scope must not be enforced.
	MaxDeletionPercent int
	// ImmutableTags are the Registry's immutable tags: always kept (the registry would
	// refuse to delete them anyway).
	ImmutableTags []registryconfig.ImmutableTagRule
	// MinAge keeps everything pushed more recently, tagged or not: a multi-arch push
	// uploads its platform manifests before the index that tags them, and a signature may
	// arrive before its subject.
	MinAge time.Duration
	// SampleSize bounds Plan.Sample.
	SampleSize int
	// Unfinished are manifests, per repository, an interrupted run had started to delete
	// (see the executor's journal): untagged, they are not kept by KeepUntagged, so the
	// next run finishes what the last one began. Anything else that keeps them still does.
	Unfinished map[string]map[string]bool

	// InUse are images pods of the cluster run or are about to run, per repository: their
	// digests (from the pods' image IDs) and tags (from their specs). They are always kept,
	// however old: a pod rescheduled to another node pulls its image again.
	InUse map[string]InUse

	// alsoKeep is what other policies of the same registry keep (set by MakeAll).
	alsoKeep map[string]keepSet
	// alsoKeepBy names them, for reasons.
	alsoKeepBy map[string]map[string]string
}

// InUse is what pods use of one repository.
type InUse struct {
	Digests, Tags map[string]bool
}

// keepSet is what a policy keeps in one repository: tag names and manifest digests.
type keepSet struct {
	tags, digests map[string]bool
}

// Rule keeps the tags its selector matches that meet its condition: the KeepLast most
// recently pushed per repository, those pushed within PushedWithin, those pulled within
// PulledWithin; with no condition, every tag it matches. With several conditions a tag is
// kept when any holds. Each rule counts its own tags (KeepLast of one rule never uses up
// another's budget).
type Rule struct {
	// Name identifies the rule in reasons (e.g. "rules[0]").
	Name         string
	Selector     TagSelector
	KeepLast     int
	PushedWithin time.Duration
	PulledWithin time.Duration
}

// TagSelector matches tag names: all set fields must match; an empty selector matches
// every tag.
type TagSelector struct {
	// Glob is a shell pattern (path.Match: *, ?, [a-z]).
	Glob string
	// Regex is an RE2 expression matched against the whole tag.
	Regex string
	// Semver is a constraint (">=1.2.0 <2", "~1.4"); tags that are not versions never match.
	Semver string
}

// compiled is a TagSelector ready to match.
type compiled struct {
	glob  string
	re    *regexp.Regexp
	semve *semver.Constraints
}

// Compile checks a selector and prepares it.
func (s TagSelector) compile() (compiled, error) {
	c := compiled{glob: s.Glob}
	if s.Glob != "" {
		if _, err := path.Match(s.Glob, ""); err != nil {
			return c, fmt.Errorf("glob %q: %w", s.Glob, err)
		}
	}
	if s.Regex != "" {
		re, err := regexp.Compile("^(?:" + s.Regex + ")$")
		if err != nil {
			return c, fmt.Errorf("regex %q: %w", s.Regex, err)
		}
		c.re = re
	}
	if s.Semver != "" {
		sc, err := semver.NewConstraint(s.Semver)
		if err != nil {
			return c, fmt.Errorf("semver %q: %w", s.Semver, err)
		}
		c.semve = sc
	}
	return c, nil
}

func (c compiled) match(tag string) bool {
	if c.glob != "" {
		if ok, _ := path.Match(c.glob, tag); !ok {
			return false
		}
	}
	if c.re != nil && !c.re.MatchString(tag) {
		return false
	}
	if c.semve != nil {
		v, err := semver.NewVersion(tag)
		if err != nil || !c.semve.Check(v) {
			return false
		}
	}
	return true
}

// Validate reports the first problem with a policy's selectors.
func (p Policy) Validate() error {
	for i, r := range p.Rules {
		if _, err := r.Selector.compile(); err != nil {
			return fmt.Errorf("rules[%d]: %w", i, err)
		}
		if r.KeepLast < 0 || r.PushedWithin < 0 || r.PulledWithin < 0 {
			return fmt.Errorf("rules[%d]: negative condition", i)
		}
	}
	return nil
}

// ActionKind is what an action does.
type ActionKind string

const (
	// Untag removes a tag; its manifest stays (something else keeps it).
	Untag ActionKind = "Untag"
	// Delete removes a manifest and every tag pointing at it.
	Delete ActionKind = "Delete"
)

// Action is one step of a plan. Tags are the tags to remove (for Delete: the tags pointing
// at the digest when the plan was made; the executor compares before deleting).
type Action struct {
	Kind       ActionKind
	Repository string
	Digest     string
	Tags       []string
	Reason     string
}

// Plan is what a policy would do to a store.
type Plan struct {
	Repositories int
	// Artifacts and Tags in scope; of them Kept*, and ToDelete / TagsToRemove.
	Artifacts, KeptArtifacts, ArtifactsToDelete int
	Tags, KeptTags, TagsToRemove                int
	// ManifestsToDelete counts every manifest deleted: artifacts, and the children and
	// referrers that go with them.
	ManifestsToDelete int
	// ReclaimableBytes is the size of the blobs only deleted manifests reference (what the
	// next garbage collection frees).
	ReclaimableBytes int64
	// Actions, sorted by repository, kind and digest.
	Actions []Action
	// Sample is the first SampleSize actions.
	Sample []Action
	// Hash identifies the actions.
	Hash string
	// CeilingExceeded: ArtifactsToDelete is more than MaxDeletionPercent of Artifacts.
	CeilingExceeded bool

	// keeps is what the policy keeps, per repository in scope.
	keeps map[string]keepSet
}

// referrerTag matches cosign's tag scheme for signatures, attestations and SBOMs.
var referrerTag = regexp.MustCompile(`^sha256-([0-9a-f]{64})(\.[A-Za-z0-9_-]+)?$`)

// Make plans p over store at now.
func Make(store Store, p Policy, now time.Time) (Plan, error) {
	if err := p.Validate(); err != nil {
		return Plan{}, err
	}
	rules := make([]compiled, len(p.Rules))
	for i, r := range p.Rules {
		rules[i], _ = r.Selector.compile()
	}
	plan := Plan{keeps: map[string]keepSet{}}
	// Blobs kept by anything: every manifest outside the delete set, in every repository.
	keptBlobs := map[string]bool{}
	deletedBlobs := map[string]int64{}
	for _, repo := range store.Repositories {
		if !inScope(p, repo.Name) {
			for _, m := range repo.Manifests {
				for _, b := range m.Blobs {
					keptBlobs[b.Digest] = true
				}
			}
			continue
		}
		plan.Repositories++
		planRepository(&plan, repo, p, rules, now, keptBlobs, deletedBlobs)
	}
	for d, size := range deletedBlobs {
		if !keptBlobs[d] {
			plan.ReclaimableBytes += size
		}
	}
	slices.SortFunc(plan.Actions, func(a, b Action) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Digest, b.Digest))
	})
	h := sha256.New()
	for _, a := range plan.Actions {
		fmt.Fprintf(h, "%s %s %s %s\n", a.Kind, a.Repository, a.Digest, strings.Join(a.Tags, ","))
	}
	plan.Hash = hex.EncodeToString(h.Sum(nil))[:16]
	plan.Sample = plan.Actions[:min(len(plan.Actions), max(0, p.SampleSize))]
	if plan.Artifacts > 0 && plan.ArtifactsToDelete*100 > p.MaxDeletionPercent*plan.Artifacts {
		plan.CeilingExceeded = true
	}
	return plan, nil
}

func inScope(p Policy, repo string) bool {
	in := false
	for _, pat := range p.Repositories {
		if access.MatchRepository(pat, repo) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, pat := range p.ExcludeRepositories {
		if access.MatchRepository(pat, repo) {
			return false
		}
	}
	return true
}

// planRepository adds one repository's actions and counts to plan.
func planRepository(plan *Plan, repo Repository, p Policy, rules []compiled, now time.Time, keptBlobs map[string]bool, deletedBlobs map[string]int64) {
	byDigest := make(map[string]*Manifest, len(repo.Manifests))
	for i := range repo.Manifests {
		byDigest[repo.Manifests[i].Digest] = &repo.Manifests[i]
	}
	// Edges: index -> children, subject -> referrers (both forms).
	isChild := map[string]bool{}
	referrers := map[string][]string{}
	for _, m := range repo.Manifests {
		for _, c := range m.Children {
			isChild[c] = true
		}
		if m.Subject != "" {
			referrers[m.Subject] = append(referrers[m.Subject], m.Digest)
		}
	}
	isReferrer := func(d string) bool { m := byDigest[d]; return m != nil && m.Subject != "" }
	var userTags []Tag
	tagsOf := map[string][]string{}
	for _, t := range repo.Tags {
		if byDigest[t.Digest] == nil {
			continue // a tag whose manifest is gone: nothing to decide
		}
		tagsOf[t.Digest] = append(tagsOf[t.Digest], t.Name)
		if m := referrerTag.FindStringSubmatch(t.Name); len(m) == 3 && byDigest["sha256:"+m[1]] != nil {
			// cosign's sha256-<subject>.sig: a referrer, kept or deleted with its subject.
			referrers["sha256:"+m[1]] = append(referrers["sha256:"+m[1]], t.Digest)
			continue
		}
		userTags = append(userTags, t)
	}
	referrerTagged := map[string]bool{}
	for _, ds := range referrers {
		for _, d := range ds {
			referrerTagged[d] = true
		}
	}

	// A manifest's pull time is its own or that of any manifest it contains (a node pulls
	// an index's platform manifest by digest).
	pulled := pullTimes(byDigest)
	// Rules keep tags.
	kept, why := keepTags(userTags, p.Rules, rules, byDigest, pulled, now)
	also := p.alsoKeep[repo.Name]
	used := p.InUse[repo.Name]
	for _, t := range userTags {
		if used.Tags[t.Name] || used.Digests[t.Digest] {
			kept[t.Name] = true
		}
		if also.tags[t.Name] && !kept[t.Name] {
			kept[t.Name] = true
			why[t.Name] = "kept by RetentionPolicy " + p.alsoKeepBy[repo.Name][t.Name]
		}
		if p.MinAge > 0 && now.Sub(t.PushedAt) < p.MinAge {
			kept[t.Name] = true
		}
		if immutable(p.ImmutableTags, repo.Name, t.Name) {
			kept[t.Name] = true
		}
	}
	plan.Tags += len(userTags)

	// Roots: digests of kept tags, and untagged top-level artifacts when kept.
	keep := map[string]bool{}
	var stack []string
	push := func(d string) {
		if !keep[d] && byDigest[d] != nil {
			keep[d] = true
			stack = append(stack, d)
		}
	}
	hasUserTag := map[string]bool{}
	for _, t := range userTags {
		hasUserTag[t.Digest] = true
		if kept[t.Name] {
			push(t.Digest)
		}
	}
	for _, m := range repo.Manifests {
		if (p.MinAge > 0 && now.Sub(m.PushedAt) < p.MinAge) || also.digests[m.Digest] || used.Digests[m.Digest] || usedAlias(used, m) {
			push(m.Digest)
		}
	}
	artifacts := map[string]bool{}
	for _, m := range repo.Manifests {
		d := m.Digest
		if hasUserTag[d] || (!isChild[d] && !isReferrer(d) && !referrerTagged[d]) {
			artifacts[d] = true
			if !hasUserTag[d] && p.KeepUntagged && !p.Unfinished[repo.Name][d] {
				push(d)
			}
		}
	}
	// Closure: children and referrers of what is kept.
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range byDigest[d].Children {
			push(c)
		}
		for _, r := range referrers[d] {
			push(r)
		}
	}

	ks := keepSet{tags: map[string]bool{}, digests: keep}
	for t, k := range kept {
		if k {
			ks.tags[t] = true
		}
	}
	plan.keeps[repo.Name] = ks

	plan.Artifacts += len(artifacts)
	for d := range artifacts {
		if keep[d] {
			plan.KeptArtifacts++
		} else {
			plan.ArtifactsToDelete++
		}
	}
	for _, t := range userTags {
		if kept[t.Name] {
			plan.KeptTags++
		} else {
			plan.TagsToRemove++
		}
	}
	// Tags removed from manifests that stay.
	untag := map[string][]string{}
	for _, t := range userTags {
		if !kept[t.Name] && keep[t.Digest] {
			untag[t.Digest] = append(untag[t.Digest], t.Name)
		}
	}
	for d, tags := range untag {
		slices.Sort(tags)
		plan.Actions = append(plan.Actions, Action{Kind: Untag, Repository: repo.Name, Digest: d, Tags: tags,
			Reason: why[tags[0]] + "; the manifest stays (kept by another tag, an index or a subject)"})
	}
	for _, m := range repo.Manifests {
		if keep[m.Digest] {
			for _, b := range m.Blobs {
				keptBlobs[b.Digest] = true
			}
			continue
		}
		plan.ManifestsToDelete++
		for _, b := range m.Blobs {
			deletedBlobs[b.Digest] = b.Size
		}
		tags := slices.Clone(tagsOf[m.Digest])
		slices.Sort(tags)
		reason := deleteReason(tags, why, artifacts[m.Digest], referrerTagged[m.Digest] || isReferrer(m.Digest))
		plan.Actions = append(plan.Actions, Action{Kind: Delete, Repository: repo.Name, Digest: m.Digest, Tags: tags, Reason: reason})
	}
}

// usedAlias: a pod runs the manifest under another name (its sha512 digest).
func usedAlias(used InUse, m Manifest) bool {
	for _, a := range m.Aliases {
		if used.Digests[a] {
			return true
		}
	}
	return false
}

func deleteReason(tags []string, why map[string]string, artifact, referrer bool) string {
	switch {
	case referrer:
		return "a referrer of a deleted manifest"
	case !artifact:
		return "a child of deleted indexes only"
	case len(tags) == 0:
		return "untagged (keepUntagged is false)"
	}
	for _, t := range tags {
		if r := why[t]; r != "" {
			return r
		}
	}
	return "no rule keeps its tags"
}

// Matcher checks a selector and returns its match function (replication filters tags
// with the same grammar).
func (s TagSelector) Matcher() (func(tag string) bool, error) {
	c, err := s.compile()
	if err != nil {
		return nil, err
	}
	return c.match, nil
}
