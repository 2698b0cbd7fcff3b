package access

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// tokenLeeway absorbs clock differences between replicas (a token issued by one pod and
// presented to another).
const tokenLeeway = 30 * time.Second

// tokenCacheMax bounds the cache of verified tokens.
const tokenCacheMax = 50000

// tokenClaims are the claims of a registry token: the registered ones, the access granted
// (the Docker registry token format), and the identity it was issued to, so the access
// rules can be re-checked on every request (a rule removed takes effect at once, not when
// the token expires).
type tokenClaims struct {
	jwt.RegisteredClaims
	Access   []tokenAccess `json:"access"`
	Groups   []string      `json:"groups,omitempty"`
	Provider string        `json:"idp,omitempty"`
	// Repos limits a pull credential (and the tokens issued for it) to pulling these
	// repository patterns.
	Repos []string `json:"repos,omitempty"`
	// Acts are the actions a replication credential (and the tokens issued for it) grants
	// on Repos.
	Acts []string `json:"acts,omitempty"`
}

// tokenAccess is one resource and the actions granted on it.
type tokenAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// grants is the access a token carries: "type:name" -> actions.
type grants map[string][]string

func (g grants) allows(typ, name, action string) bool {
	acts := g[typ+":"+name]
	return slices.Contains(acts, action) || slices.Contains(acts, "*")
}

// tokenService issues and verifies registry tokens with the keys of the keys file.
type tokenService struct {
	cfg registryconfig.Token
	now func() time.Time

	keys atomic.Pointer[keySet]

	cache *expiringCache[cachedToken]
}

// cachedToken is a verified token's identity and the key set that verified it: a token
// verified with keys since replaced is checked again.
type cachedToken struct {
	id   Identity
	keys *keySet
}

// keySet is one parsed keys file.
type keySet struct {
	raw  []byte
	keys []parsedKey // sorted by SignFrom
	byID map[string]*ecdsa.PrivateKey
}

type parsedKey struct {
	id       string
	key      *ecdsa.PrivateKey
	signFrom time.Time
}

func newTokenService(cfg registryconfig.Token) *tokenService {
	return &tokenService{cfg: cfg, now: time.Now, cache: newExpiringCache[cachedToken](tokenCacheMax)}
}

// reload re-reads the keys file; it reports whether it changed. A file that cannot be read
// or parsed keeps the previous keys (and is an error on first load).
func (ts *tokenService) reload() (bool, error) {
	raw, err := os.ReadFile(ts.cfg.KeysFile)
	if err != nil {
		return false, fmt.Errorf("read token keys: %w", err)
	}
	if old := ts.keys.Load(); old != nil && bytes.Equal(old.raw, raw) {
		return false, nil
	}
	ks, err := parseTokenKeys(raw)
	if err != nil {
		return false, err
	}
	ts.keys.Store(ks)
	ts.cache.reset()
	return true, nil
}

// parseTokenKeys parses a keys file (registryconfig.TokenKeys as JSON).
func parseTokenKeys(raw []byte) (*keySet, error) {
	var tk registryconfig.TokenKeys
	if err := json.Unmarshal(raw, &tk); err != nil {
		return nil, fmt.Errorf("parse token keys: %w", err)
	}
	ks := &keySet{raw: raw, byID: map[string]*ecdsa.PrivateKey{}}
	for i, k := range tk.Keys {
		block, _ := pem.Decode([]byte(k.PrivateKey))
		if block == nil {
			return nil, fmt.Errorf("token key %d (%s): no PEM block", i, k.ID)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("token key %d (%s): %w", i, k.ID, err)
		}
		ec, ok := parsed.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("token key %d (%s): not an ECDSA P-256 key", i, k.ID)
		}
		if k.ID == "" {
			return nil, fmt.Errorf("token key %d: no id", i)
		}
		ks.keys = append(ks.keys, parsedKey{id: k.ID, key: ec, signFrom: k.SignFrom})
		ks.byID[k.ID] = ec
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("parse token keys: the file lists no key")
	}
	sort.SliceStable(ks.keys, func(i, j int) bool { return ks.keys[i].signFrom.Before(ks.keys[j].signFrom) })
	return ks, nil
}

