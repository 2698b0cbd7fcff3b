package access

import (
	"slices"
	"strings"
	"testing"
)

const bcryptHash = "$2y$05$sDiB7oo3xpjJAuyVoE0AtuIu7Ir.5jmsEPZgtcjaGDN7WAa.pcx/m"

func TestParseHtpasswd(t *testing.T) {
	data := strings.Join([]string{
		"# comment",
		"alice:" + bcryptHash,
		"md5user:$apr1$Vb1h1kZB$0jJ6tSb3dtl0xQ0m3hE6j.",
		"sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
		"plain:secret",
		"garbage",
		"",
	}, "\n")
	users, problems := ParseHtpasswd("htpasswd", []byte(data))
	if len(users) != 1 || users["alice"] == nil {
		t.Fatalf("users = %v, want only alice", users)
	}
	var who []string
	for _, p := range problems {
		who = append(who, p.User)
		if !strings.Contains(p.String(), "htpasswd:") {
			t.Errorf("problem %q lacks file:line", p)
		}
	}
	if !slices.Equal(who, []string{"md5user", "sha", "plain", ""}) {
		t.Errorf("problems for %v, want md5user, sha, plain and the malformed line", who)
	}
}

func TestParseGroups(t *testing.T) {
	groups, problems := ParseGroups("groups", []byte("# x\nteam-a: alice, bob\nall: alice,carol\nbad line\n"))
	if len(problems) != 1 {
		t.Errorf("problems = %v, want 1", problems)
	}
	if got := groups["alice"]; !slices.Equal(got, []string{"team-a", "all"}) {
		t.Errorf("alice groups = %v", got)
	}
	if got := groups["carol"]; !slices.Equal(got, []string{"all"}) {
		t.Errorf("carol groups = %v", got)
	}
}
