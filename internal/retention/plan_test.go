package retention

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// dg makes a distinct sha256 digest for a name.
func dg(name string) string {
	return fmt.Sprintf("sha256:%064x", []byte(name + strings.Repeat("_", 32))[:32])
}

// img is an image manifest pushed age ago with one unique layer and a shared base layer.
func img(name string, age time.Duration) Manifest {
	return Manifest{Digest: dg(name), PushedAt: t0.Add(-age), Blobs: []Blob{
		{Digest: dg(name + "-manifest"), Size: 1}, {Digest: dg(name + "-layer"), Size: 100}, {Digest: dg("base"), Size: 1000}}}
}

func tag(name, manifest string, age time.Duration) Tag {
	return Tag{Name: name, Digest: dg(manifest), PushedAt: t0.Add(-age)}
}

// actions renders a plan's actions as "Kind repo digest-name tags" with digests shortened
// to the names they were made from.
func actions(p Plan, names ...string) []string {
	short := map[string]string{}
	for _, n := range names {
		short[dg(n)] = n
	}
	var out []string
	for _, a := range p.Actions {
		out = append(out, fmt.Sprintf("%s %s %s %s", a.Kind, a.Repository, short[a.Digest], strings.Join(a.Tags, ",")))
	}
	return out
}

func policy(rules ...Rule) Policy {
	for i := range rules {
		rules[i].Name = fmt.Sprintf("rules[%d]", i)
	}
	return Policy{Repositories: []string{"**"}, Rules: rules, MaxDeletionPercent: 100, SampleSize: 5}
}

