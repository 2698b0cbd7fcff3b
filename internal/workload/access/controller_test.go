package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/distribution/distribution/v3/registry/auth"
	"golang.org/x/crypto/bcrypt"

	rc "github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func TestAllowed(t *testing.T) {
	rules := []rc.AccessRule{
		{Subjects: []rc.Subject{{Kind: rc.SubjectGroup, Name: "team-a"}}, Repositories: []string{"team-a/**"}, Role: rc.RoleManager},
		{Subjects: []rc.Subject{{Kind: rc.SubjectGroup, Name: "all"}}, Repositories: []string{"**"}, Role: rc.RoleViewer},
		{Subjects: []rc.Subject{{Kind: rc.SubjectUser, Name: "ci"}}, Repositories: []string{"*/cache"}, Role: rc.RoleManager},
	}
	alice := Identity{User: "alice", Groups: []string{"team-a", "all"}}
	bob := Identity{User: "bob", Groups: []string{"all"}}
	ci := Identity{User: "ci"}
	anon := Identity{}
	for _, tc := range []struct {
		name      string
		access    []rc.AccessRule
		anonPull  bool
		id        Identity
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
		{"no group no rule", rules, false, Identity{User: "zed"}, "team-a/app", ActionPull, false},
		{"anonymous refused", rules, false, anon, "team-a/app", ActionPull, false},
		{"anonymous pull on", rules, true, anon, "team-a/app", ActionPull, true},
		{"anonymous push with pull on", rules, true, anon, "team-a/app", ActionPush, false},
		{"anon pull covers users", rules, true, Identity{User: "zed"}, "x", ActionPull, true},
		{"empty rules: htpasswd users are Managers", nil, false, Identity{User: "zed", Provider: ProviderHtpasswd}, "any/repo", ActionDelete, true},
		{"empty rules: LDAP users get nothing", nil, false, Identity{User: "zed", Provider: ProviderLDAP}, "any/repo", ActionPull, false},
		{"empty rules: OIDC users get nothing", nil, false, Identity{User: "zed", Provider: ProviderOIDC}, "any/repo", ActionPull, false},
		{"empty rules anonymous", nil, false, anon, "any/repo", ActionPull, false},
	} {
		c := &Controller{cfg: rc.Auth{Access: tc.access, AnonymousPull: tc.anonPull}}
		if got, _, _ := c.allowed(context.Background(), tc.id, tc.repo, tc.act); got != tc.want {
			t.Errorf("%s: allowed(%q, %q, %q) = %v, want %v", tc.name, tc.id.User, tc.repo, tc.act, got, tc.want)
		}
	}
}

func TestDummyCostFollowsUsersCosts(t *testing.T) {
	c := &Controller{cacheKey: []byte("k")}
	// Every real user has a cheap hash: unknown names must be checked as cheaply, or the
	// time of a failed login tells whether the name exists.
	cheap := &Users{costs: []int{4, 4, 4}}
	mixed := &Users{costs: []int{4, 4, 4, 12}}
	seen := map[int]int{}
	for i := range 400 {
		name := fmt.Sprintf("user-%d", i)
		if got := c.dummyCost(cheap, name); got != 4 {
			t.Fatalf("dummyCost(%s) with only cost-4 users = %d, want 4", name, got)
		}
		got := c.dummyCost(mixed, name)
		if got != 4 && got != 12 {
			t.Fatalf("dummyCost(%s) = %d, not a cost any user has", name, got)
		}
		if again := c.dummyCost(mixed, name); again != got {
			t.Fatalf("dummyCost(%s) not deterministic: %d then %d", name, got, again)
		}
		seen[got]++
	}
	// About a quarter of unknown names look like the cost-12 user.
	if seen[12] < 60 || seen[12] > 140 {
		t.Errorf("cost-12 share = %d/400, want about 100", seen[12])
	}
	if got := c.dummyCost(&Users{}, "x"); got != bcrypt.DefaultCost {
		t.Errorf("no users: cost %d, want the default %d", got, bcrypt.DefaultCost)
	}
	if h := c.dummyHashOnce(t, 4); bcryptCost(h) != 4 {
		t.Errorf("dummy hash cost = %d, want 4", bcryptCost(h))
	}
}

func (c *Controller) dummyHashOnce(t *testing.T, cost int) []byte {
	t.Helper()
	if c.dummies == nil {
		c.dummies = map[int][]byte{}
	}
	a, b := c.dummyHash(cost), c.dummyHash(cost)
	if string(a) != string(b) {
		t.Error("dummy hash regenerated")
	}
	return a
}

func bcryptCost(h []byte) int { c, _ := bcrypt.Cost(h); return c }

func TestEmptyBasicCredentialsAreAnonymous(t *testing.T) {
	for _, anonPull := range []bool{true, false} {
		c := &Controller{cfg: rc.Auth{AnonymousPull: anonPull, Realm: "r"}}
		c.users.Store(&Users{hashes: map[string][]byte{}})
		req := func(action string) error {
			r := httptest.NewRequest(http.MethodGet, "/v2/a/manifests/latest", nil)
			r.Header.Set("Authorization", "Basic Og==") // ":" — what podman and skopeo send
			_, err := c.Authorized(r, auth.Access{Resource: auth.Resource{Type: "repository", Name: "a"}, Action: action})
			return err
		}
		if err := req(ActionPull); (err == nil) != anonPull {
			t.Errorf("anonymousPull=%v: pull with empty credentials: err %v", anonPull, err)
		}
		if err := req(ActionPush); err == nil {
			t.Errorf("anonymousPull=%v: push with empty credentials allowed", anonPull)
		}
	}
}

// One request's credentials are checked once, however many layers ask.
func TestAuthMemoChecksOncePerRequest(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	c := &Controller{cfg: rc.Auth{Realm: "r"}, cacheKey: []byte("k"), dummies: map[int][]byte{}, verified: map[string][32]byte{}, audit: newAudit(slog.New(slog.DiscardHandler))}
	c.users.Store(&Users{hashes: map[string][]byte{"alice": hash}, costs: []int{bcrypt.MinCost}})
	r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	r.SetBasicAuth("alice", "wrong")
	r = WithAuthMemo(r)
	_, err1 := c.authenticate(r)
	m := r.Context().Value(authMemoKey{}).(*authMemo)
	m.err = errors.New("remembered") // a second check would not see this
	_, err2 := c.authenticate(r)
	if err1 == nil || err2 == nil || err2.Error() != "remembered" {
		t.Fatalf("first %v, second %v: want the second answered from the memo", err1, err2)
	}
	r.SetBasicAuth("alice", "pw") // different credentials on the same request: checked again
	if id, err := c.authenticate(r); err != nil || id.User != "alice" {
		t.Errorf("new credentials: %v %v", id, err)
	}
}
