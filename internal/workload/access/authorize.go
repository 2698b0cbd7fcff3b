package access

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/distribution/distribution/v3/registry/auth"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// allowed reports whether id may perform action on repository: the access rules or
// Kubernetes RBAC allow it and, for a registry token, the token grants it too. A refusal
// may carry a reason for the caller; an error means an authorizer could not be asked.
func (c *Controller) allowed(ctx context.Context, id Identity, repository, action string) (bool, string, error) {
	if id.token && !id.grants.allows("repository", repository, action) {
		return false, "", nil
	}
	return c.permits(ctx, id, repository, action)
}

// permits reports whether id may perform action on repository, whatever token it holds:
// the access rules (see rulesAllow), then, when on, Kubernetes RBAC.
func (c *Controller) permits(ctx context.Context, id Identity, repository, action string) (bool, string, error) {
	if c.rulesAllow(id, repository, action) {
		return true, "", nil
	}
	if c.kube == nil || c.kube.cfg.RBAC == nil || id.anonymous() || id.Provider == ProviderPullSecret || id.Provider == ProviderReplication || id.Provider == ProviderScanner ||
		(id.Provider == ProviderRobot && !c.robotKnown(id.User)) {
		return false, "", nil
	}
	return c.kube.allows(ctx, id, repository, action)
}

// rulesAllow reports whether the access rules let id perform action on repository.
func (c *Controller) rulesAllow(id Identity, repository, action string) bool {
	if action == ActionPull && c.cfg.AnonymousPull {
		return true
	}
	if id.anonymous() {
		return false
	}
	switch id.Provider {
	case ProviderPullSecret:
		// A pull credential pulls what it names and nothing else.
		return action == ActionPull && slices.ContainsFunc(id.repositories, func(p string) bool {
			return MatchRepository(p, repository)
		})
	case ProviderReplication, ProviderScanner:
		// A replication (or scanner) credential does the actions it names on what it names.
		return slices.Contains(id.actions, action) && slices.ContainsFunc(id.repositories, func(p string) bool {
			return MatchRepository(p, repository)
		})
	case ProviderRobot:
		// A robot may do what its own grant allows, plus what access rules naming it allow;
		// once removed from the robots file, nothing (its tokens included).
		if !c.robotKnown(id.User) {
			return false
		}
		if c.robotAllows(id.User, repository, action) {
			return true
		}
		return c.rulesMatch(id, repository, action)
	}
	if len(c.cfg.Access) == 0 {
		// Without rules, the htpasswd users (a list someone wrote) are Managers; a directory
		// or an identity provider vouches for too many people to make them all Managers.
		return id.Provider == ProviderHtpasswd
	}
	return c.rulesMatch(id, repository, action)
}