func mustPlan(t *testing.T, s Store, p Policy) Plan {
	t.Helper()
	plan, err := Make(s, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func TestIndependentBudgetsPerRule(t *testing.T) {
	repo := Repository{Name: "team-a/app"}
	var names []string
	for i := 1; i <= 12; i++ {
		n := fmt.Sprintf("main-%d", i)
		names = append(names, n)
		repo.Manifests = append(repo.Manifests, img(n, time.Duration(13-i)*time.Hour))
		repo.Tags = append(repo.Tags, tag(n, n, time.Duration(13-i)*time.Hour))
	}
	for _, v := range []string{"v1.0.0", "v1.1.0", "v2.0.0"} {
		names = append(names, v)
		repo.Manifests = append(repo.Manifests, img(v, 1000*time.Hour))
		repo.Tags = append(repo.Tags, tag(v, v, 1000*time.Hour))
	}
	// "Keep the last 10 main-* and every v* release": the old releases never eat the
	// main-* budget, and the main-* tags never push a release out.
	plan := mustPlan(t, Store{[]Repository{repo}}, policy(Rule{Selector: TagSelector{Glob: "main-*"}, KeepLast: 10}, Rule{Selector: TagSelector{Glob: "v*"}}))
	got := actions(plan, names...)
	want := []string{"Delete team-a/app main-1 main-1", "Delete team-a/app main-2 main-2"}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("actions = %q, want %q", got, want)
	}
	if plan.Artifacts != 15 || plan.ArtifactsToDelete != 2 || plan.KeptArtifacts != 13 || plan.Tags != 15 || plan.TagsToRemove != 2 {
		t.Errorf("counts = %+v", plan)
	}
	if r := plan.Actions[0].Reason; !strings.Contains(r, "rules[0]: number 1") || !strings.Contains(r, "keepLast 10") {
		t.Errorf("reason = %q, want the rule and the missed condition", r)
	}
	// Each deleted image frees its own manifest and layer; the shared base stays.
	if plan.ReclaimableBytes != 2*101 {
		t.Errorf("reclaimable = %d, want 202", plan.ReclaimableBytes)
	}
}

func TestSelectors(t *testing.T) {
	tags := []string{"1.1.0", "1.2.0", "1.5.3", "2.0.0", "latest", "release-7", "release-7-hotfix", "v1.3.0"}
	for _, tc := range []struct {
		sel  TagSelector
		keep []string
	}{
		{TagSelector{Semver: ">=1.2.0 <2"}, []string{"1.2.0", "1.5.3", "v1.3.0"}},
		{TagSelector{Regex: `release-[0-9]+`}, []string{"release-7"}}, // anchored: not the hotfix
		{TagSelector{Glob: "release-*"}, []string{"release-7", "release-7-hotfix"}},
		{TagSelector{Glob: "*.*.*", Semver: "<1.2"}, []string{"1.1.0"}},
		{TagSelector{}, tags},
	} {
		c, err := tc.sel.compile()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tg := range tags {
			if c.match(tg) {
				got = append(got, tg)
			}
		}
		if !slices.Equal(got, tc.keep) {
			t.Errorf("%+v matches %q, want %q", tc.sel, got, tc.keep)
		}
	}
	for _, bad := range []TagSelector{{Regex: "("}, {Semver: ">=banana"}, {Glob: "["}} {
		if err := (Policy{Rules: []Rule{{Selector: bad}}}).Validate(); err == nil {
			t.Errorf("%+v must be refused", bad)
		}
	}
}

func TestIndexesAndReferrers(t *testing.T) {
	idxOld := Manifest{Digest: dg("idx-old"), PushedAt: t0.Add(-48 * time.Hour), Children: []string{dg("amd64-old"), dg("shared")}}
	idxNew := Manifest{Digest: dg("idx-new"), PushedAt: t0.Add(-time.Hour), Children: []string{dg("amd64-new"), dg("shared")}}
	sigNew := Manifest{Digest: dg("sig-new"), PushedAt: t0, Subject: dg("idx-new")}
	sbomOld := Manifest{Digest: dg("sbom-old"), PushedAt: t0, Subject: dg("idx-old")}
	cosignOld := img("cosign-old", 0)
	repo := Repository{Name: "team-a/app",
		Manifests: []Manifest{idxOld, idxNew, img("amd64-old", 48*time.Hour), img("amd64-new", time.Hour), img("shared", 48*time.Hour), sigNew, sbomOld, cosignOld},
		Tags: []Tag{tag("old", "idx-old", 48*time.Hour), tag("new", "idx-new", time.Hour),
			{Name: "sha256-" + strings.TrimPrefix(dg("idx-old"), "sha256:") + ".sig", Digest: dg("cosign-old"), PushedAt: t0}},
	}
	plan := mustPlan(t, Store{[]Repository{repo}}, policy(Rule{KeepLast: 1}))
	got := actions(plan, "idx-old", "amd64-old", "sbom-old", "cosign-old")
	slices.Sort(got)
	want := []string{
		"Delete team-a/app amd64-old ",
		"Delete team-a/app cosign-old sha256-" + strings.TrimPrefix(dg("idx-old"), "sha256:") + ".sig",
		"Delete team-a/app idx-old old",
		"Delete team-a/app sbom-old ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("actions = %q\nwant %q", got, want)
	}
	// Two artifacts (the indexes); children and referrers go with them but are not counted
	// as artifacts; the cosign tag is not a user tag.
	if plan.Artifacts != 2 || plan.ArtifactsToDelete != 1 || plan.Tags != 2 || plan.ManifestsToDelete != 4 {
		t.Errorf("counts = %+v", plan)
	}
	for _, a := range plan.Actions {
		if a.Digest == dg("amd64-old") && a.Reason != "a child of deleted indexes only" {
			t.Errorf("child reason = %q", a.Reason)
		}
		if a.Digest == dg("sbom-old") && a.Reason != "a referrer of a deleted manifest" {
			t.Errorf("referrer reason = %q", a.Reason)
		}
	}
}

func TestAnExpiredTagOfAKeptDigestIsOnlyUntagged(t *testing.T) {
	repo := Repository{Name: "r", Manifests: []Manifest{img("a", time.Hour)},
		Tags: []Tag{tag("v1.0.0", "a", time.Hour), tag("build-41", "a", time.Hour)}}
	plan := mustPlan(t, Store{[]Repository{repo}}, policy(Rule{Selector: TagSelector{Semver: ">=1"}}))
	if got := actions(plan, "a"); !slices.Equal(got, []string{"Untag r a build-41"}) {
		t.Errorf("actions = %q", got)
	}
	if plan.ArtifactsToDelete != 0 || plan.ReclaimableBytes != 0 {
		t.Errorf("nothing is deleted: %+v", plan)
	}
}

func TestUntaggedPulledScopeAndCeiling(t *testing.T) {
	pulled := img("pulled", 100*time.Hour)
	pulled.PulledAt = t0.Add(-time.Hour)
	store := Store{[]Repository{
		{Name: "team-a/app", Manifests: []Manifest{img("dangling", 5*time.Hour), pulled, img("cold", 100*time.Hour)},
			Tags: []Tag{tag("p", "pulled", 100*time.Hour), tag("c", "cold", 100*time.Hour)}},
		// Out of scope, and shares the cold image's layer: that layer is not reclaimable.
		{Name: "infra/base", Manifests: []Manifest{img("cold", 100*time.Hour)}, Tags: []Tag{tag("c", "cold", 0)}},
	}}
	p := policy(Rule{PulledWithin: 24 * time.Hour})
	p.Repositories = []string{"team-a/**"}
	plan := mustPlan(t, store, p)
	got := actions(plan, "dangling", "cold")
	slices.Sort(got)
	if want := []string{"Delete team-a/app cold c", "Delete team-a/app dangling "}; !slices.Equal(got, want) {
		t.Errorf("actions = %q, want %q", got, want)
	}
	if plan.Repositories != 1 || plan.ReclaimableBytes != 101 {
		t.Errorf("repositories %d, reclaimable %d (want 1, 101: only the dangling image's own blobs)", plan.Repositories, plan.ReclaimableBytes)
	}
	if plan.CeilingExceeded {
		t.Error("a 100% ceiling is never exceeded")
	}
	// 2 of 3 artifacts: over a 50% ceiling.
	p.MaxDeletionPercent = 50
	if plan := mustPlan(t, store, p); !plan.CeilingExceeded {
		t.Error("ceiling 50%: exceeded")
	}
	p.KeepUntagged = true
	p.MaxDeletionPercent = 50
	if plan := mustPlan(t, store, p); plan.CeilingExceeded || plan.ArtifactsToDelete != 1 {
		t.Errorf("keepUntagged: 1 of 3 deleted, within the ceiling: %+v", plan)
	}
	p.ExcludeRepositories = []string{"team-a/app"}
	if plan := mustPlan(t, store, p); len(plan.Actions) != 0 || plan.Repositories != 0 {
		t.Errorf("an excluded repository is untouched: %+v", plan.Actions)
	}
}

func TestPlanIsStable(t *testing.T) {
	var repos []Repository
	for i := range 5 {
		r := Repository{Name: fmt.Sprintf("r%d", i)}
		for j := range 5 {
			n := fmt.Sprintf("%d-%d", i, j)
			r.Manifests = append(r.Manifests, img(n, time.Duration(j)*time.Hour))
			r.Tags = append(r.Tags, tag("t"+n, n, time.Duration(j)*time.Hour))
		}
		repos = append(repos, r)
	}
	p := policy(Rule{KeepLast: 2})
	a := mustPlan(t, Store{repos}, p)
	slices.Reverse(repos)
	for i := range repos {
		slices.Reverse(repos[i].Manifests)
		slices.Reverse(repos[i].Tags)
	}
	b := mustPlan(t, Store{repos}, p)
	if a.Hash != b.Hash || len(a.Actions) != 15 || len(a.Sample) != 5 {
		t.Errorf("hash %s vs %s, %d actions, sample %d", a.Hash, b.Hash, len(a.Actions), len(a.Sample))
	}
}

func TestMinAgeAndPullsOfChildren(t *testing.T) {
	// A multi-arch push in progress: the platform manifests are up, untagged, the index
	// not yet; a signature arrived before its subject. Nothing of it may go.
	child := img("platform", 5*time.Minute)
	sig := Manifest{Digest: dg("early-sig"), PushedAt: t0.Add(-time.Minute), Subject: dg("not-yet")}
	// An index pulled only through its platform manifest (a node pulls by digest).
	idx := Manifest{Digest: dg("idx"), PushedAt: t0.Add(-100 * time.Hour), Children: []string{dg("arm64")}}
	arm := img("arm64", 100*time.Hour)
	arm.PulledAt = t0.Add(-time.Hour)
	repo := Repository{Name: "r", Manifests: []Manifest{child, sig, idx, arm, img("old", 100*time.Hour)},
		Tags: []Tag{tag("multi", "idx", 100*time.Hour), tag("stale", "old", 100*time.Hour)}}
	p := policy(Rule{PulledWithin: 24 * time.Hour})
	p.MinAge = time.Hour
	plan := mustPlan(t, Store{[]Repository{repo}}, p)
	got := actions(plan, "old")
	if want := []string{"Delete r old stale"}; !slices.Equal(got, want) {
		t.Errorf("actions = %q, want %q (young manifests and the index pulled through its child stay)", got, want)
	}
	p.MinAge = 0
	plan = mustPlan(t, Store{[]Repository{repo}}, p)
	if plan.ManifestsToDelete != 3 {
		t.Errorf("without minAge the in-flight manifests are fair game: %d deleted, want 3", plan.ManifestsToDelete)
	}
}

func TestImmutableTagsAreKept(t *testing.T) {
	repo := Repository{Name: "apps/api", Manifests: []Manifest{img("a", 100*time.Hour), img("b", 90*time.Hour), img("c", time.Hour)},
		Tags: []Tag{tag("v1.0.0", "a", 100*time.Hour), tag("build-1", "b", 90*time.Hour), tag("build-2", "c", time.Hour)}}
	p := policy(Rule{KeepLast: 1})
	p.ImmutableTags = []registryconfig.ImmutableTagRule{{Repositories: []string{"apps/**"}, Tags: []string{"v*"}}}
	plan := mustPlan(t, Store{[]Repository{repo}}, p)
	if got := actions(plan, "a", "b", "c"); !slices.Equal(got, []string{"Delete apps/api b build-1"}) {
		t.Errorf("actions = %q: an immutable tag is never deleted, whatever the rules", got)
	}
}

// Several policies of one registry: what any keeps survives, even a DryRun one's, and only
// in that policy's own scope.
func TestPoliciesCombine(t *testing.T) {
	app := Repository{Name: "team-a/app"}
	other := Repository{Name: "team-b/app"}
	var names []string
	for i := 1; i <= 4; i++ {
		n := fmt.Sprintf("b%d", i)
		names = append(names, n)
		age := time.Duration(10-i) * time.Hour
		app.Manifests = append(app.Manifests, img(n, age))
		app.Tags = append(app.Tags, tag(n, n, age))
		other.Manifests = append(other.Manifests, img(n, age))
		other.Tags = append(other.Tags, tag(n, n, age))
	}
	// b1 also carries a "keep" tag that only the second policy's rule keeps.
	app.Tags = append(app.Tags, tag("stable", "b1", 9*time.Hour))
	store := Store{[]Repository{app, other}}
	target := policy(Rule{KeepLast: 1})
	keeper := policy(Rule{Selector: TagSelector{Glob: "stable"}}, Rule{KeepLast: 3})
	keeper.Repositories = []string{"team-a/**"}

	alone := mustPlan(t, store, target)
	if alone.ArtifactsToDelete != 6 {
		t.Fatalf("target alone deletes %d artifacts, want 6: %v", alone.ArtifactsToDelete, actions(alone, names...))
	}
	both, err := MakeAll(store, target, []Policy{keeper}, []string{"keeper"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	got := actions(both, names...)
	want := []string{
		// team-a/app: keeper keeps the newest three and stable -> b1 is kept, only its own tag goes.
		"Untag team-a/app b1 b1",
		// team-b/app is outside keeper's scope: target alone decides.
		"Delete team-b/app b1 b1", "Delete team-b/app b2 b2", "Delete team-b/app b3 b3",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("combined actions:\n got %q\nwant %q", got, want)
	}
	if both.KeptArtifacts != 4+1 || both.ArtifactsToDelete != 3 {
		t.Errorf("counts: kept %d, to delete %d; want 5 and 3", both.KeptArtifacts, both.ArtifactsToDelete)
	}
	if _, err := MakeAll(store, target, []Policy{policy(Rule{Selector: TagSelector{Regex: "("}})}, []string{"broken"}, t0); err == nil || !strings.Contains(err.Error(), "policy broken") {
		t.Fatalf("an invalid other policy: err %v, want one naming it (deleting without it would ignore what it keeps)", err)
	}
}

// A run interrupted after deleting an index leaves its platform manifests untagged; the
// journal names them and the next run finishes, even when untagged artifacts are kept.
func TestUnfinishedDeletionsAreFinished(t *testing.T) {
	repo := Repository{Name: "app"}
	repo.Manifests = []Manifest{img("amd64", 50*time.Hour), img("arm64", 50*time.Hour), img("untagged", 50*time.Hour)}
	p := policy(Rule{KeepLast: 1})
	p.KeepUntagged = true
	if plan := mustPlan(t, Store{[]Repository{repo}}, p); len(plan.Actions) != 0 {
		t.Fatalf("untagged artifacts are kept: %v", actions(plan, "amd64", "arm64", "untagged"))
	}
	p.Unfinished = map[string]map[string]bool{"app": {dg("amd64"): true, dg("arm64"): true}}
	got := actions(mustPlan(t, Store{[]Repository{repo}}, p), "amd64", "arm64", "untagged")
	want := []string{"Delete app amd64 ", "Delete app arm64 "}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A journaled manifest something keeps again (a new tag) stays.
	repo.Tags = []Tag{tag("again", "amd64", time.Minute)}
	got = actions(mustPlan(t, Store{[]Repository{repo}}, p), "amd64", "arm64", "untagged")
	if !slices.Equal(got, []string{"Delete app arm64 "}) {
		t.Fatalf("got %q", got)
	}
}

// Images pods use are kept however old: by digest (a running pod's image ID, also when
// the tag moved since) and by tag (a pod not started yet).
func TestImagesInUseAreKept(t *testing.T) {
	repo := Repository{Name: "app"}
	names := []string{"old-1", "old-2", "old-3", "new"}
	for _, n := range names {
		repo.Manifests = append(repo.Manifests, img(n, 100*time.Hour))
	}
	repo.Tags = []Tag{tag("old-2", "old-2", 100*time.Hour), tag("old-3", "old-3", 100*time.Hour), tag("latest", "new", 100*time.Hour)}
	p := policy(Rule{Selector: TagSelector{Glob: "latest"}})
	p.InUse = map[string]InUse{"app": {Digests: map[string]bool{dg("old-1"): true}, Tags: map[string]bool{"old-2": true}}}
	got := actions(mustPlan(t, Store{[]Repository{repo}}, p), names...)
	if !slices.Equal(got, []string{"Delete app old-3 old-3"}) {
		t.Fatalf("got %q: the untagged old-1 a pod runs and the old-2 tag a pod names must stay", got)
	}
}
