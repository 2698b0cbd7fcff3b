package access

import (
	"testing"

	rc "github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func TestAllowed(t *testing.T) {
	rules := []rc.AccessRule{
		{Subjects: []rc.Subject{{Kind: rc.SubjectGroup, Name: "team-a"}}, Repositories: []string{"team-a/**"}, Role: rc.RoleManager},
		{Subjects: []rc.Subject{{Kind: rc.SubjectGroup, Name: "all"}}, Repositories: []string{"**"}, Role: rc.RoleViewer},
		{Subjects: []rc.Subject{{Kind: rc.SubjectUser, Name: "ci"}}, Repositories: []string{"*/cache"}, Role: rc.RoleManager},
	}
	alice := identity{user: "alice", groups: []string{"team-a", "all"}}
	bob := identity{user: "bob", groups: []string{"all"}}
	ci := identity{user: "ci"}
	anon := identity{}
	for _, tc := range []struct {
		name      string
		access    []rc.AccessRule
		anonPull  bool
		id        identity
		repo, act string
		want      bool
	}{
		{"manager push own", rules, false, alice, "team-a/app", ActionPush, true},
		{"manager delete own", rules, false, alice, "team-a/x/y", ActionDelete, true},
		{"manager push other", rules, false, alice, "team-b/app", ActionPush, false},
		{"viewer pull any", rules, false, bob, "team-b/app", ActionPull, true},
		{"viewer push", rules, false, bob, "team-a/app", ActionPush, false},
		{"viewer delete", rules, false, bob, "team-a/app", ActionDelete, false},
		{"user rule", rules, false, ci, "x/cache", ActionPush, true},
		{"user rule depth", rules, false, ci, "x/y/cache", ActionPush, false},
		{"no group no rule", rules, false, identity{user: "zed"}, "team-a/app", ActionPull, false},
		{"anonymous refused", rules, false, anon, "team-a/app", ActionPull, false},
		{"anonymous pull on", rules, true, anon, "team-a/app", ActionPull, true},
		{"anonymous push with pull on", rules, true, anon, "team-a/app", ActionPush, false},
		{"anon pull covers users", rules, true, identity{user: "zed"}, "x", ActionPull, true},
		{"empty rules manager", nil, false, identity{user: "zed"}, "any/repo", ActionDelete, true},
		{"empty rules anonymous", nil, false, anon, "any/repo", ActionPull, false},
	} {
		c := &Controller{cfg: rc.Auth{Access: tc.access, AnonymousPull: tc.anonPull}}
		if got := c.allowed(tc.id, tc.repo, tc.act); got != tc.want {
			t.Errorf("%s: allowed(%q, %q, %q) = %v, want %v", tc.name, tc.id.user, tc.repo, tc.act, got, tc.want)
		}
	}
}