// signingKey is the newest key whose SignFrom has passed (the oldest one when none has:
// a clock behind the operator's).
func (ks *keySet) signingKey(now time.Time) parsedKey {
	pick := ks.keys[0]
	for _, k := range ks.keys {
		if !k.signFrom.After(now) {
			pick = k
		}
	}
	return pick
}

// issue signs a token for id granting access.
// maxTTL, when positive, shortens the token's lifetime below the configured TTL.
func (ts *tokenService) issue(id Identity, access []tokenAccess, maxTTL time.Duration) (string, time.Time, time.Duration, error) {
	ks := ts.keys.Load()
	if ks == nil {
		return "", time.Time{}, 0, errors.New("no token keys loaded")
	}
	now := ts.now()
	ttl := ts.cfg.TTL.Duration
	if maxTTL > 0 && maxTTL < ttl {
		ttl = maxTTL
	}
	k := ks.signingKey(now)
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, 0, err
	}
	if access == nil {
		access = []tokenAccess{}
	}
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    ts.cfg.Issuer,
			Subject:   id.User,
			Audience:  jwt.ClaimStrings{ts.cfg.Service},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now.Add(-tokenLeeway)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
		Access:   access,
		Groups:   id.Groups,
		Provider: id.Provider,
		Repos:    id.repositories,
		Acts:     id.actions,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = k.id
	signed, err := t.SignedString(k.key)
	if err != nil {
		return "", time.Time{}, 0, fmt.Errorf("sign token: %w", err)
	}
	return signed, now, ttl, nil
}

// refreshAudience is the audience of refresh tokens: a refresh token is never accepted as
// an access token (whose audience is the service itself), nor the other way round.
func (ts *tokenService) refreshAudience() string { return ts.cfg.Service + "#refresh" }

// issueRefresh signs a refresh token for id, valid for the session TTL.
func (ts *tokenService) issueRefresh(id Identity) (string, error) {
	ks := ts.keys.Load()
	if ks == nil {
		return "", errors.New("no token keys loaded")
	}
	now := ts.now()
	k := ks.signingKey(now)
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: ts.cfg.Issuer, Subject: id.User, Audience: jwt.ClaimStrings{ts.refreshAudience()},
			ExpiresAt: jwt.NewNumericDate(now.Add(ts.cfg.SessionTTL.Duration)),
			NotBefore: jwt.NewNumericDate(now.Add(-tokenLeeway)), IssuedAt: jwt.NewNumericDate(now),
			ID: base64.RawURLEncoding.EncodeToString(jti),
		},
		Access: []tokenAccess{}, Groups: id.Groups, Provider: id.Provider,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = k.id
	return t.SignedString(k.key)
}

// verifyRefresh checks a refresh token and returns the identity it was issued to.
func (ts *tokenService) verifyRefresh(raw string) (Identity, error) {
	claims, err := ts.parse(ts.keys.Load(), raw, ts.refreshAudience())
	if err != nil {
		return Identity{}, err
	}
	return Identity{User: claims.Subject, Groups: claims.Groups, Provider: claims.Provider}, nil
}

// errNotOurToken marks a bearer token this service did not issue (another provider's,
// e.g. an OIDC ID token, may be tried next).
var errNotOurToken = errors.New("not a token of this registry")

// verify checks a token (signature with a known key, issuer, audience, expiry) and
// returns the identity and grants it carries. Verified tokens are cached until they expire.
func (ts *tokenService) verify(raw string) (Identity, error) {
	sum := sha256.Sum256([]byte(raw))
	now := ts.now()
	ks := ts.keys.Load()
	if c, hit := ts.cache.get(sum, now); hit && c.keys == ks {
		return c.id, nil
	}
	claims, err := ts.parse(ks, raw, ts.cfg.Service)
	if err != nil {
		return Identity{}, err
	}
	g := grants{}
	for _, a := range claims.Access {
		k := a.Type + ":" + a.Name
		g[k] = append(g[k], a.Actions...)
	}
	id := Identity{User: claims.Subject, Groups: claims.Groups, Provider: claims.Provider, grants: g, token: true,
		repositories: claims.Repos, actions: claims.Acts}
	if id.Provider == ProviderPullSecret && len(id.repositories) == 0 {
		return Identity{}, errors.New("a pull credential's token names no repository")
	}
	if (id.Provider == ProviderReplication || id.Provider == ProviderScanner) && (len(id.repositories) == 0 || len(id.actions) == 0) {
		return Identity{}, errors.New("a replication credential's token names no repository or action")
	}
	ts.cache.put(sum, cachedToken{id: id, keys: ks}, claims.ExpiresAt.Time, now)
	return id, nil
}

