package retention

import (
	"fmt"
	"testing"
	"time"
)

// synthetic is a store of repos repositories with tags tags each: every tag its own image
// (a unique layer and a base layer shared by all), every fifth image signed (an OCI 1.1
// referrer), and one multi-arch index per repository.
func synthetic(repos, tags int) Store {
	s := Store{Repositories: make([]Repository, 0, repos)}
	for r := range repos {
		repo := Repository{Name: fmt.Sprintf("team-%d/app-%d", r%50, r)}
		for t := range tags {
			n := fmt.Sprintf("%d/%d", r, t)
			age := time.Duration(t) * time.Hour
			repo.Manifests = append(repo.Manifests, img(n, age))
			name := fmt.Sprintf("main-%d", t)
			if t%10 == 0 {
				name = fmt.Sprintf("v1.%d.0", t)
			}
			repo.Tags = append(repo.Tags, tag(name, n, age))
			if t%5 == 0 {
				repo.Manifests = append(repo.Manifests, Manifest{Digest: dg(n + "-sig"), PushedAt: t0, Subject: dg(n)})
			}
		}
		idx := Manifest{Digest: dg(fmt.Sprintf("%d-idx", r)), PushedAt: t0, Children: []string{dg(fmt.Sprintf("%d/0", r)), dg(fmt.Sprintf("%d/1", r))}}
		repo.Manifests = append(repo.Manifests, idx)
		repo.Tags = append(repo.Tags, Tag{Name: "multi", Digest: idx.Digest, PushedAt: t0})
		s.Repositories = append(s.Repositories, repo)
	}
	return s
}

// BenchmarkPlan plans "keep the last 10 main-* and every semver release" over stores of
// growing size; 2,000 repositories x 25 tags is the 50,000-tag case.
func BenchmarkPlan(b *testing.B) {
	p := policy(Rule{Selector: TagSelector{Glob: "main-*"}, KeepLast: 10}, Rule{Selector: TagSelector{Semver: ">=1"}},
		Rule{Selector: TagSelector{Glob: "multi"}})
	p.SampleSize = 50
	for _, size := range []struct{ repos, tags int }{{400, 25}, {1000, 25}, {2000, 25}, {4000, 25}} {
		store := synthetic(size.repos, size.tags)
		b.Run(fmt.Sprintf("tags=%d", size.repos*size.tags), func(b *testing.B) {
			b.ReportAllocs()
			var plan Plan
			for b.Loop() {
				var err error
				if plan, err = Make(store, p, t0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(plan.ArtifactsToDelete), "deleted")
		})
	}
}
