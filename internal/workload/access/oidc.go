package access

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// ProviderOIDC names the OpenID Connect provider in logs, metrics and tokens.
const ProviderOIDC = "oidc"

// oidcRetry is how long after a failed discovery the provider is asked again.
const oidcRetry = 10 * time.Second

// oidcSigningAlgs are the signature algorithms accepted on ID tokens (never "none", never
// HMAC: a provider's tokens are checked against its published public keys).
var oidcSigningAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}

// oidcProvider verifies ID tokens of one OpenID Connect provider. Discovery happens on
// first use (and again after a failure, at most every oidcRetry), so a provider that is
// down at start delays nothing else; go-oidc refetches the JWKS when a token names a key
// it does not know, which is how key rotation at the provider is followed.
type oidcProvider struct {
	cfg registryconfig.OIDC
	now func() time.Time

	mu       sync.Mutex
	client   *http.Client
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	lastErr  error
	lastTry  time.Time

	cache *expiringCache[Identity]
}

func newOIDCProvider(cfg registryconfig.OIDC) *oidcProvider {
	return &oidcProvider{cfg: cfg, now: time.Now, cache: newExpiringCache[Identity](tokenCacheMax)}
}

// httpClient builds the client for the provider, trusting cfg.CAFile (read on each
// discovery attempt: a mounted bundle may appear after the pod starts).
func (p *oidcProvider) httpClient() (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.cfg.CAFile != "" {
		pem, err := os.ReadFile(p.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read the OIDC CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("the OIDC CA bundle holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr, Timeout: p.cfg.Timeout.Duration}, nil
}

// discover returns the provider and its verifier, discovering them when needed.
func (p *oidcProvider) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verifier != nil {
		return p.provider, p.verifier, nil
	}
	if p.lastErr != nil && p.now().Sub(p.lastTry) < oidcRetry {
		return nil, nil, p.lastErr
	}
	p.lastTry = p.now()
	client, err := p.httpClient()
	if err != nil {
		p.lastErr = fmt.Errorf("%w: %w", errProviderUnavailable, err)
		return nil, nil, p.lastErr
	}
	p.client = client
	// The provider keeps the client of this context for its JWKS fetches.
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), p.client), p.cfg.Timeout.Duration)
	defer cancel()
	prov, err := oidc.NewProvider(dctx, p.cfg.IssuerURL)
	if err != nil {
		p.lastErr = fmt.Errorf("%w: OIDC discovery at %s: %w", errProviderUnavailable, p.cfg.IssuerURL, err)
		return nil, nil, p.lastErr
	}
	p.provider, p.lastErr = prov, nil
	p.verifier = prov.Verifier(&oidc.Config{
		SkipClientIDCheck:    true, // several audiences may be accepted: checked below
		SupportedSigningAlgs: oidcSigningAlgs,
		Now:                  p.now,
	})
	return p.provider, p.verifier, nil
}

// authenticate verifies an ID token and maps its claims to an identity. A token that does
// not verify is errBadPassword; a provider that cannot be reached errProviderUnavailable.
func (p *oidcProvider) authenticate(ctx context.Context, raw string) (Identity, error) {
	sum := sha256.Sum256([]byte(raw))
	now := p.now()
	if id, hit := p.cache.get(sum, now); hit {
		return id, nil
	}
	_, verifier, err := p.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	tok, err := verifier.Verify(ctx, raw)
	if err != nil {
		if strings.Contains(err.Error(), "fetching keys") {
			return Identity{}, fmt.Errorf("%w: %w", errProviderUnavailable, err)
		}
		return Identity{}, fmt.Errorf("%w: %w", errBadPassword, err)
	}
	accepted := func(a string) bool {
		return slices.Contains(p.cfg.Audiences, a) || (p.cfg.LoginClientID != "" && a == p.cfg.LoginClientID)
	}
	if !slices.ContainsFunc(tok.Audience, accepted) {
		return Identity{}, fmt.Errorf("%w: the token's audience %v is not accepted", errBadPassword, tok.Audience)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %w", errBadPassword, err)
	}
	id, err := p.identity(claims)
	if err != nil {
		return Identity{}, err
	}
	p.cache.put(sum, id, tok.Expiry, now)
	return id, nil
}

// identity maps verified claims to an identity.
func (p *oidcProvider) identity(claims map[string]any) (Identity, error) {
	for k, want := range p.cfg.RequiredClaims {
		if got, ok := claims[k].(string); !ok || got != want {
			return Identity{}, fmt.Errorf("%w: required claim %q is not %q", errBadPassword, k, want)
		}
	}
	name, _ := claims[p.cfg.UsernameClaim].(string)
	if name == "" || !validLoginName(name) {
		return Identity{}, fmt.Errorf("%w: the token has no usable %q claim", errBadPassword, p.cfg.UsernameClaim)
	}
	if p.cfg.UsernameClaim == "email" {
		if v, ok := claims["email_verified"].(bool); ok && !v {
			return Identity{}, fmt.Errorf("%w: the token's email is not verified", errBadPassword)
		}
	}
	id := Identity{User: p.cfg.UsernamePrefix + name, Provider: ProviderOIDC}
	switch g := claims[p.cfg.GroupsClaim].(type) {
	case string:
		id.Groups = []string{p.cfg.GroupsPrefix + g}
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok && s != "" {
				id.Groups = append(id.Groups, p.cfg.GroupsPrefix+s)
			}
		}
	}
	return id, nil
}

// loginInfo is what `dockyard login` reads from OIDCLoginPath.
type loginInfo struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"clientID"`
	Scopes   []string `json:"scopes"`
}

// LoginScopes are the scopes `dockyard login` asks for.
var LoginScopes = []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess, "profile", "email", "groups"}

// OIDCLoginHandler serves what `dockyard login` needs to know (issuer, client ID, scopes),
// or 404 when OIDC login is off.
func (c *Controller) OIDCLoginHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.oidc == nil || c.oidc.cfg.LoginClientID == "" {
			writeError(w, http.StatusNotFound, "UNSUPPORTED", "OIDC login is not enabled on this registry")
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "use GET")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(loginInfo{Issuer: c.oidc.cfg.IssuerURL, ClientID: c.oidc.cfg.LoginClientID, Scopes: LoginScopes})
	})
}

// CheckOIDC reads the provider's discovery document and its key set, as the registry
// would, trusting caPEM (the system roots when empty). The operator reports the result in
// AuthReady.
func CheckOIDC(ctx context.Context, issuerURL string, caPEM []byte, timeout time.Duration) error {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return errors.New("the CA bundle holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: timeout}
	prov, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuerURL)
	if err != nil {
		return err
	}
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := prov.Claims(&doc); err != nil {
		return fmt.Errorf("read the discovery document: %w", err)
	}
	if doc.JWKSURL == "" {
		return errors.New("the discovery document names no jwks_uri")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, doc.JWKSURL, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch the key set: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var keys struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&keys) != nil || len(keys.Keys) == 0 {
		return fmt.Errorf("the key set at %s is unusable (HTTP %d)", doc.JWKSURL, resp.StatusCode)
	}
	return nil
}
