package replication

import (
	"slices"
	"strings"
	"testing"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/retention"
)

func TestFilter(t *testing.T) {
	f, err := newFilter(Rule{Repositories: []string{"team-a/**", "library/nginx"}, Exclude: []string{"team-a/tmp/**"},
		Tags: retention.TagSelector{Semver: ">=1.0.0"}})
	if err != nil {
		t.Fatal(err)
	}
	for repo, want := range map[string]bool{
		"team-a": true, "team-a/app": true, "team-a/tmp/x": false, "team-a/tmp": false,
		"library/nginx": true, "library/nginx/sub": false, "team-b/app": false,
	} {
		if got := f.repository(repo); got != want {
			t.Errorf("repository %q: %v, want %v", repo, got, want)
		}
	}
	sig := "sha256-" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for tag, want := range map[string]bool{
		"1.0.0": true, "v2.3.4": true, "0.9.0": false, "latest": false, sig + ".sig": false, sig: false,
	} {
		if got := f.tag(tag); got != want {
			t.Errorf("tag %q: %v, want %v", tag, got, want)
		}
	}
	if _, ok := f.literalRepositories(); ok {
		t.Error("team-a/** is not literal")
	}
	lit, _ := newFilter(Rule{Repositories: []string{"library/nginx", "library/alpine"}, Exclude: []string{"library/alpine"}})
	if repos, ok := lit.literalRepositories(); !ok || !slices.Equal(repos, []string{"library/nginx"}) {
		t.Errorf("literal repositories: %v %v", repos, ok)
	}
	only, _ := newFilter(Rule{Repositories: []string{"team-a/**"}, Only: []string{"team-a/app", "team-b/app"}})
	if repos, ok := only.literalRepositories(); !ok || !slices.Equal(repos, []string{"team-a/app"}) {
		t.Errorf("only: %v %v", repos, ok)
	}
	if !(Rule{Repositories: []string{"team-a/**"}}).Selects("team-a/x") || (Rule{Repositories: []string{"team-a/**"}, Exclude: []string{"team-a/x"}}).Selects("team-a/x") {
		t.Error("Selects")
	}
	if _, err := newFilter(Rule{Tags: retention.TagSelector{Regex: "v(["}}); err == nil {
		t.Error("a bad regex was accepted")
	}
}

func TestReferrerTags(t *testing.T) {
	d := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tag := range referrerTagsOf(d) {
		if !IsReferrerTag(tag) {
			t.Errorf("%s is not recognised as a referrer tag", tag)
		}
	}
	for _, tag := range []string{"sha256-abc.sig", "sha256-" + d[7:] + ".exe", "v1"} {
		if IsReferrerTag(tag) {
			t.Errorf("%s recognised as a referrer tag", tag)
		}
	}
}

func TestDestinationRepository(t *testing.T) {
	rule := func(d *v1alpha1.ReplicationDestination) *v1alpha1.ReplicationRule {
		return &v1alpha1.ReplicationRule{Spec: v1alpha1.ReplicationRuleSpec{Destination: d}}
	}
	for _, tc := range []struct {
		d        *v1alpha1.ReplicationDestination
		src, dst string
	}{
		{nil, "library/nginx", "library/nginx"},
		{&v1alpha1.ReplicationDestination{Prefix: "dockerhub"}, "library/nginx", "dockerhub/library/nginx"},
		{&v1alpha1.ReplicationDestination{Prefix: "prod", StripSegments: 1}, "team-a/app", "prod/app"},
		{&v1alpha1.ReplicationDestination{StripSegments: 1}, "team-a/app/api", "app/api"},
		{&v1alpha1.ReplicationDestination{StripSegments: 2}, "team-a/app", ""},
	} {
		if got := rule(tc.d).DestinationRepository(tc.src); got != tc.dst {
			t.Errorf("%+v %s: %q, want %q", tc.d, tc.src, got, tc.dst)
		}
	}
}

func TestCollisionsAreNotCopied(t *testing.T) {
	f, _ := newFilter(Rule{Repositories: []string{"**"}, Rename: func(s string) string {
		if i := strings.Index(s, "/"); i >= 0 {
			return s[i+1:]
		}
		return s
	}})
	r := &run{f: f}
	got := r.dropCollisions([]string{"team-a/app", "team-b/app", "team-a/web"})
	if !slices.Equal(got, []string{"team-a/web"}) || r.res.Failed != 2 || len(r.res.Errors) != 2 ||
		!strings.Contains(r.res.Errors[0], "team-b/app to app too") {
		t.Errorf("kept %v, result %+v", got, r.res)
	}
}
