// Package access is Dockyard's access control for the embedded registry: bcrypt htpasswd
// users, optional groups, and rules granting roles on repository patterns. It plugs into
// distribution through its access-controller registry (auth.Register) and adds what
// distribution's Basic-auth path lacks: 403 DENIED answers for known users and a catalog
// filtered to what the caller may pull.
package access

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// ControllerName is the name under which the controller is registered with distribution.
const ControllerName = "dockyard"

// OptionController is the key, in the distribution auth options, of the *Controller to use.
const OptionController = "controller"

func init() {
	if err := auth.Register(ControllerName, newFromOptions); err != nil {
		panic(fmt.Sprintf("register %s access controller: %v", ControllerName, err))
	}
}

// newFromOptions hands distribution the Controller built by the server.
func newFromOptions(options map[string]any) (auth.AccessController, error) {
	c, ok := options[OptionController].(*Controller)
	if !ok || c == nil {
		return nil, fmt.Errorf("%s access controller: option %q must hold a *access.Controller", ControllerName, OptionController)
	}
	return c, nil
}

// Actions distribution asks for.
const (
	ActionPull   = "pull"
	ActionPush   = "push"
	ActionDelete = "delete"
)

// Controller authenticates requests with the configured identity providers (htpasswd
// users, LDAP) or with tokens it issued itself, and authorizes actions against the access
// rules.
type Controller struct {
	cfg   registryconfig.Auth
	log   *slog.Logger
	users atomic.Pointer[Users]
	// tokens is the token service (nil unless cfg.Token is set); ldap the LDAP provider.
	tokens *tokenService
	ldap   *ldapProvider
	oidc   *oidcProvider
	kube   *kubeProvider
	robots atomic.Pointer[robotSet]
	// now is the clock (robot credential expiry).
	now   func() time.Time
	audit *audit
	// ruleGroups are the groups the access rules name: only these go into tokens.
	ruleGroups map[string]bool

	// dummies holds, per bcrypt cost, a hash compared against when the user is unknown, so
	// that an unknown name costs what a known one does (see dummyCost).
	dummyMu sync.Mutex
	dummies map[int][]byte
	// verified caches successful bcrypt checks: user -> HMAC(key, user:password:hash).
	cacheKey []byte
	mu       sync.Mutex
	verified map[string][32]byte
}

// NewController builds a Controller and loads its files (users, token keys) once; call
// Watch to keep them current.
func NewController(cfg registryconfig.Auth, log *slog.Logger) (*Controller, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate credential cache key: %w", err)
	}
	c := &Controller{cfg: cfg, log: log, dummies: map[int][]byte{}, cacheKey: key, verified: map[string][32]byte{},
		audit: newAudit(log), ruleGroups: map[string]bool{}, now: time.Now}
	for _, rule := range cfg.Access {
		for _, s := range rule.Subjects {
			if s.Kind == registryconfig.SubjectGroup {
				c.ruleGroups[s.Name] = true
			}
		}
	}
	if cfg.Token != nil {
		c.tokens = newTokenService(*cfg.Token)
	}
	if cfg.LDAP != nil {
		c.ldap = newLDAPProvider(*cfg.LDAP, key)
	}
	if cfg.OIDC != nil {
		c.oidc = newOIDCProvider(*cfg.OIDC)
	}
	if cfg.Kubernetes != nil {
		k, err := newKubeProvider(*cfg.Kubernetes)
		if err != nil {
			return nil, err
		}
		c.kube = k
	}
	if _, err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Collectors returns the audit metrics, for the server's metrics registry.
func (c *Controller) Collectors() []prometheus.Collector {
	out := c.audit.collectors()
	if c.kube != nil {
		out = append(out, c.kube.calls)
	}
	return out
}

