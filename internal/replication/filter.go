// Package replication copies artifacts between two registries for a ReplicationRule: it
// lists what the filters match at the source and copies, byte for byte, what the
// destination lacks, through go-containerregistry's client. It knows nothing of
// Kubernetes: the caller resolves endpoints and credentials and reports the Result.
package replication

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/dockyard-dev/dockyard/internal/retention"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
)

// Rule is what one run copies.
type Rule struct {
	// Repositories and Exclude are repository patterns at the source (access-rule grammar).
	Repositories, Exclude []string
	// Tags selects tags; the zero selector matches every tag.
	Tags retention.TagSelector
	// Referrers copies each artifact's referrers (OCI referrers API and cosign's
	// sha256-<hex>.sig/.att/.sbom tags).
	Referrers bool
	// Rename maps a source repository to its destination ("" skips it with an error).
	Rename func(string) string
	// PropagateDeletes removes destination tags the filters match that the source lacks.
	PropagateDeletes bool
	// Only, when set, limits the run to these source repositories (those the filters
	// select): an onPush run looks only where pushes happened, without the catalog.
	Only []string
	// OnlyTags, when set for a repository of Only, limits its run to these tags (with their
	// artifacts' other selected tags unseen): an onPush run of a tag push looks at that tag
	// without listing the repository. Deletes are not propagated for such a repository.
	OnlyTags map[string][]string
}

// Selects reports whether the rule's repository filters select a source repository.
func (r Rule) Selects(repo string) bool {
	return (&filter{rule: r}).repository(repo)
}

// filter is a Rule ready to match.
type filter struct {
	rule    Rule
	matchTg func(string) bool
}

func newFilter(r Rule) (*filter, error) {
	m, err := r.Tags.Matcher()
	if err != nil {
		return nil, fmt.Errorf("tags: %w", err)
	}
	if r.Rename == nil {
		r.Rename = func(s string) string { return s }
	}
	return &filter{rule: r, matchTg: m}, nil
}

// repository reports whether the filters select a source repository.
func (f *filter) repository(repo string) bool {
	in := false
	for _, p := range f.rule.Repositories {
		if access.MatchRepository(p, repo) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range f.rule.Exclude {
		if access.MatchRepository(p, repo) {
			return false
		}
	}
	return true
}

// tag reports whether the filters select a tag. Cosign's referrer tags are never selected
// by the tag filter: they travel with their subject when referrers are copied.
func (f *filter) tag(tag string) bool {
	return !IsReferrerTag(tag) && f.matchTg(tag)
}

// literalRepositories returns the patterns when none has a wildcard: they are then
// the repositories, and the source's catalog is not needed (registries such as Docker Hub
// have none).
func (f *filter) literalRepositories() ([]string, bool) {
	if f.rule.Only != nil {
		var out []string
		for _, p := range f.rule.Only {
			if f.repository(p) {
				out = append(out, p)
			}
		}
		return out, true
	}
	for _, p := range f.rule.Repositories {
		if strings.Contains(p, "*") {
			return nil, false
		}
	}
	var out []string
	for _, p := range f.rule.Repositories {
		if f.repository(p) {
			out = append(out, p)
		}
	}
	return out, true
}

var referrerTag = regexp.MustCompile(`^sha256-[a-f0-9]{64}(\.(sig|att|sbom))?$`)

// IsReferrerTag reports a tag that stands for a referrer of another artifact: cosign's
// sha256-<hex>.sig/.att/.sbom, and the OCI referrers fallback tag sha256-<hex>.
func IsReferrerTag(tag string) bool { return referrerTag.MatchString(tag) }

// referrerTagsOf lists the cosign tags that would name referrers of digest.
func referrerTagsOf(digest string) []string {
	h := strings.Replace(digest, ":", "-", 1)
	return []string{h + ".sig", h + ".att", h + ".sbom"}
}
