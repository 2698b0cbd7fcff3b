package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture/slapd"
)

// ldapAuth starts slapd with alice (group team-a: Manager of team-a/**) and bob (group
// readers: Viewer of team-a/**) and returns an auth config using it, with tokens on.
func ldapAuth(t testing.TB, cacheTTL time.Duration) (*slapd.Server, *registryconfig.Auth) {
	t.Helper()
	dir := slapd.Start(t)
	dir.AddUser("alice", "alice-ldap")
	dir.AddUser("bob", "bob-ldap")
	dir.AddGroup("team-a", "alice")
	dir.AddGroup("readers", "bob")
	pw := filepath.Join(t.TempDir(), "bind-password")
	if err := os.WriteFile(pw, []byte(slapd.BindPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := &registryconfig.Auth{
		LDAP: &registryconfig.LDAP{
			URLs: []string{dir.LDAPSURL}, CAFile: dir.CAFile, BindDN: slapd.BindDN, BindPasswordFile: pw,
			UserSearch:       registryconfig.LDAPUserSearch{BaseDN: slapd.PeopleDN},
			GroupSearch:      &registryconfig.LDAPGroupSearch{BaseDN: slapd.GroupsDN},
			CacheTTL:         &registryconfig.Duration{Duration: cacheTTL},
			NegativeCacheTTL: &registryconfig.Duration{Duration: cacheTTL},
		},
		Access: []registryconfig.AccessRule{
			{Subjects: []registryconfig.Subject{{Kind: registryconfig.SubjectGroup, Name: "team-a"}},
				Repositories: []string{"team-a/**"}, Role: registryconfig.RoleManager},
			{Subjects: []registryconfig.Subject{{Kind: registryconfig.SubjectGroup, Name: "readers"}},
				Repositories: []string{"team-a/**"}, Role: registryconfig.RoleViewer},
		},
	}
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	return dir, auth
}

func TestLDAPUsersThroughTokens(t *testing.T) {
	// No login cache: every Basic request goes to the directory, so what keeps working
	// after it stops is the token.
	dir, auth := ldapAuth(t, 0)
	reg := startRegistry(t, auth, nil)

	img, err := random.Image(16<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, reg.host+"/team-a/app:v1")
	if err := remote.Write(tag, img, reg.opts("alice", "alice-ldap")...); err != nil {
		t.Fatalf("LDAP Manager push: %v", err)
	}
	if _, err := remote.Image(tag, reg.opts("bob", "bob-ldap")...); err != nil {
		t.Fatalf("LDAP Viewer pull: %v", err)
	}
	err = remote.Write(mustTag(t, reg.host+"/team-a/app:v2"), img, reg.opts("bob", "bob-ldap")...)
	wantStatus(t, "LDAP Viewer push", err, http.StatusForbidden, "DENIED")
	_, err = remote.Image(tag, reg.opts("alice", "wrong")...)
	wantStatus(t, "LDAP wrong password", err, http.StatusUnauthorized, "")
	_, err = remote.Image(tag, reg.opts("*)(uid=*", "alice-ldap")...)
	wantStatus(t, "filter injection as the user name", err, http.StatusUnauthorized, "")

	// One directory round trip per token: with the directory gone, the token keeps
	// working for its lifetime while a Basic request (asking the directory) fails.
	tok, code := reg.token(t, "alice", "alice-ldap", "repository:team-a/app:pull")
	if code != http.StatusOK {
		t.Fatalf("token for an LDAP user: %d", code)
	}
	dir.Stop()
	const manifest = "/v2/team-a/app/manifests/v1"
	for i := 0; i < 3; i++ {
		if resp := reg.do(t, http.MethodHead, manifest, "Bearer "+tok); resp.StatusCode != http.StatusOK {
			t.Fatalf("token with the directory down: %d", resp.StatusCode)
		}
	}
	// Basic requests that need the directory get 503 (retry later), not 401 (wrong password):
	// on distribution's routes, on Dockyard's fast blob path and on the catalog.
	layers, _ := img.Layers()
	blob, _ := layers[0].Digest()
	for _, path := range []string{manifest, "/v2/team-a/app/blobs/" + blob.String(), "/v2/_catalog"} {
		method := http.MethodHead
		if path == "/v2/_catalog" {
			method = http.MethodGet
		}
		resp := reg.do(t, method, path, basic("alice", "alice-ldap"))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("Basic %s %s with the directory down: %d %v, want 503 with Retry-After and no challenge", method, path, resp.StatusCode, resp.Header)
		}
	}
	// The token endpoint says the directory is unavailable rather than "wrong password".
	if _, code := reg.token(t, "alice", "alice-ldap", "repository:team-a/app:pull"); code != http.StatusServiceUnavailable {
		t.Errorf("token request with the directory down: %d, want 503", code)
	}
	m := scrape(t, reg)
	for _, want := range []string{
		`dockyard_registry_auth_failures_total{provider="ldap",reason="provider_unavailable"}`,
		`dockyard_registry_auth_failures_total{provider="ldap",reason="bad_credentials"}`,
		`dockyard_registry_auth_failures_total{provider="ldap",reason="unknown_user"}`,
		`dockyard_registry_tokens_issued_total{provider="ldap"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
