package access

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture/slapd"
)

// fakeClock is a settable clock for cache expiry.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// ldapFixture starts slapd with alice (team-a, all), bob (all) and a user whose name is a
// filter-injection attempt, and returns the LDAP section of an auth config for it.
func ldapFixture(t *testing.T) (*slapd.Server, registryconfig.LDAP) {
	t.Helper()
	s := slapd.Start(t)
	s.AddUser("alice", "alice-ldap")
	s.AddUser("bob", "bob-ldap")
	s.AddGroup("team-a", "alice")
	s.AddGroup("all", "alice", "bob")
	pw := filepath.Join(t.TempDir(), "bind-password")
	if err := os.WriteFile(pw, []byte(slapd.BindPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := registryconfig.LDAP{
		URLs:             []string{s.LDAPSURL},
		CAFile:           s.CAFile,
		BindDN:           slapd.BindDN,
		BindPasswordFile: pw,
		UserSearch:       registryconfig.LDAPUserSearch{BaseDN: slapd.PeopleDN},
		GroupSearch:      &registryconfig.LDAPGroupSearch{BaseDN: slapd.GroupsDN},
	}
	return s, cfg
}

func newLDAPController(t *testing.T, l registryconfig.LDAP, mutate func(*registryconfig.Auth)) *Controller {
	t.Helper()
	c := &registryconfig.Config{APIVersion: registryconfig.APIVersion, HTTP: registryconfig.HTTP{Addr: ":0"},
		Storage: registryconfig.Storage{InMemory: &registryconfig.InMemoryStorage{}},
		Auth:    &registryconfig.Auth{LDAP: &l}}
	if mutate != nil {
		mutate(c.Auth)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ctl, err := NewController(*c.Auth, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return ctl
}

func TestLDAPLogin(t *testing.T) {
	s, l := ldapFixture(t)
	ctx := context.Background()

	t.Run("group search", func(t *testing.T) {
		c := newLDAPController(t, l, nil)
		id, provider, err := c.login(ctx, "alice", "alice-ldap")
		if err != nil || provider != ProviderLDAP {
			t.Fatalf("alice: %v (provider %q)", err, provider)
		}
		slices.Sort(id.Groups)
		if id.User != "alice" || id.Provider != ProviderLDAP || !slices.Equal(id.Groups, []string{"all", "team-a"}) {
			t.Errorf("alice = %+v, want user alice in groups all and team-a", id)
		}
	})
	t.Run("memberOf attribute and StartTLS", func(t *testing.T) {
		l := l
		l.GroupSearch = nil
		l.GroupsAttribute = "memberOf"
		l.URLs = []string{s.LDAPURL}
		l.StartTLS = true
		c := newLDAPController(t, l, nil)
		id, _, err := c.login(ctx, "bob", "bob-ldap")
		if err != nil || id.User != "bob" || !slices.Equal(id.Groups, []string{"all"}) {
			t.Errorf("bob = %+v, %v; want groups [all] from memberOf", id, err)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		c := newLDAPController(t, l, nil)
		for _, tc := range []struct {
			name, user, pass string
			want             error
		}{
			{"wrong password", "alice", "nope", errBadPassword},
			{"unknown user", "mallory", "alice-ldap", errUnknownUser},
			{"empty password is never an unauthenticated bind", "alice", "", errBadPassword},
			{"wildcard injection", "*", "alice-ldap", errUnknownUser},
			{"filter injection", "*)(uid=*", "alice-ldap", errUnknownUser},
			{"filter injection with or", "alice)(|(uid=*", "alice-ldap", errUnknownUser},
			{"prefix wildcard", "ali*", "alice-ldap", errUnknownUser},
			{"NUL byte", "alice\x00", "alice-ldap", errUnknownUser},
			{"escaped NUL", `alice\00`, "alice-ldap", errUnknownUser},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := c.login(ctx, tc.user, tc.pass)
				if !errors.Is(err, tc.want) {
					t.Errorf("login(%q) = %v, want %v", tc.user, err, tc.want)
				}
			})
		}
	})
	t.Run("failover to the second URL", func(t *testing.T) {
		l := l
		l.URLs = []string{"ldaps://127.0.0.1:1", s.LDAPSURL}
		l.Timeout = registryconfig.Duration{Duration: 2 * time.Second}
		c := newLDAPController(t, l, nil)
		if _, _, err := c.login(ctx, "alice", "alice-ldap"); err != nil {
			t.Errorf("login with the first URL down: %v", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		l := l
		l.CAFile = ""
		c := newLDAPController(t, l, nil)
		if _, _, err := c.login(ctx, "alice", "alice-ldap"); !errors.Is(err, errProviderUnavailable) {
			t.Errorf("login against an untrusted certificate = %v, want provider unavailable", err)
		}
	})
	t.Run("wrong bind password", func(t *testing.T) {
		l := l
		l.BindPasswordFile = filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(l.BindPasswordFile, []byte("wrong"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := newLDAPController(t, l, nil)
		_, _, err := c.login(ctx, "alice", "alice-ldap")
		if !errors.Is(err, errProviderUnavailable) || !errors.Is(err, ErrLDAPBind) {
			t.Errorf("login with a wrong bind password = %v, want a bind failure", err)
		}
		if err := c.ldap.check(ctx); !errors.Is(err, ErrLDAPBind) {
			t.Errorf("check = %v, want a bind failure", err)
		}
	})
}

func TestLDAPCacheAndOutage(t *testing.T) {
	s, l := ldapFixture(t)
	ctx := context.Background()
	htp, _ := bcrypt.GenerateFromPassword([]byte("local-pw"), bcrypt.MinCost)
	users := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(users, []byte("local:"+string(htp)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newLDAPController(t, l, func(a *registryconfig.Auth) { a.HtpasswdFile = users })
	clock := &fakeClock{t: time.Now()}
	c.ldap.now = clock.now

	if _, _, err := c.login(ctx, "alice", "alice-ldap"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.login(ctx, "bob", "typo"); !errors.Is(err, errBadPassword) {
		t.Fatal(err)
	}
	s.SetPassword("alice", "alice-new")
	s.SetPassword("bob", "typo")

	// Within the TTLs (60s and 10s by default) the cache answers: the old password still
	// works, the failure sticks.
	clock.advance(5 * time.Second)
	if _, _, err := c.login(ctx, "bob", "typo"); !errors.Is(err, errBadPassword) {
		t.Errorf("failure within the negative TTL = %v, want bad password", err)
	}
	clock.advance(45 * time.Second)
	if _, _, err := c.login(ctx, "alice", "alice-ldap"); err != nil {
		t.Errorf("cached login within the TTL: %v", err)
	}

	// After the TTLs the directory decides again.
	clock.advance(11 * time.Second)
	if _, _, err := c.login(ctx, "alice", "alice-ldap"); !errors.Is(err, errBadPassword) {
		t.Errorf("expired cache with the old password = %v, want bad password", err)
	}
	if _, _, err := c.login(ctx, "alice", "alice-new"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if _, _, err := c.login(ctx, "bob", "typo"); err != nil {
		t.Errorf("after the negative TTL: %v", err)
	}

	// A directory entry cannot take the name of an htpasswd user (in any case) or a robot.
	s.AddUser("local", "dir-pw")
	s.AddUser("robot+ci", "dir-pw")
	for _, name := range []string{"LOCAL", "ROBOT+ci"} {
		if _, _, err := c.login(ctx, name, "dir-pw"); !errors.Is(err, errNameTaken) {
			t.Errorf("directory login as %q = %v, want the name refused", name, err)
		}
	}

	// The directory goes down: cached logins and htpasswd users keep working, others get
	// "unavailable" (not "wrong password"), and empty passwords are refused without a bind.
	s.Stop()
	if _, _, err := c.login(ctx, "alice", "alice-new"); err != nil {
		t.Errorf("cached login with the directory down: %v", err)
	}
	if id, p, err := c.login(ctx, "local", "local-pw"); err != nil || p != ProviderHtpasswd || id.User != "local" {
		t.Errorf("htpasswd user with the directory down: %+v %q %v", id, p, err)
	}
	if _, _, err := c.login(ctx, "bob", "bob-other"); !errors.Is(err, errProviderUnavailable) {
		t.Errorf("uncached login with the directory down = %v, want unavailable", err)
	}
	if _, _, err := c.login(ctx, "bob", ""); !errors.Is(err, errBadPassword) {
		t.Errorf("empty password with the directory down = %v, want bad password (no bind attempted)", err)
	}
	if err := c.ldap.check(ctx); err == nil || errors.Is(err, ErrLDAPBind) {
		t.Errorf("check with the directory down = %v, want unreachable (not a bind failure)", err)
	}
	s.Restart()
	if _, _, err := c.login(ctx, "bob", "bob-other"); !errors.Is(err, errBadPassword) {
		t.Errorf("after the directory is back = %v, want bad password", err)
	}
}
