package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

const (
	testIssuer  = "dockyard-test-issuer"
	testService = "registry.test"
)

// keysFile renders a token keys file.
func keysFile(t testing.TB, keys ...registryconfig.TokenKey) []byte {
	t.Helper()
	b, err := json.Marshal(registryconfig.TokenKeys{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newKey(t testing.TB, signFrom time.Time) registryconfig.TokenKey {
	t.Helper()
	k, err := registryconfig.NewTokenKey(signFrom)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// withTokens turns on the token service with keys in a mounted-Secret-like directory.
func withTokens(t testing.TB, a *registryconfig.Auth, keys ...registryconfig.TokenKey) *secretDir {
	t.Helper()
	sd := newSecretDir(t, map[string][]byte{"keys.json": keysFile(t, keys...)})
	a.Token = &registryconfig.Token{KeysFile: sd.path("keys.json"), Issuer: testIssuer, Service: testService}
	return sd
}

// client returns an HTTP client trusting the test registry.
func (tr *testRegistry) client() *http.Client { return &http.Client{Transport: tr.transport} }

// answer is the status and headers of a response whose body was read and closed.
type answer struct {
	StatusCode int
	Header     http.Header
}

// do sends a request with an optional Authorization header.
func (tr *testRegistry) do(t testing.TB, method, path, authz string) answer {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+tr.host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := tr.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return answer{StatusCode: resp.StatusCode, Header: resp.Header}
}

// token asks the token endpoint for a token (user "" for anonymous).
func (tr *testRegistry) token(t testing.TB, user, pass string, scopes ...string) (string, int) {
	t.Helper()
	q := url.Values{"service": {testService}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+tr.host+registryconfig.TokenPath+"?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := tr.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if tr.expiresIn >= 0 && body.ExpiresIn != tr.expiresIn {
			t.Errorf("expires_in = %d, want %d", body.ExpiresIn, tr.expiresIn)
		}
	}
	return body.Token, resp.StatusCode
}

func kidOf(t testing.TB, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

func TestTokenFlowWithRealClients(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	reg := startRegistry(t, auth, nil)

	// The challenge sends clients to the token endpoint of the host they used.
	resp := reg.do(t, http.MethodGet, "/v2/", "")
	want := `Bearer realm="https://` + reg.host + `/auth/token",service="registry.test"`
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || got != want {
		t.Fatalf("GET /v2/: %d %q, want 401 %q", resp.StatusCode, got, want)
	}
	resp = reg.do(t, http.MethodGet, "/v2/team-a/app/manifests/v1", "")
	if got := resp.Header.Get("WWW-Authenticate"); !strings.HasSuffix(got, `,scope="repository:team-a/app:pull"`) {
		t.Errorf("manifest challenge %q lacks the scope", got)
	}

	// go-containerregistry follows the challenge: push, pull, and refusals.
	img, err := random.Image(32<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, reg.host+"/team-a/app:v1")
	if err := remote.Write(tag, img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatalf("alice push through tokens: %v", err)
	}
	pulled, err := remote.Image(tag, reg.opts("bob", "bob-pw")...)
	if err != nil {
		t.Fatalf("bob (Viewer) pull: %v", err)
	}
	if err := verifyImage(pulled); err != nil {
		t.Fatal(err)
	}
	err = remote.Write(mustTag(t, reg.host+"/team-a/app:v2"), img, reg.opts("bob", "bob-pw")...)
	wantStatus(t, "Viewer push", err, http.StatusForbidden, "DENIED")
	_, err = remote.Image(tag, reg.opts("carol", "carol-pw")...)
	wantStatus(t, "pull without a rule", err, http.StatusForbidden, "DENIED")
	_, err = remote.Image(tag, reg.opts("alice", "wrong")...)
	wantStatus(t, "wrong password", err, http.StatusUnauthorized, "")
	_, err = remote.Image(tag, reg.opts("", "")...)
	wantStatus(t, "anonymous pull", err, http.StatusUnauthorized, "")

	// skopeo (containers/image, as podman and buildah) through the same flow.
	skopeo := requireTool(t, "skopeo")
	caDir := t.TempDir()
	writeAtomic(t, filepath.Join(caDir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.ca.cert.Raw}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, skopeo, "copy", "--src-cert-dir", caDir, "--dest-cert-dir", caDir,
		"--src-creds", "bob:bob-pw", "--dest-creds", "alice:alice-pw",
		"docker://"+reg.host+"/team-a/app:v1", "docker://"+reg.host+"/team-a/copy:v1").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy through tokens: %v\n%s", err, out)
	}
	if _, err := remote.Head(mustTag(t, reg.host+"/team-a/copy:v1"), reg.opts("alice", "alice-pw")...); err != nil {
		t.Errorf("the copy is not there: %v", err)
	}

	// Basic credentials sent directly still work.
	if resp := reg.do(t, http.MethodHead, "/v2/team-a/app/manifests/v1", basic("bob", "bob-pw")); resp.StatusCode != http.StatusOK {
		t.Errorf("Basic HEAD: %d", resp.StatusCode)
	}

	// The token endpoint: a wrong password is 401, not an anonymous token.
	if _, code := reg.token(t, "alice", "wrong", "repository:team-a/app:pull"); code != http.StatusUnauthorized {
		t.Errorf("token with a wrong password: %d, want 401", code)
	}
	// A token for one repository, used on another the rules allow, sends the client back for
	// a new token (insufficient_scope) instead of refusing.
	tok, code := reg.token(t, "alice", "alice-pw", "repository:team-a/app:pull")
	if code != http.StatusOK {
		t.Fatalf("token: %d", code)
	}
	if resp := reg.do(t, http.MethodHead, "/v2/team-a/app/manifests/v1", "Bearer "+tok); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD with a token for the repository: %d", resp.StatusCode)
	}
	resp = reg.do(t, http.MethodHead, "/v2/team-a/copy/manifests/v1", "Bearer "+tok)
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(got, `scope="repository:team-a/copy:pull"`) || !strings.Contains(got, `error="insufficient_scope"`) {
		t.Errorf("token used out of scope: %d %q, want 401 insufficient_scope for team-a/copy", resp.StatusCode, got)
	}
	// A pull-only token does not push, even for a Manager.
	resp = reg.do(t, http.MethodPost, "/v2/team-a/app/blobs/uploads/", "Bearer "+tok)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("push with a pull token: %d, want 401", resp.StatusCode)
	}

	// containerd's OAuth2 form: POST with grant_type=password.
	form := url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"bob-pw"},
		"service": {testService}, "scope": {"repository:team-a/app:pull,push"}, "client_id": {"containerd"}}
	presp, err := reg.client().PostForm("https://"+reg.host+registryconfig.TokenPath, form)
	if err != nil {
		t.Fatal(err)
	}
	var pbody struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(presp.Body).Decode(&pbody)
	_ = presp.Body.Close()
	if presp.StatusCode != http.StatusOK || pbody.AccessToken == "" {
		t.Fatalf("POST password grant: %d", presp.StatusCode)
	}
	if resp := reg.do(t, http.MethodHead, "/v2/team-a/app/manifests/v1", "Bearer "+pbody.AccessToken); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD with the OAuth2 token: %d", resp.StatusCode)
	}
	var claims struct {
		Access []struct {
			Name    string   `json:"name"`
			Actions []string `json:"actions"`
		} `json:"access"`
	}
	parts := strings.Split(pbody.AccessToken, ".")
	raw, _ := jwt.NewParser().DecodeSegment(parts[1])
	_ = json.Unmarshal(raw, &claims)
	if len(claims.Access) != 1 || strings.Join(claims.Access[0].Actions, ",") != "pull" {
		t.Errorf("a Viewer asking for pull,push got %+v, want pull only", claims.Access)
	}

	// Malformed requests get clear errors.
	for _, q := range []string{"scope=repository:a//b:pull", "scope=repository:a:fly", "service=elsewhere", "scope=nonsense"} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+reg.host+registryconfig.TokenPath+"?"+q, nil)
		req.SetBasicAuth("alice", "alice-pw")
		r, err := reg.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("token request %q: %d, want 400", q, r.StatusCode)
		}
	}

	// Failures are counted.
	metrics := scrape(t, reg)
	for _, want := range []string{
		`dockyard_registry_auth_failures_total{provider="htpasswd",reason="bad_credentials"}`,
		`dockyard_registry_access_denied_total{action="push"}`,
		`dockyard_registry_tokens_issued_total{provider="htpasswd"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// scrape returns the registry's metrics page.
func scrape(t testing.TB, reg *testRegistry) string {
	t.Helper()
	resp, err := http.Get("http://" + reg.srv.MetricsAddr() + registryconfig.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func TestForgedTokensAreRefused(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	key := newKey(t, time.Now().Add(-time.Minute))
	withTokens(t, auth, key)
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(1024, 1)
	if err := remote.Write(mustTag(t, reg.host+"/team-a/app:v1"), img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(key.PrivateKey))
	realKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	claims := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": testIssuer, "sub": "alice", "aud": testService, "iat": now.Unix(),
			"nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Minute).Unix(),
			"access": []map[string]any{{"type": "repository", "name": "team-a/app", "actions": []string{"pull"}}}}
		if mut != nil {
			mut(c)
		}
		return c
	}
	sign := func(c jwt.MapClaims, k any, kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(claims(nil), realKey, key.ID)
	if resp := reg.do(t, http.MethodHead, "/v2/team-a/app/manifests/v1", "Bearer "+good); resp.StatusCode != http.StatusOK {
		t.Fatalf("a correctly signed token: %d (the forgeries below would prove nothing)", resp.StatusCode)
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte(key.PrivateKey))
	for name, tok := range map[string]string{
		"alg none":                    none,
		"HMAC with the PEM as secret": hs,
		"another key, same kid":       sign(claims(nil), other, key.ID),
		"unknown kid":                 sign(claims(nil), other, "nope"),
		"expired":                     sign(claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-2 * time.Minute).Unix() }), realKey, key.ID),
		"no expiry":                   sign(claims(func(c jwt.MapClaims) { delete(c, "exp") }), realKey, key.ID),
		"wrong audience":              sign(claims(func(c jwt.MapClaims) { c["aud"] = "other" }), realKey, key.ID),
		"wrong issuer":                sign(claims(func(c jwt.MapClaims) { c["iss"] = "other" }), realKey, key.ID),
		"not yet valid":               sign(claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), realKey, key.ID),
		"tampered payload":            good[:strings.Index(good, ".")+1] + strings.Split(sign(claims(func(c jwt.MapClaims) { c["sub"] = "admin" }), other, key.ID), ".")[1] + good[strings.LastIndex(good, "."):],
		"garbage":                     "not-a-token",
	} {
		resp := reg.do(t, http.MethodHead, "/v2/team-a/app/manifests/v1", "Bearer "+tok)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, resp.StatusCode)
		}
	}
}

func TestTokenKeyRotation(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	a := newKey(t, time.Now().Add(-time.Hour))
	keys := withTokens(t, auth, a)
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(1024, 1)
	if err := remote.Write(mustTag(t, reg.host+"/team-a/app:v1"), img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	const manifest = "/v2/team-a/app/manifests/v1"
	scope := "repository:team-a/app:pull"
	old, _ := reg.token(t, "alice", "alice-pw", scope)
	if kidOf(t, old) != a.ID {
		t.Fatalf("signed with %s, want %s", kidOf(t, old), a.ID)
	}

	// A published key that is not due yet is not used.
	pending := newKey(t, time.Now().Add(time.Hour))
	keys.update(map[string][]byte{"keys.json": keysFile(t, a, pending)})
	time.Sleep(time.Second)
	if tok, _ := reg.token(t, "alice", "alice-pw", scope); kidOf(t, tok) != a.ID {
		t.Errorf("a key due in an hour signed a token")
	}

	// Once due, the new key signs; tokens of the previous key keep working.
	b := newKey(t, time.Now().Add(-time.Second))
	keys.update(map[string][]byte{"keys.json": keysFile(t, a, b)})
	deadline := time.Now().Add(10 * time.Second)
	var fresh string
	for {
		fresh, _ = reg.token(t, "alice", "alice-pw", scope)
		if kidOf(t, fresh) == b.ID || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if kidOf(t, fresh) != b.ID {
		t.Fatalf("the new key is not used after 10s")
	}
	for name, tok := range map[string]string{"old": old, "new": fresh} {
		if resp := reg.do(t, http.MethodHead, manifest, "Bearer "+tok); resp.StatusCode != http.StatusOK {
			t.Errorf("%s token during the overlap: %d", name, resp.StatusCode)
		}
	}

	// The retired key is dropped: its tokens stop working, the new key's do not.
	keys.update(map[string][]byte{"keys.json": keysFile(t, b)})
	deadline = time.Now().Add(10 * time.Second)
	for reg.do(t, http.MethodHead, manifest, "Bearer "+old).StatusCode != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("a token of a removed key still works after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp := reg.do(t, http.MethodHead, manifest, "Bearer "+fresh); resp.StatusCode != http.StatusOK {
		t.Errorf("new token after the old key left: %d", resp.StatusCode)
	}

	// A broken keys file keeps the loaded keys.
	keys.update(map[string][]byte{"keys.json": []byte("{not json")})
	time.Sleep(time.Second)
	if resp := reg.do(t, http.MethodHead, manifest, "Bearer "+fresh); resp.StatusCode != http.StatusOK {
		t.Errorf("token after a broken keys file: %d", resp.StatusCode)
	}
}

func TestAnonymousTokens(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	auth.AnonymousPull = true
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(1024, 1)
	tag := mustTag(t, reg.host+"/team-a/app:v1")
	if err := remote.Write(tag, img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(tag, reg.opts("", "")...); err != nil {
		t.Errorf("anonymous pull through an anonymous token: %v", err)
	}
	if err := remote.Write(mustTag(t, reg.host+"/team-a/app:v2"), img, reg.opts("", "")...); err == nil {
		t.Error("anonymous push succeeded")
	}
	if _, err := remote.Head(mustTag(t, reg.host+"/team-a/app:v2"), reg.opts("alice", "alice-pw")...); err == nil {
		t.Error("the anonymous push left a tag")
	}
	// The anonymous token carries pull only; using it to push asks for credentials.
	tok, code := reg.token(t, "", "", "repository:team-a/app:pull,push")
	if code != http.StatusOK {
		t.Fatalf("anonymous token: %d", code)
	}
	resp := reg.do(t, http.MethodPost, "/v2/team-a/app/blobs/uploads/", "Bearer "+tok)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Errorf("push with an anonymous token: %d %q, want 401 with a Bearer challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}
