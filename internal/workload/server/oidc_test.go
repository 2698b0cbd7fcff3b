package server_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture/dex"
)

var dexUsers = []dex.User{
	{Email: "alice@example.com", Name: "alice", Password: "alice-oidc", Groups: []string{"team-a"}},
	{Email: "bob@example.com", Name: "bob", Password: "bob-oidc", Groups: []string{"readers"}},
}

// oidcAuth returns an auth config accepting the ID tokens of d for the dockyard client,
// with users named by email and groups team-a (Manager) and readers (Viewer) of team-a/**.
func oidcAuth(t testing.TB, d *dex.Server) *registryconfig.Auth {
	t.Helper()
	auth := &registryconfig.Auth{
		OIDC: &registryconfig.OIDC{IssuerURL: d.Issuer, Audiences: []string{dex.ClientID}, UsernameClaim: "email",
			CAFile: d.CAFile, LoginClientID: dex.LoginClientID},
		Access: []registryconfig.AccessRule{
			{Subjects: []registryconfig.Subject{{Kind: registryconfig.SubjectGroup, Name: "team-a"}},
				Repositories: []string{"team-a/**"}, Role: registryconfig.RoleManager},
			{Subjects: []registryconfig.Subject{{Kind: registryconfig.SubjectGroup, Name: "readers"}},
				Repositories: []string{"team-a/**"}, Role: registryconfig.RoleViewer},
		},
	}
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	return auth
}

