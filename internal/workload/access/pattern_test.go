package access

import "testing"

func TestMatchRepository(t *testing.T) {
	for _, tc := range []struct {
		pattern, repo string
		want          bool
	}{
		{"**", "a", true},
		{"**", "a/b/c", true},
		{"team-a/*", "team-a/app", true},
		{"team-a/*", "team-a/app/sub", false},
		{"team-a/*", "team-a", false},
		{"team-a/**", "team-a", true},
		{"team-a/**", "team-a/app", true},
		{"team-a/**", "team-a/app/sub/x", true},
		{"team-a/**", "team-ab/app", false},
		{"team-*/app", "team-b/app", true},
		{"team-*/app", "team-b/other", false},
		{"*-prod", "web-prod", true},
		{"*-prod", "web-prod/x", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*a", "a", false},
		{"**/cache", "x/y/cache", true},
		{"**/cache", "cache", true},
		{"**/cache", "x/cache/y", false},
		{"a/**/z", "a/z", true},
		{"a/**/z", "a/b/c/z", true},
		{"exact/name", "exact/name", true},
		{"exact/name", "exact/names", false},
	} {
		if got := MatchRepository(tc.pattern, tc.repo); got != tc.want {
			t.Errorf("MatchRepository(%q, %q) = %v, want %v", tc.pattern, tc.repo, got, tc.want)
		}
	}
}
