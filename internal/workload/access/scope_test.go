package access

import (
	"reflect"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/auth"
)

func TestParseScopes(t *testing.T) {
	got, err := parseScopes([]string{"repository:team-a/app:pull,push registry:catalog:*", "repository(plugin):x:pull", "unknown:y:z"})
	if err != nil {
		t.Fatal(err)
	}
	want := []tokenAccess{
		{Type: "repository", Name: "team-a/app", Actions: []string{"pull", "push"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
		{Type: "repository", Name: "x", Actions: []string{"pull"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"repository", "repository:a", "repository:a//b:pull", "repository:a:fly",
		"repository:" + strings.Repeat("a", 256) + ":pull", strings.Repeat("repository:a:pull ", 33)} {
		if _, err := parseScopes([]string{bad}); err == nil {
			t.Errorf("parseScopes(%.40q) accepted", bad)
		}
	}
}

func TestScopeOf(t *testing.T) {
	access := []auth.Access{
		{Resource: auth.Resource{Type: "repository", Name: "a/b"}, Action: "pull"},
		{Resource: auth.Resource{Type: "repository", Name: "a/b"}, Action: "push"},
		{Resource: auth.Resource{Type: "repository", Name: "c"}, Action: "pull"},
		{Resource: auth.Resource{Type: "registry", Name: "catalog"}, Action: "*"},
	}
	if got := scopeOf(access); got != "repository:a/b:pull,push repository:c:pull registry:catalog:*" {
		t.Errorf("scopeOf = %q", got)
	}
}

func TestPeekJWTAndJWTShape(t *testing.T) {
	// {"iss":"me"} as a payload; the signature is not looked at.
	tok := "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJtZSJ9.c2ln"
	if !looksLikeJWT(tok) || peekJWT(tok).Iss != "me" {
		t.Errorf("looksLikeJWT %v peekJWT %+v", looksLikeJWT(tok), peekJWT(tok))
	}
	// {"aud":["a","b"],"kubernetes.io":{}} and {"aud":"a"}
	for _, raw := range []string{"eyJhdWQiOlsiYSIsImIiXSwia3ViZXJuZXRlcy5pbyI6e319", "eyJhdWQiOiJhIn0"} {
		p := peekJWT("eyJhbGciOiJFUzI1NiJ9." + raw + ".c2ln")
		if !p.hasAudience("a") || p.hasAudience("c") {
			t.Errorf("hasAudience of %s: %+v", raw, p)
		}
	}
	if !isServiceAccountToken(peekJWT("eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOlsiYSIsImIiXSwia3ViZXJuZXRlcy5pbyI6e319.c2ln")) {
		t.Error("a token with a kubernetes.io claim is a ServiceAccount token")
	}
	if isServiceAccountToken(peekJWT(tok)) {
		t.Error("a token without kubernetes.io claim or ServiceAccount subject is not a ServiceAccount token")
	}
	for _, s := range []string{"a-password", "a.b", "x.y.z", "has space.in.it-------------", "a.b.c.d.e.f.g.h.i.j.k.l"} {
		if looksLikeJWT(s) {
			t.Errorf("looksLikeJWT(%q) = true", s)
		}
	}
	if peekJWT("not.base64!.x").Iss != "" || peekJWT("e30.e30.").Iss != "" {
		t.Error("the issuer of a token without an iss claim must be empty")
	}
}

// FuzzParseScopes feeds the token endpoint's scope parser what clients send: it must never
// panic, and what it accepts must be a repository name the registry serves, or the catalog.
func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"repository:a/b:pull,push", "registry:catalog:*", "repository(x):a:pull", "repository:a:", "::", "repository:a:b:c:pull"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := parseScopes([]string{s})
		if err != nil {
			return
		}
		for _, a := range out {
			if a.Type == "repository" && !anchoredName.MatchString(a.Name) {
				t.Fatalf("accepted repository name %q", a.Name)
			}
			for _, act := range a.Actions {
				switch act {
				case ActionPull, ActionPush, ActionDelete, "*":
				default:
					t.Fatalf("accepted action %q", act)
				}
			}
		}
	})
}