// dummyCost picks the bcrypt cost at which an unknown user name is checked. A fixed cost
// would tell an observer which names exist whenever users' hashes have other costs; instead
// each unknown name gets, deterministically (an HMAC of the name under a per-process key),
// a cost drawn from the costs of the real users, so unknown names are timed like a sample
// of known ones and the same name always takes the same time.
func (c *Controller) dummyCost(u *Users, user string) int {
	if len(u.costs) == 0 {
		return bcrypt.DefaultCost
	}
	mac := hmac.New(sha256.New, c.cacheKey)
	mac.Write([]byte("dummy-cost\x00"))
	mac.Write([]byte(user))
	sum := mac.Sum(nil)
	n := uint64(0)
	for _, b := range sum[:8] {
		n = n<<8 | uint64(b)
	}
	return u.costs[n%uint64(len(u.costs))]
}

// dummyHash returns a hash of a random password at cost, made once per cost.
func (c *Controller) dummyHash(cost int) []byte {
	c.dummyMu.Lock()
	defer c.dummyMu.Unlock()
	if h, ok := c.dummies[cost]; ok {
		return h
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	h, err := bcrypt.GenerateFromPassword(pw, cost)
	if err != nil {
		h, _ = bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)
	}
	c.dummies[cost] = h
	return h
}

// looksLikeJWT reports whether s has the shape of a compact JWS: three base64url parts.
func looksLikeJWT(s string) bool {
	if len(s) < 20 || strings.Count(s, ".") != 2 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' && r != '.' {
			return false
		}
	}
	return true
}

// jwtPeek holds the claims of a JWT that choose its verifier, read without verifying
// anything.
type jwtPeek struct {
	Iss        string          `json:"iss"`
	Sub        string          `json:"sub"`
	Aud        json.RawMessage `json:"aud"`
	Kubernetes json.RawMessage `json:"kubernetes.io"`
}

// peekJWT reads a JWT's claims without verifying them.
func peekJWT(raw string) jwtPeek {
	var c jwtPeek
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return c
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c
	}
	_ = json.Unmarshal(payload, &c)
	return c
}

// hasAudience reports whether the aud claim (a string or a list) names a.
func (p jwtPeek) hasAudience(a string) bool {
	var one string
	if json.Unmarshal(p.Aud, &one) == nil {
		return one == a
	}
	var many []string
	return json.Unmarshal(p.Aud, &many) == nil && slices.Contains(many, a)
}

// Kinds of JWT the registry accepts, by who verifies them.
const (
	jwtRegistryToken  = "token"
	jwtPullCredential = ProviderPullSecret
	jwtReplication    = ProviderReplication
	jwtOIDC           = ProviderOIDC
	jwtServiceAccount = ProviderServiceAccount
)

// jwtKind chooses the verifier of a JWT from its unverified claims: the registry's own
// issuer (registry tokens, pull credentials), the OIDC issuer, or a Kubernetes
// ServiceAccount token. "" when none is configured for it.
func (c *Controller) jwtKind(raw string) string {
	p := peekJWT(raw)
	switch {
	case c.tokens != nil && p.Iss == c.tokens.cfg.Issuer:
		if p.hasAudience(registryconfig.PullCredentialAudience(c.tokens.cfg.Service)) {
			return jwtPullCredential
		}
		if p.hasAudience(registryconfig.ReplicationCredentialAudience(c.tokens.cfg.Service)) {
			return jwtReplication
		}
		return jwtRegistryToken
	case c.oidc != nil && p.Iss == c.oidc.cfg.IssuerURL:
		return jwtOIDC
	case c.kube != nil && c.kube.cfg.ServiceAccounts != nil && isServiceAccountToken(p):
		return jwtServiceAccount
	}
	return ""
}

// verifyJWT verifies a JWT of the given kind (see jwtKind).
func (c *Controller) verifyJWT(ctx context.Context, kind, raw string) (Identity, error) {
	switch kind {
	case jwtRegistryToken:
		return c.tokens.verify(raw)
	case jwtPullCredential:
		return c.tokens.verifyPull(raw)
	case jwtReplication:
		return c.tokens.verifyReplication(raw)
	case jwtOIDC:
		id, err := c.oidc.authenticate(ctx, raw)
		if err == nil {
			err = c.checkForeignName(&id)
		}
		return id, err
	case jwtServiceAccount:
		id, err := c.kube.authenticate(ctx, raw)
		if err == nil {
			err = c.checkForeignName(&id)
		}
		return id, err
	}
	return Identity{}, fmt.Errorf("%w: not a token this registry accepts", errBadPassword)
}

