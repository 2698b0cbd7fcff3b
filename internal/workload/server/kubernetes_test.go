package server_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture/kubeapi"
)

const (
	saAudience = "registry.test.svc"
	// The shipped ClusterRoles, named as the default install names them.
	managerRole = "dockyard-repository-manager"
	viewerRole  = "dockyard-repository-viewer"
)

// kubeAuth starts an API server with the shipped ClusterRoles and returns an auth config
// for a registry that asks it, as a user holding only system:auth-delegator (what the
// operator binds to the registry's ServiceAccount).
func kubeAuth(t *testing.T, cacheTTL time.Duration) (*kubeapi.Server, *registryconfig.Auth) {
	t.Helper()
	api := kubeapi.Start(t)
	api.ApplyClusterRoles("../../../config/rbac/repository_manager_role.yaml", "dockyard-")
	api.ApplyClusterRoles("../../../config/rbac/repository_viewer_role.yaml", "dockyard-")
	api.ClusterRoleBinding("registry-auth-delegator", "system:auth-delegator", kubeapi.User, "registry", "")
	_, auth := authFixture(t, testUsers)
	auth.Kubernetes = &registryconfig.Kubernetes{
		Kubeconfig:      api.Kubeconfig("registry"),
		ServiceAccounts: &registryconfig.ServiceAccounts{Audiences: []string{saAudience}, CacheTTL: registryconfig.Duration{Duration: cacheTTL}},
		RBAC:            &registryconfig.RBAC{CacheTTL: registryconfig.Duration{Duration: cacheTTL}},
	}
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	return api, auth
}