func idToken(t testing.TB, d *dex.Server, clientID, secret, email, password string) string {
	t.Helper()
	tok, err := d.PasswordToken(clientID, secret, email, password)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestOIDCLoginsWithRealClients(t *testing.T) {
	d := dex.Start(t, dexUsers, dex.Options{})
	regAuth := oidcAuth(t, d)
	reg := startRegistry(t, regAuth, nil)
	alice := idToken(t, d, dex.ClientID, dex.ClientSecret, "alice@example.com", "alice-oidc")
	bob := idToken(t, d, dex.ClientID, dex.ClientSecret, "bob@example.com", "bob-oidc")

	// `docker login -u anything -p $ID_TOKEN`, through the token flow.
	img, _ := random.Image(8<<10, 2)
	tag := mustTag(t, reg.host+"/team-a/app:v1")
	if err := remote.Write(tag, img, reg.opts("ci", alice)...); err != nil {
		t.Fatalf("push with an ID token as the password: %v", err)
	}
	if _, err := remote.Image(tag, reg.opts("whoever", bob)...); err != nil {
		t.Fatalf("Viewer pull with an ID token: %v", err)
	}
	err := remote.Write(mustTag(t, reg.host+"/team-a/app:v2"), img, reg.opts("whoever", bob)...)
	wantStatus(t, "Viewer push with an ID token", err, http.StatusForbidden, "DENIED")

	// The ID token as a Bearer token, without the token endpoint.
	const manifest = "/v2/team-a/app/manifests/v1"
	if got := reg.do(t, http.MethodHead, manifest, "Bearer "+alice); got.StatusCode != http.StatusOK {
		t.Errorf("ID token as a Bearer token: %d", got.StatusCode)
	}

	// Tokens that must be refused, as a Bearer token and as a password at the token endpoint.
	other := idToken(t, d, dex.OtherClientID, dex.OtherClientSecret, "alice@example.com", "alice-oidc")
	d2 := dex.Start(t, dexUsers, dex.Options{})
	foreign := idToken(t, d2, dex.ClientID, dex.ClientSecret, "alice@example.com", "alice-oidc")
	short := dex.Start(t, dexUsers, dex.Options{IDTokenTTL: "2s"})
	regShort := startRegistry(t, oidcAuth(t, short), nil)
	expired := idToken(t, short, dex.ClientID, dex.ClientSecret, "alice@example.com", "alice-oidc")
	parts := strings.Split(alice, ".")
	var claims map[string]any
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(payload, &claims)
	claims["email"] = "admin@example.com"
	forged, _ := json.Marshal(claims)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims(claims)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	time.Sleep(3 * time.Second) // the 2s token expires
	for name, tc := range map[string]struct {
		reg *testRegistry
		tok string
	}{
		"another client's audience": {reg, other},
		"another issuer":            {reg, foreign},
		"expired":                   {regShort, expired},
		"tampered claims":           {reg, tampered},
		"alg none":                  {reg, none},
	} {
		if got := tc.reg.do(t, http.MethodHead, manifest, "Bearer "+tc.tok); got.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s as a Bearer token: %d, want 401", name, got.StatusCode)
		}
		if _, code := tc.reg.token(t, "ci", tc.tok, "repository:team-a/app:pull"); code != http.StatusUnauthorized {
			t.Errorf("%s at the token endpoint: %d, want 401", name, code)
		}
	}

	// docker login's offline_token=true: an OIDC login gets a refresh token (a session),
	// which docker stores and later trades for access tokens.
	q := url.Values{"service": {testService}, "offline_token": {"true"}, "client_id": {"docker"}, "account": {"ci"}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+reg.host+registryconfig.TokenPath+"?"+q.Encode(), nil)
	req.SetBasicAuth("ci", alice)
	resp, err := reg.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Token        string `json:"token"`
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || body.RefreshToken == "" {
		t.Fatalf("offline token: %d, refresh token %q", resp.StatusCode, body.RefreshToken)
	}
	presp, err := reg.client().PostForm("https://"+reg.host+registryconfig.TokenPath, url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {body.RefreshToken}, "service": {testService}, "scope": {"repository:team-a/app:pull"}, "client_id": {"docker"}})
	if err != nil {
		t.Fatal(err)
	}
	var refreshed struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(presp.Body).Decode(&refreshed)
	_ = presp.Body.Close()
	if presp.StatusCode != http.StatusOK {
		t.Fatalf("refresh grant: %d", presp.StatusCode)
	}
	if got := reg.do(t, http.MethodHead, manifest, "Bearer "+refreshed.AccessToken); got.StatusCode != http.StatusOK {
		t.Errorf("access token from a refresh token: %d", got.StatusCode)
	}
	if got := reg.do(t, http.MethodHead, manifest, "Bearer "+body.RefreshToken); got.StatusCode != http.StatusUnauthorized {
		t.Errorf("a refresh token used as an access token: %d, want 401", got.StatusCode)
	}
	presp, err = reg.client().PostForm("https://"+reg.host+registryconfig.TokenPath, url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {body.Token}, "service": {testService}})
	if err != nil {
		t.Fatal(err)
	}
	_ = presp.Body.Close()
	if presp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an access token used as a refresh token: %d, want 401", presp.StatusCode)
	}
	// With OIDC switched off (same keys, issuer and service), sessions end too.
	_, noOIDC := authFixture(t, testUsers)
	noOIDC.Token = regAuth.Token
	off := startRegistry(t, noOIDC, nil)
	presp, err = off.client().PostForm("https://"+off.host+registryconfig.TokenPath, url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {body.RefreshToken}, "service": {testService}})
	if err != nil {
		t.Fatal(err)
	}
	_ = presp.Body.Close()
	if presp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session after OIDC was switched off: %d, want 401", presp.StatusCode)
	}
	// A password login gets no refresh token: its client keeps the password.
	_, auth := authFixture(t, testUsers)
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	local := startRegistry(t, auth, nil)
	req, _ = http.NewRequest(http.MethodGet, "https://"+local.host+registryconfig.TokenPath+"?"+q.Encode(), nil)
	req.SetBasicAuth("alice", "alice-pw")
	resp, err = local.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body.RefreshToken = ""
	_ = json.NewDecoder(resp.Body).Decode(&body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || body.RefreshToken != "" {
		t.Errorf("password login: %d, refresh token %q; want none", resp.StatusCode, body.RefreshToken)
	}
}