// Identity providers, as named in logs, metrics and tokens.
const (
	ProviderHtpasswd = "htpasswd"
	ProviderLDAP     = "ldap"
)

// Identity is who a request comes from, as a provider answered.
type Identity struct {
	User     string // empty for anonymous
	Groups   []string
	Provider string

	// token is true when the identity came from a registry token; grants is then the
	// access that token carries.
	token  bool
	grants grants
	// repositories limits a pull or replication credential's identity to these patterns.
	repositories []string
	// actions are what a replication credential's identity may do on repositories.
	actions []string
	// expires is when the credential that proved the identity expires (ServiceAccount
	// tokens, pull credentials); tokens issued for it end no later.
	expires time.Time
}

func (id Identity) anonymous() bool { return id.User == "" }

var errNoCredentials = errors.New("no credentials")

// authMemo remembers, for one request, the outcome of checking its credentials: several
// layers ask (the download path, mount filtering, GC markers, distribution), and a wrong
// password must cost one bcrypt comparison, not one per layer.
type authMemo struct {
	mu     sync.Mutex
	header string
	done   bool
	id     Identity
	err    error
}

type authMemoKey struct{}

// WithAuthMemo returns r with a slot in which the first credential check of the request is
// remembered for the later ones.
func WithAuthMemo(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), authMemoKey{}, &authMemo{}))
}

// authenticate checks the request's credentials, once per request when the request
// carries a memo (WithAuthMemo).
func (c *Controller) authenticate(r *http.Request) (Identity, error) {
	m, _ := r.Context().Value(authMemoKey{}).(*authMemo)
	if m == nil {
		return c.checkCredentials(r)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h := r.Header.Get("Authorization")
	if !m.done || m.header != h {
		m.id, m.err = c.checkCredentials(r)
		m.header, m.done = h, true
	}
	return m.id, m.err
}

// checkCredentials checks the request's credentials: a registry token (Bearer) or a user
// name and password (Basic). It returns errNoCredentials when there are none and an error
// wrapping auth.ErrAuthenticationFailure when they are wrong.
func (c *Controller) checkCredentials(r *http.Request) (Identity, error) {
	h := r.Header.Get("Authorization")
	if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		tok = strings.TrimSpace(tok)
		kind := c.jwtKind(tok)
		if kind == "" {
			if c.tokens == nil {
				return Identity{}, fmt.Errorf("%w: bearer tokens are not enabled", auth.ErrAuthenticationFailure)
			}
			kind = jwtRegistryToken // refused with the reason the token service gives
		}
		id, err := c.verifyJWT(r.Context(), kind, tok)
		if err != nil {
			c.audit.authFailed(r, "", kind, err)
			return Identity{}, fmt.Errorf("%w: %w", auth.ErrAuthenticationFailure, err)
		}
		return id, nil
	}
	user, pass, ok := r.BasicAuth()
	if !ok || (user == "" && pass == "") {
		// podman, skopeo and buildah send empty Basic credentials (`Basic Og==`) when they
		// have none: that is an anonymous request, not a failed login.
		return Identity{}, errNoCredentials
	}
	id, provider, err := c.login(r.Context(), user, pass)
	if err != nil {
		c.audit.authFailed(r, user, provider, err)
		return Identity{}, fmt.Errorf("%w: %w", auth.ErrAuthenticationFailure, err)
	}
	return id, nil
}