func TestServiceAccountsAndKubernetesRBAC(t *testing.T) {
	const ttl = 500 * time.Millisecond
	api, auth := kubeAuth(t, ttl)
	for _, ns := range []string{"team-a", "team-b"} {
		api.Namespace(ns)
	}
	api.ServiceAccount("team-a", "builder")
	api.ServiceAccount("team-b", "deployer")
	api.RoleBinding("team-a", "builder-push", managerRole, kubeapi.ServiceAccount, "builder", "team-a")
	// team-b's deployer may pull team-a's images, and nothing in its own namespace.
	api.RoleBinding("team-a", "deployer-pull", viewerRole, kubeapi.ServiceAccount, "deployer", "team-b")
	// carol (htpasswd, no access rule) is bound by name; her group is a directory group.
	api.RoleBinding("team-b", "carol-push", managerRole, kubeapi.User, "carol", "")
	reg := startRegistry(t, auth, nil)

	builder := api.Token("team-a", "builder", saAudience)
	deployer := api.Token("team-b", "deployer", saAudience)
	img, _ := random.Image(8<<10, 2)
	appTag := mustTag(t, reg.host+"/team-a/app:v1")

	// A ServiceAccount token as the password, through the token flow.
	if err := remote.Write(appTag, img, reg.opts("builder", builder)...); err != nil {
		t.Fatalf("push with a ServiceAccount token bound to the manager role in team-a: %v", err)
	}
	err := remote.Write(mustTag(t, reg.host+"/team-b/app:v1"), img, reg.opts("builder", builder)...)
	wantStatus(t, "push to a namespace without a RoleBinding", err, http.StatusForbidden, "")
	code, body := reg.doBody(t, http.MethodPost, "/v2/team-b/app/blobs/uploads/", "Bearer "+builder)
	if code != http.StatusForbidden || !strings.Contains(body, `"DENIED"`) || !strings.Contains(body, "may not pull") ||
		!strings.Contains(body, `system:serviceaccount:team-a:builder may not push repositories.registry.dockyard.dev \"app\" in namespace team-b`) {
		t.Errorf("a denial must be 403 DENIED naming the user, verb, resource and namespace: %d %s", code, body)
	}
	if _, err := remote.Image(appTag, reg.opts("deployer", deployer)...); err != nil {
		t.Errorf("pull across namespaces with a viewer RoleBinding: %v", err)
	}
	err = remote.Write(mustTag(t, reg.host+"/team-a/app:v2"), img, reg.opts("deployer", deployer)...)
	wantStatus(t, "viewer push", err, http.StatusForbidden, "DENIED")

	// A registry token issued to a ServiceAccount lives no longer than a review is cached:
	// a deleted ServiceAccount cannot keep using one for the whole token TTL.
	reg.expiresIn = 0 // 500ms, rounded down
	regTok, code := reg.token(t, "builder", builder, "repository:team-a/app:pull")
	reg.expiresIn = 300
	if code != http.StatusOK {
		t.Fatalf("token for a ServiceAccount: %d", code)
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(regTok, &claims); err != nil {
		t.Fatal(err)
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life > time.Second {
		t.Errorf("a ServiceAccount's registry token lives %s, want at most the review cache's %s", life, ttl)
	}

	// The token as a Bearer token, without the token endpoint.
	const manifest = "/v2/team-a/app/manifests/v1"
	if got := reg.do(t, http.MethodHead, manifest, "Bearer "+builder); got.StatusCode != http.StatusOK {
		t.Errorf("ServiceAccount token as a Bearer token: %d", got.StatusCode)
	}

	// Tokens that must be refused: another audience (the API server's own is the classic
	// replay), garbage shaped like a ServiceAccount token.
	other := api.Token("team-a", "builder", "https://kubernetes.default.svc")
	if got := reg.do(t, http.MethodHead, manifest, "Bearer "+other); got.StatusCode != http.StatusUnauthorized {
		t.Errorf("token for another audience as a Bearer token: %d, want 401", got.StatusCode)
	}
	if _, code := reg.token(t, "builder", other, "repository:team-a/app:pull"); code != http.StatusUnauthorized {
		t.Errorf("token for another audience at the token endpoint: %d, want 401", code)
	}
	forged := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGVhbS1hOmJ1aWxkZXIiLCJrdWJlcm5ldGVzLmlvIjp7fX0.c2lnbmF0dXJl"
	if got := reg.do(t, http.MethodHead, manifest, "Bearer "+forged); got.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged ServiceAccount token: %d, want 401", got.StatusCode)
	}

	// Users of other providers are SAR subjects by name; Kubernetes names are not theirs.
	if err := remote.Write(mustTag(t, reg.host+"/team-b/tool:v1"), img, reg.opts("carol", "carol-pw")...); err != nil {
		t.Errorf("htpasswd user bound by name in team-b: %v", err)
	}

	// Repositories outside any namespace: only a ClusterRoleBinding grants them.
	err = remote.Write(mustTag(t, reg.host+"/base:v1"), img, reg.opts("builder", builder)...)
	wantStatus(t, "push to a repository outside any namespace without a ClusterRoleBinding", err, http.StatusForbidden, "")
	if code, body := reg.doBody(t, http.MethodPost, "/v2/base/blobs/uploads/", "Bearer "+builder); code != http.StatusForbidden ||
		!strings.Contains(body, "cluster-wide (the repository is outside any namespace)") {
		t.Errorf("a denial outside any namespace must say so: %d %s", code, body)
	}
	api.ClusterRoleBinding("builder-everywhere", managerRole, kubeapi.ServiceAccount, "builder", "team-a")
	eventually(t, 10*time.Second, "ClusterRoleBinding grants base", func() error {
		return remote.Write(mustTag(t, reg.host+"/base:v1"), img, reg.opts("builder", builder)...)
	})
	api.DeleteClusterRoleBinding("builder-everywhere")

	// A RoleBinding removed: refused once the decision cache has expired.
	api.DeleteRoleBinding("team-a", "builder-push")
	eventually(t, 10*time.Second, "push refused after the RoleBinding is removed", func() error {
		err := remote.Write(mustTag(t, reg.host+"/team-a/app:v3"), img, reg.opts("builder", builder)...)
		if code, _ := statusOf(err); code != http.StatusForbidden {
			return errorf("push: %v", err)
		}
		return nil
	})

	// A deleted ServiceAccount's token stops working within the review cache's lifetime.
	api.DeleteServiceAccount("team-b", "deployer")
	eventually(t, 10*time.Second, "token of a deleted ServiceAccount refused", func() error {
		if got := reg.do(t, http.MethodHead, manifest, "Bearer "+deployer); got.StatusCode != http.StatusUnauthorized {
			return errorf("HEAD with the token: %d", got.StatusCode)
		}
		return nil
	})
}

// eventually retries f every 100ms until it succeeds or within passes.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// doBody sends a request and returns the status and body.
func (tr *testRegistry) doBody(t testing.TB, method, path, authz string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+tr.host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authz)
	resp, err := tr.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// TestPullCredentials checks what the operator writes into pull Secrets: a credential
// signed with the token keys that pulls its namespace's repositories and nothing else,
// sent as the kubelet sends it (Basic, any user name), and that stops at expiry.
func TestPullCredentials(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	key := newKey(t, time.Now().Add(-time.Minute))
	withTokens(t, auth, key)
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(8<<10, 2)
	for _, repo := range []string{"team-a/app:v1", "team-b/app:v1"} {
		if err := remote.Write(mustTag(t, reg.host+"/"+repo), img, reg.opts("admin", "admin-pw")...); err != nil {
			t.Fatal(err)
		}
	}
	keys := registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}}
	cred, kid, err := registryconfig.SignPullCredential(keys, testIssuer, testService, "team-a", []string{"team-a/*/**"}, time.Now(), time.Hour)
	if err != nil || kid != key.ID {
		t.Fatalf("sign: %v (kid %q)", err, kid)
	}
	if _, err := remote.Image(mustTag(t, reg.host+"/team-a/app:v1"), reg.opts("dockyard-pull", cred)...); err != nil {
		t.Errorf("pull of its namespace's repository: %v", err)
	}
	_, err = remote.Image(mustTag(t, reg.host+"/team-b/app:v1"), reg.opts("dockyard-pull", cred)...)
	if code, _ := statusOf(err); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("pull of another namespace's repository: %v", err)
	}
	err = remote.Write(mustTag(t, reg.host+"/team-a/app:v2"), img, reg.opts("dockyard-pull", cred)...)
	if code, _ := statusOf(err); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("push with a pull credential: %v", err)
	}
	// As a Bearer token (routed by its audience) it pulls the same.
	if got := reg.do(t, http.MethodHead, "/v2/team-a/app/manifests/v1", "Bearer "+cred); got.StatusCode != http.StatusOK {
		t.Errorf("pull credential as a Bearer token: %d", got.StatusCode)
	}
	// Exchanged at the token endpoint, it gives a token that ends with the credential.
	short, _, err := registryconfig.SignPullCredential(keys, testIssuer, testService, "team-a", []string{"team-a/*/**"}, time.Now().Add(-59*time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reg.expiresIn = -1
	regTok, code := reg.token(t, "dockyard-pull", short, "repository:team-a/app:pull")
	reg.expiresIn = 300
	if code != http.StatusOK {
		t.Fatalf("token for a pull credential: %d", code)
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(regTok, &claims); err != nil {
		t.Fatal(err)
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life > time.Minute {
		t.Errorf("a token for a pull credential with a minute left lives %s", life)
	}
	// No credential is renewed by exchanging a token for a token: revocations stay bounded.
	if _, code := reg.token(t, "whoever", regTok, "repository:team-a/app:pull"); code != http.StatusUnauthorized {
		t.Errorf("a registry token exchanged for another: %d, want 401", code)
	}
	adminTok, _ := reg.token(t, "admin", "admin-pw", "repository:team-a/app:pull")
	if _, code := reg.token(t, "admin", adminTok, "repository:team-a/app:pull"); code != http.StatusUnauthorized {
		t.Errorf("an htpasswd user's token exchanged for another: %d, want 401", code)
	}
	expired, _, err := registryconfig.SignPullCredential(keys, testIssuer, testService, "team-a", []string{"team-a/*/**"}, time.Now().Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Image(mustTag(t, reg.host+"/team-a/app:v1"), reg.opts("dockyard-pull", expired)...)
	wantStatus(t, "expired pull credential", err, http.StatusUnauthorized, "")
	// Signed by another key: refused.
	other := registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{newKey(t, time.Now().Add(-time.Minute))}}
	forged, _, _ := registryconfig.SignPullCredential(other, testIssuer, testService, "team-a", []string{"**"}, time.Now(), time.Hour)
	_, err = remote.Image(mustTag(t, reg.host+"/team-a/app:v1"), reg.opts("dockyard-pull", forged)...)
	wantStatus(t, "pull credential signed by an unknown key", err, http.StatusUnauthorized, "")
}

func TestReplicationCredentials(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	key := newKey(t, time.Now().Add(-time.Minute))
	withTokens(t, auth, key)
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(8<<10, 2)
	if err := remote.Write(mustTag(t, reg.host+"/team-b/app:v1"), img, reg.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	keys := registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}}
	cred, err := registryconfig.SignReplicationCredential(keys, testIssuer, testService, "ns/rule", []string{"mirror/**"},
		[]string{"pull", "push"}, time.Now(), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// It pushes and pulls what it names, through the token flow as clients do.
	if err := remote.Write(mustTag(t, reg.host+"/mirror/app:v1"), img, reg.opts("replicator", cred)...); err != nil {
		t.Fatalf("push with a replication credential: %v", err)
	}
	if _, err := remote.Image(mustTag(t, reg.host+"/mirror/app:v1"), reg.opts("replicator", cred)...); err != nil {
		t.Errorf("pull with a replication credential: %v", err)
	}
	// Nothing else: another repository, or an action it does not name.
	_, err = remote.Image(mustTag(t, reg.host+"/team-b/app:v1"), reg.opts("replicator", cred)...)
	if code, _ := statusOf(err); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("pull outside its repositories: %v", err)
	}
	d, _ := img.Digest()
	err = remote.Delete(mustTag(t, reg.host+"/mirror/app:v1").Context().Digest(d.String()), reg.opts("replicator", cred)...)
	if code, _ := statusOf(err); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("delete without the delete action: %v", err)
	}
	// A pull credential is not a replication credential, nor the other way round.
	pull, _, _ := registryconfig.SignPullCredential(keys, testIssuer, testService, "mirror", []string{"mirror/**"}, time.Now(), time.Hour)
	err = remote.Write(mustTag(t, reg.host+"/mirror/app:v2"), img, reg.opts("replicator", pull)...)
	if code, _ := statusOf(err); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("push with a pull credential: %v", err)
	}
	other := registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{newKey(t, time.Now().Add(-time.Minute))}}
	forged, _ := registryconfig.SignReplicationCredential(other, testIssuer, testService, "ns/rule", []string{"**"},
		[]string{"pull", "push", "delete"}, time.Now(), time.Hour)
	_, err = remote.Image(mustTag(t, reg.host+"/mirror/app:v1"), reg.opts("replicator", forged)...)
	wantStatus(t, "replication credential signed by an unknown key", err, http.StatusUnauthorized, "")
}