// ProviderPullSecret names pull credentials (the operator's pull Secrets) in logs, metrics
// and tokens.
const ProviderPullSecret = "pull-secret"

// verifyPull checks a pull credential (see registryconfig.SignPullCredential): signed with
// a token key, audience Service#pull. Its identity may pull the patterns it names, nothing
// else.
func (ts *tokenService) verifyPull(raw string) (Identity, error) {
	sum := sha256.Sum256([]byte(raw))
	now := ts.now()
	ks := ts.keys.Load()
	if c, hit := ts.cache.get(sum, now); hit && c.keys == ks {
		return c.id, nil
	}
	claims, err := ts.parse(ks, raw, registryconfig.PullCredentialAudience(ts.cfg.Service))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", errBadPassword, err)
	}
	if !strings.HasPrefix(claims.Subject, registryconfig.PullCredentialUserPrefix) || len(claims.Repos) == 0 {
		return Identity{}, fmt.Errorf("%w: not a pull credential", errBadPassword)
	}
	id := Identity{User: claims.Subject, Provider: ProviderPullSecret, repositories: claims.Repos, expires: claims.ExpiresAt.Time}
	ts.cache.put(sum, cachedToken{id: id, keys: ks}, claims.ExpiresAt.Time, now)
	return id, nil
}

// ProviderReplication names replication credentials (the operator's replicator) in logs,
// metrics and tokens.
const ProviderReplication = "replication"

// ProviderScanner names scanner credentials (a Registry's vulnerability scanner, see
// registryconfig.SignScannerCredential) in logs, metrics and tokens.
const ProviderScanner = "scanner"

// verifyReplication checks a replication credential (see
// registryconfig.SignReplicationCredential): signed with a token key, audience
// Service#replication. Its identity may do the actions it names on the patterns it names,
// nothing else.
func (ts *tokenService) verifyReplication(raw string) (Identity, error) {
	sum := sha256.Sum256([]byte(raw))
	now := ts.now()
	ks := ts.keys.Load()
	if c, hit := ts.cache.get(sum, now); hit && c.keys == ks {
		return c.id, nil
	}
	claims, err := ts.parse(ks, raw, registryconfig.ReplicationCredentialAudience(ts.cfg.Service))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", errBadPassword, err)
	}
	provider := ProviderReplication
	if strings.HasPrefix(claims.Subject, registryconfig.ScannerCredentialUserPrefix) {
		provider = ProviderScanner
	} else if !strings.HasPrefix(claims.Subject, registryconfig.ReplicationCredentialUserPrefix) {
		return Identity{}, fmt.Errorf("%w: not a replication credential", errBadPassword)
	}
	if len(claims.Repos) == 0 || len(claims.Acts) == 0 {
		return Identity{}, fmt.Errorf("%w: not a replication credential", errBadPassword)
	}
	id := Identity{User: claims.Subject, Provider: provider, repositories: claims.Repos,
		actions: claims.Acts, expires: claims.ExpiresAt.Time}
	ts.cache.put(sum, cachedToken{id: id, keys: ks}, claims.ExpiresAt.Time, now)
	return id, nil
}

// parse checks a token's signature (a listed key, ES256 only), issuer, audience and times.
func (ts *tokenService) parse(ks *keySet, raw, audience string) (*tokenClaims, error) {
	if ks == nil {
		return nil, errors.New("no token keys loaded")
	}
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := ks.byID[kid]
		if !ok {
			return nil, fmt.Errorf("%w: unknown key id %q", errNotOurToken, kid)
		}
		return &k.PublicKey, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithIssuer(ts.cfg.Issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(ts.now),
	)
	if err != nil {
		return nil, err
	}
	return &claims, nil
}