func TestOIDCProviderDownLocksOutNobodyElse(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	d := dex.Start(t, dexUsers, dex.Options{})
	auth.OIDC = &registryconfig.OIDC{IssuerURL: "https://127.0.0.1:1/dex", Audiences: []string{dex.ClientID}, CAFile: d.CAFile}
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(1024, 1)
	if err := remote.Write(mustTag(t, reg.host+"/team-a/app:v1"), img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatalf("htpasswd user with the OIDC provider down: %v", err)
	}
	tok := idToken(t, d, dex.ClientID, dex.ClientSecret, "alice@example.com", "alice-oidc")
	// The token names dex's issuer, not the configured (dead) one: it is not the OIDC
	// provider's, so it is an ordinary (wrong) password.
	if _, code := reg.token(t, "ci", tok, "repository:team-a/app:pull"); code != http.StatusUnauthorized {
		t.Errorf("a JWT of another issuer as a password: %d, want 401", code)
	}
	// A password shaped like a JWT still belongs to its htpasswd user.
	_, auth2 := authFixture(t, map[string]string{"dots": "aaaaaaaaaa.bbbbbbbbbb.cccccccccc"})
	auth2.OIDC = auth.OIDC
	withTokens(t, auth2, newKey(t, time.Now().Add(-time.Minute)))
	auth2.Access = nil
	reg2 := startRegistry(t, auth2, nil)
	if _, code := reg2.token(t, "dots", "aaaaaaaaaa.bbbbbbbbbb.cccccccccc", "repository:x:pull"); code != http.StatusOK {
		t.Errorf("an htpasswd password shaped like a JWT: %d, want 200", code)
	}
}

func TestOIDCProviderDownIsUnavailable(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	d := dex.Start(t, dexUsers, dex.Options{})
	auth.OIDC = &registryconfig.OIDC{IssuerURL: d.Issuer, Audiences: []string{dex.ClientID}, CAFile: filepath.Join(t.TempDir(), "absent.pem")}
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	reg := startRegistry(t, auth, nil)
	tok := idToken(t, d, dex.ClientID, dex.ClientSecret, "alice@example.com", "alice-oidc")
	// The provider cannot be reached (its CA bundle is missing): 503, not "wrong password".
	if _, code := reg.token(t, "ci", tok, "repository:team-a/app:pull"); code != http.StatusServiceUnavailable {
		t.Errorf("ID token with the provider unreachable: %d, want 503", code)
	}
}

// TestOIDCKeyRotation follows the provider's signing-key rotation: dex rotates every 30 s
// when its key expires, and a token signed with the new key verifies (go-oidc refetches
// the JWKS on an unknown key ID) while the old key's tokens still do.
func TestOIDCKeyRotation(t *testing.T) {
	d := dex.Start(t, dexUsers, dex.Options{SigningKeyTTL: "1s"})
	reg := startRegistry(t, oidcAuth(t, d), nil)
	img, _ := random.Image(1024, 1)
	first := idToken(t, d, dex.ClientID, dex.ClientSecret, "alice@example.com", "alice-oidc")
	if err := remote.Write(mustTag(t, reg.host+"/team-a/app:v1"), img, reg.opts("ci", first)...); err != nil {
		t.Fatal(err)
	}
	kid := kidOf(t, first)
	deadline := time.Now().Add(75 * time.Second)
	var rotated string
	for time.Now().Before(deadline) {
		tok := idToken(t, d, dex.ClientID, dex.ClientSecret, "alice@example.com", "alice-oidc")
		if kidOf(t, tok) != kid {
			rotated = tok
			break
		}
		time.Sleep(time.Second)
	}
	if rotated == "" {
		t.Fatal("dex did not rotate its signing key within 75s")
	}
	const manifest = "/v2/team-a/app/manifests/v1"
	for name, tok := range map[string]string{"new key": rotated, "old key": first} {
		if got := reg.do(t, http.MethodHead, manifest, "Bearer "+tok); got.StatusCode != http.StatusOK {
			t.Errorf("token signed with the %s after rotation: %d", name, got.StatusCode)
		}
	}
}