// rulesMatch reports whether an access rule grants id action on repository.
func (c *Controller) rulesMatch(id Identity, repository, action string) bool {
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

func subjectMatches(subjects []registryconfig.Subject, id Identity) bool {
	for _, s := range subjects {
		switch s.Kind {
		case registryconfig.SubjectUser:
			if s.Name == id.User {
				return true
			}
		case registryconfig.SubjectGroup:
			for _, g := range id.Groups {
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
	unavailable := func(err error) (*auth.Grant, error) {
		// Not the client's fault: Middleware answers 503, so clients retry instead of
		// reporting a wrong password or a missing permission.
		if d := decisionFrom(r.Context()); d != nil {
			d.unavailable.Store(true)
		}
		return nil, &challenge{realm: c.cfg.Realm, err: err, unavailable: true}
	}
	switch {
	case errors.Is(err, errNoCredentials):
		if !c.cfg.AnonymousPull || len(access) == 0 {
			return nil, c.challenge(r, access, auth.ErrInvalidCredential, "")
		}
		if ok, _, err := c.allAllowed(r.Context(), Identity{}, access, true); err != nil || !ok {
			return nil, c.challenge(r, access, auth.ErrInvalidCredential, "")
		}
	case err != nil:
		if errors.Is(err, errProviderUnavailable) {
			return unavailable(err)
		}
		return nil, c.challenge(r, access, err, "invalid_token")
	default:
		ok, reason, err := c.allAllowed(r.Context(), id, access, true)
		if ok && err == nil && id.Provider == ProviderScanner && !scannerMayWrite(r) {
			// Denied outright: no other token would allow it.
			reason := "a scanner credential stores manifests by digest only (its reports); it never writes a tag"
			c.audit.denied(r, id, describe(access), reason)
			if d := decisionFrom(r.Context()); d != nil {
				d.deny(reason)
			}
			return nil, &challenge{err: errDenied, denied: true, reason: reason}
		}
		if err != nil {
			c.log.Warn("An authorizer could not be asked", "user", id.User, "err", err)
			return unavailable(err)
		}
		if !ok {
			if id.anonymous() {
				// An anonymous token: logging in may help, so challenge rather than refuse.
				return nil, c.challenge(r, access, auth.ErrInvalidCredential, "insufficient_scope")
			}
			if id.token {
				// The rules may allow it while this token was issued for other scopes: send
				// the client back to the token endpoint for this one.
				ok, _, err := c.allAllowed(r.Context(), id, access, false)
				if err != nil {
					return unavailable(err)
				}
				if ok {
					return nil, c.challenge(r, access, errDenied, "insufficient_scope")
				}
			}
			c.audit.denied(r, id, describe(access), reason)
			if d := decisionFrom(r.Context()); d != nil {
				d.deny(reason)
			}
			return nil, &challenge{err: errDenied, denied: true, reason: reason}
		}
	}
	var resources []auth.Resource
	for _, a := range access {
		resources = append(resources, a.Resource)
	}
	return &auth.Grant{User: auth.UserInfo{Name: id.User}, Resources: resources}, nil
}

var errDenied = errors.New("requested access to the resource is denied")

// scannerMayWrite is false for a manifest written by tag: the scanner stores its reports
// by digest, so a scanner that was taken over (it parses hostile images) cannot move a tag.
func scannerMayWrite(r *http.Request) bool {
	rt, ok := route.Of(r)
	if !ok || rt.Kind != route.Manifest || r.Method != http.MethodPut {
		return true
	}
	_, byDigest := rt.ManifestDigest()
	return byDigest
}

// deniedMessage is the message of a 403 DENIED answer: the reason, when an authorizer gave
// one (Kubernetes RBAC names the verb, resource and namespace that were missing).
func deniedMessage(reason string) string {
	if reason == "" {
		return errDenied.Error()
	}
	return errDenied.Error() + ": " + reason
}

// allAllowed reports whether id may have every access; withGrants also requires a token's
// grants to cover it (rules alone tell whether a new token would). A refusal carries the
// reasons the authorizers gave for every access refused (a push asks for pull and push).
func (c *Controller) allAllowed(ctx context.Context, id Identity, access []auth.Access, withGrants bool) (bool, string, error) {
	allowed := c.permits
	if withGrants {
		allowed = c.allowed
	}
	var refused []string // reasons of the refused repository actions, all of them
	denied := false
	for _, a := range access {
		switch a.Type {
		case "repository":
			ok, reason, err := allowed(ctx, id, a.Name, a.Action)
			if err != nil {
				return false, "", err
			}
			if !ok {
				denied = true
				if reason != "" {
					refused = append(refused, reason)
				}
			}
		case "registry":
			// The catalog: every authenticated caller (and anonymous callers when anonymous
			// pull is on) may list; the catalog filter narrows the list to pullable names.
			if a.Name != "catalog" || (id.anonymous() && !c.cfg.AnonymousPull) {
				return false, "", nil
			}
			if withGrants && id.token && !id.grants.allows("registry", "catalog", "*") {
				return false, "", nil
			}
		default:
			return false, "", nil
		}
	}
	if denied {
		return false, strings.Join(refused, "; "), nil
	}
	return true, "", nil
}

func describe(access []auth.Access) []string {
	out := make([]string, 0, len(access))
	for _, a := range access {
		out = append(out, a.Type+":"+a.Name+":"+a.Action)
	}
	return out
}

// challenge builds the 401 answer: a Bearer challenge pointing at the token endpoint when
// the token service is on and its challenge is Bearer, a Basic challenge otherwise.
func (c *Controller) challenge(r *http.Request, access []auth.Access, err error, bearerError string) *challenge {
	ch := &challenge{realm: c.cfg.Realm, err: err}
	if t := c.cfg.Token; t != nil && t.Challenge == registryconfig.ChallengeBearer {
		ch.bearer = true
		ch.realm = tokenRealm(r)
		ch.service = t.Service
		ch.scope = scopeOf(access)
		ch.bearerError = bearerError
	}
	return ch
}

// tokenRealm is the token endpoint's URL as the client reached this registry: the same
// scheme, host and port, so it works through port-forwards, Services and Ingresses alike.
func tokenRealm(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host + registryconfig.TokenPath
}

// scopeOf renders access as token scopes: "repository:team-a/app:pull,push".
func scopeOf(access []auth.Access) string {
	var order []string
	actions := map[string][]string{}
	for _, a := range access {
		k := a.Type + ":" + a.Name
		if _, ok := actions[k]; !ok {
			order = append(order, k)
		}
		if a.Type == "registry" {
			actions[k] = []string{"*"}
			continue
		}
		if !slices.Contains(actions[k], a.Action) {
			actions[k] = append(actions[k], a.Action)
		}
	}
	parts := make([]string, 0, len(order))
	for _, k := range order {
		parts = append(parts, k+":"+strings.Join(actions[k], ","))
	}
	return strings.Join(parts, " ")
}

// challenge is a 401 answer (Basic or Bearer); a denied challenge is turned into 403 by
// Middleware.
type challenge struct {
	realm  string
	err    error
	denied bool
	// reason explains a denial to the caller.
	reason string
	// unavailable: an identity provider could not be asked (answered 503).
	unavailable bool

	bearer                      bool
	service, scope, bearerError string
}

var _ auth.Challenge = (*challenge)(nil)

func (ch *challenge) SetHeaders(_ *http.Request, w http.ResponseWriter) {
	if ch.denied || ch.unavailable {
		return
	}
	if !ch.bearer {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", ch.realm))
		return
	}
	v := fmt.Sprintf("Bearer realm=%q,service=%q", ch.realm, ch.service)
	if ch.scope != "" {
		v += fmt.Sprintf(",scope=%q", ch.scope)
	}
	if ch.bearerError != "" {
		v += fmt.Sprintf(",error=%q", ch.bearerError)
	}
	w.Header().Set("WWW-Authenticate", v)
}

func (ch *challenge) Error() string {
	return fmt.Sprintf("authentication challenge for realm %q: %v", ch.realm, ch.err)
}

// decision carries, through the request context, whether the access controller denied a
// known user (and why) or could not ask an identity provider, so Middleware can answer 403
// or 503 instead of distribution's 401.
type decision struct {
	denied, unavailable atomic.Bool
	mu                  sync.Mutex
	reason              string
}

func (d *decision) deny(reason string) {
	d.mu.Lock()
	d.reason = reason
	d.mu.Unlock()
	d.denied.Store(true)
}

func (d *decision) message() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return deniedMessage(d.reason)
}

type decisionKey struct{}

func decisionFrom(ctx context.Context) *decision {
	d, _ := ctx.Value(decisionKey{}).(*decision)
	return d
}

// CanPush reports whether the request's credentials allow pushing to repository.
func (c *Controller) CanPush(r *http.Request, repository string) bool {
	return c.Can(r, repository, ActionPush)
}

// ProviderOf names what proved the request's identity (ProviderPullSecret,
// ProviderReplication, ProviderScanner, ProviderHtpasswd, …); empty for a request without
// valid credentials. Unlike a user name, no client chooses it: the operator's own
// credentials are told apart by it.
func (c *Controller) ProviderOf(r *http.Request) string {
	id, err := c.authenticate(r)
	if err != nil {
		return ""
	}
	return id.Provider
}

// MayPull reports whether the request may pull from repository as distribution decides
// it: with credentials, what they allow; without, what anonymous pulls allow.
func (c *Controller) MayPull(r *http.Request, repository string) bool {
	id, err := c.authenticate(r)
	switch {
	case errors.Is(err, errNoCredentials):
		id = Identity{}
	case err != nil:
		return false
	}
	ok, _, err := c.allowed(r.Context(), id, repository, ActionPull)
	return err == nil && ok
}

// Permits reports whether the request's caller may perform action on repository, whatever
// scope its registry token was issued for: who the caller is (a Manager pulls with a
// pull-only token), not what this request may do.
func (c *Controller) Permits(r *http.Request, repository, action string) bool {
	id, err := c.authenticate(r)
	if err != nil {
		return false
	}
	ok, _, err := c.permits(r.Context(), id, repository, action)
	return err == nil && ok
}

// Can reports whether the request's credentials allow action on repository.
func (c *Controller) Can(r *http.Request, repository, action string) bool {
	id, err := c.authenticate(r)
	if err != nil {
		return false
	}
	ok, _, err := c.allowed(r.Context(), id, repository, action)
	return err == nil && ok
}
