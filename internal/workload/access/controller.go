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
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/distribution/distribution/v3/registry/auth"
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

// Controller authenticates Basic credentials against the users file and authorizes actions
// against the access rules.
type Controller struct {
	cfg   registryconfig.Auth
	log   *slog.Logger
	users atomic.Pointer[Users]

	// dummies holds, per bcrypt cost, a hash compared against when the user is unknown, so
	// that an unknown name costs what a known one does (see dummyCost).
	dummyMu sync.Mutex
	dummies map[int][]byte
	// verified caches successful bcrypt checks: user -> HMAC(key, user:password:hash).
	cacheKey []byte
	mu       sync.Mutex
	verified map[string][32]byte
}

// NewController builds a Controller and loads the users files once; call Watch to keep them
// current.
func NewController(cfg registryconfig.Auth, log *slog.Logger) (*Controller, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate credential cache key: %w", err)
	}
	c := &Controller{cfg: cfg, log: log, dummies: map[int][]byte{}, cacheKey: key, verified: map[string][32]byte{}}
	if _, err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
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

// identity is who a request comes from.
type identity struct {
	user   string // empty for anonymous
	groups []string
}

func (id identity) anonymous() bool { return id.user == "" }

var errNoCredentials = errors.New("no credentials")

// authMemo remembers, for one request, the outcome of checking its credentials: several
// layers ask (the download path, mount filtering, GC markers, distribution), and a wrong
// password must cost one bcrypt comparison, not one per layer.
type authMemo struct {
	mu     sync.Mutex
	header string
	done   bool
	id     identity
	err    error
}

type authMemoKey struct{}

// WithAuthMemo returns r with a slot in which the first credential check of the request is
// remembered for the later ones.
func WithAuthMemo(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), authMemoKey{}, &authMemo{}))
}

// authenticate checks the request's Basic credentials, once per request when the request
// carries a memo (WithAuthMemo).
func (c *Controller) authenticate(r *http.Request) (identity, error) {
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

// checkCredentials checks the request's Basic credentials. It returns errNoCredentials when
// there are none and auth.ErrAuthenticationFailure when they are wrong.
func (c *Controller) checkCredentials(r *http.Request) (identity, error) {
	user, pass, ok := r.BasicAuth()
	if !ok || (user == "" && pass == "") {
		// podman, skopeo and buildah send empty Basic credentials (`Basic Og==`) when they
		// have none: that is an anonymous request, not a failed login.
		return identity{}, errNoCredentials
	}
	if user == "" {
		return identity{}, auth.ErrAuthenticationFailure
	}
	u := c.users.Load()
	hash, known := u.hashes[user]
	if !known {
		_ = bcrypt.CompareHashAndPassword(c.dummyHash(c.dummyCost(u, user)), []byte(pass))
		return identity{}, auth.ErrAuthenticationFailure
	}
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
	if !hit || !hmac.Equal(cached[:], sum[:]) {
		if err := bcrypt.CompareHashAndPassword(hash, []byte(pass)); err != nil {
			return identity{}, auth.ErrAuthenticationFailure
		}
		c.mu.Lock()
		c.verified[user] = sum
		c.mu.Unlock()
	}
	return identity{user: user, groups: u.groups[user]}, nil
}

// allowed reports whether id may perform action on repository.
func (c *Controller) allowed(id identity, repository, action string) bool {
	if action == ActionPull && c.cfg.AnonymousPull {
		return true
	}
	if id.anonymous() {
		return false
	}
	if len(c.cfg.Access) == 0 {
		return true
	}
	for _, rule := range c.cfg.Access {
		if !roleAllows(rule.Role, action) || !subjectMatches(rule.Subjects, id) {
			continue
		}
		for _, p := range rule.Repositories {
			if MatchRepository(p, repository) {
				return true
			}
		}
	}
	return false
}

func roleAllows(role registryconfig.Role, action string) bool {
	switch role {
	case registryconfig.RoleManager:
		return action == ActionPull || action == ActionPush || action == ActionDelete
	case registryconfig.RoleViewer:
		return action == ActionPull
	}
	return false
}

func subjectMatches(subjects []registryconfig.Subject, id identity) bool {
	for _, s := range subjects {
		switch s.Kind {
		case registryconfig.SubjectUser:
			if s.Name == id.user {
				return true
			}
		case registryconfig.SubjectGroup:
			for _, g := range id.groups {
				if g == s.Name {
					return true
				}
			}
		}
	}
	return false
}

// Authorized implements auth.AccessController.
func (c *Controller) Authorized(r *http.Request, access ...auth.Access) (*auth.Grant, error) {
	id, err := c.authenticate(r)
	switch {
	case errors.Is(err, errNoCredentials):
		if !c.cfg.AnonymousPull || len(access) == 0 || !c.allAllowed(identity{}, access) {
			return nil, &challenge{realm: c.cfg.Realm, err: auth.ErrInvalidCredential}
		}
	case err != nil:
		c.log.Info("Authentication failed", "user", basicUser(r), "path", r.URL.Path)
		return nil, &challenge{realm: c.cfg.Realm, err: err}
	default:
		if !c.allAllowed(id, access) {
			c.log.Info("Access denied", "user", id.user, "access", describe(access))
			if d := decisionFrom(r.Context()); d != nil {
				d.denied.Store(true)
			}
			return nil, &challenge{realm: c.cfg.Realm, err: errDenied, denied: true}
		}
	}
	var resources []auth.Resource
	for _, a := range access {
		resources = append(resources, a.Resource)
	}
	return &auth.Grant{User: auth.UserInfo{Name: id.user}, Resources: resources}, nil
}

var errDenied = errors.New("requested access to the resource is denied")

func (c *Controller) allAllowed(id identity, access []auth.Access) bool {
	for _, a := range access {
		switch a.Type {
		case "repository":
			if !c.allowed(id, a.Name, a.Action) {
				return false
			}
		case "registry":
			// The catalog: every authenticated caller (and anonymous callers when anonymous
			// pull is on) may list; the catalog filter narrows the list to pullable names.
			if a.Name != "catalog" || (id.anonymous() && !c.cfg.AnonymousPull) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func describe(access []auth.Access) []string {
	out := make([]string, 0, len(access))
	for _, a := range access {
		out = append(out, a.Type+":"+a.Name+":"+a.Action)
	}
	return out
}

func basicUser(r *http.Request) string {
	u, _, _ := r.BasicAuth()
	return u
}

// challenge is a Basic challenge (401); a denied challenge is turned into 403 by Middleware.
type challenge struct {
	realm  string
	err    error
	denied bool
}

var _ auth.Challenge = (*challenge)(nil)

func (ch *challenge) SetHeaders(_ *http.Request, w http.ResponseWriter) {
	if ch.denied {
		return
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", ch.realm))
}

func (ch *challenge) Error() string {
	return fmt.Sprintf("basic authentication challenge for realm %q: %v", ch.realm, ch.err)
}

// decision carries, through the request context, whether the access controller denied a
// known user, so Middleware can answer 403 instead of distribution's 401.
type decision struct{ denied atomic.Bool }

type decisionKey struct{}

func decisionFrom(ctx context.Context) *decision {
	d, _ := ctx.Value(decisionKey{}).(*decision)
	return d
}

// CanPush reports whether the request's credentials allow pushing to repository.
func (c *Controller) CanPush(r *http.Request, repository string) bool {
	id, err := c.authenticate(r)
	return err == nil && c.allowed(id, repository, ActionPush)
}