// login checks a user name and password with the providers, in this order: a password
// that is a JWT goes to its verifier (see jwtKind: registry tokens and pull credentials,
// OIDC ID tokens, ServiceAccount tokens; the user name is not used:
// `docker login -u any -p $TOKEN`);
// a name starting with robot+ to the robot accounts; otherwise the htpasswd users, then
// LDAP. The first provider that knows the name decides;
// a provider that is down fails only the logins it would have decided. It returns the
// provider that decided (or was last asked) for the audit log.
func (c *Controller) login(ctx context.Context, user, pass string) (Identity, string, error) {
	if looksLikeJWT(pass) {
		if kind := c.jwtKind(pass); kind != "" {
			id, err := c.verifyJWT(ctx, kind, pass)
			return id, kind, err
		}
	}
	if user == "" {
		return Identity{}, "", errUnknownUser
	}
	if strings.HasPrefix(user, registryconfig.RobotUserPrefix) {
		id, err := c.robotLogin(user, pass)
		return id, ProviderRobot, err
	}
	if u := c.users.Load(); u != nil {
		if hash, known := u.hashes[user]; known {
			if !c.checkBcrypt(user, pass, hash) {
				return Identity{}, ProviderHtpasswd, errBadPassword
			}
			return Identity{User: user, Groups: u.groups[user], Provider: ProviderHtpasswd}, ProviderHtpasswd, nil
		}
		if c.ldap == nil {
			// Cost what a known name costs, so timing does not tell which names exist.
			_ = bcrypt.CompareHashAndPassword(c.dummyHash(c.dummyCost(u, user)), []byte(pass))
			return Identity{}, ProviderHtpasswd, errUnknownUser
		}
	}
	if c.ldap != nil {
		id, err := c.ldap.authenticate(ctx, user, pass)
		if err == nil {
			err = c.checkForeignName(&id)
		}
		return id, ProviderLDAP, err
	}
	return Identity{}, "", errUnknownUser
}

// errNameTaken refuses a directory or OIDC login whose user name belongs to another
// provider: rules name users by name alone, so such a login would get the other user's
// grants.
var errNameTaken = fmt.Errorf("%w: the user name belongs to another identity provider", errBadPassword)

// errNameReserved refuses a directory or OIDC login whose name Kubernetes reserves.
var errNameReserved = fmt.Errorf("%w: names starting with system: are reserved for Kubernetes identities", errBadPassword)

// checkForeignName refuses an LDAP or OIDC identity whose name is a robot's (robot+…) or
// an htpasswd user's, compared without case (directories match names without case, so
// ADMIN could otherwise log in from the directory as the local admin).
//
// Names and groups starting with system: belong to Kubernetes: only a ServiceAccount token
// may carry them (a directory user named system:serviceaccount:ci:builder would otherwise
// match rules and RoleBindings written for that ServiceAccount). Such a user is refused and
// such groups are dropped.
func (c *Controller) checkForeignName(id *Identity) error {
	if strings.HasPrefix(strings.ToLower(id.User), registryconfig.RobotUserPrefix) {
		return errNameTaken
	}
	if id.Provider != ProviderServiceAccount {
		if strings.HasPrefix(strings.ToLower(id.User), reservedPrefix) {
			return errNameReserved
		}
		id.Groups = slices.DeleteFunc(slices.Clone(id.Groups), func(g string) bool {
			return strings.HasPrefix(strings.ToLower(g), reservedPrefix)
		})
	}
	if u := c.users.Load(); u != nil {
		for name := range u.hashes {
			if strings.EqualFold(name, id.User) {
				return errNameTaken
			}
		}
	}
	return nil
}

// checkBcrypt compares a password with a bcrypt hash, remembering a success (as an HMAC,
// never the password) so a client sending Basic credentials on every request pays bcrypt
// once.
func (c *Controller) checkBcrypt(user, pass string, hash []byte) bool {
	mac := hmac.New(sha256.New, c.cacheKey)
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(pass))
	mac.Write([]byte{0})
	mac.Write(hash)
	var sum [32]byte
	copy(sum[:], mac.Sum(nil))
	c.mu.Lock()
	cached, hit := c.verified[user]
	c.mu.Unlock()
	if hit && hmac.Equal(cached[:], sum[:]) {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	c.mu.Lock()
	c.verified[user] = sum
	c.mu.Unlock()
	return true
}
