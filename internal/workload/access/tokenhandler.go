package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Limits on what a token request may ask for.
const (
	maxTokenScopes   = 32
	maxTokenFormSize = 64 << 10
)

// anchoredName is a repository name as the distribution spec defines it.
var anchoredName = regexp.MustCompile(`^` + reference.NameRegexp.String() + `$`)

// tokenResponse is the token endpoint's answer (Docker registry token protocol and its
// OAuth2 variant).
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
	// RefreshToken is set for OIDC logins that ask for one (see TokenHandler).
	RefreshToken string `json:"refresh_token,omitempty"`
}

// TokenHandler serves the token endpoint: GET with Basic credentials (or none, for an
// anonymous token) and `scope` / `service` query parameters, as docker, podman, skopeo and
// crane send it, and POST with an OAuth2 password grant, as containerd sends it. The token
// grants the requested actions the access rules allow, and nothing else; a request for
// more is not an error (the registry answers 403 when the token is used).
func (c *Controller) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if c.tokens == nil {
			writeError(w, http.StatusNotFound, "UNSUPPORTED", "the token service is not enabled")
			return
		}
		var user, pass, refreshToken string
		var hasCreds bool
		var params map[string][]string
		switch r.Method {
		case http.MethodGet:
			params = r.URL.Query()
			user, pass, hasCreds = r.BasicAuth()
		case http.MethodPost:
			r.Body = http.MaxBytesReader(w, r.Body, maxTokenFormSize)
			if err := r.ParseForm(); err != nil {
				writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the form cannot be read")
				return
			}
			params = r.PostForm
			switch gt := r.PostForm.Get("grant_type"); gt {
			case "password":
				user, pass = r.PostForm.Get("username"), r.PostForm.Get("password")
				hasCreds = true
			case "refresh_token":
				// docker, containerd and podman send back the identity token they stored:
				// a refresh token this endpoint issued to an OIDC login.
				refreshToken = r.PostForm.Get("refresh_token")
				if refreshToken == "" {
					writeOAuthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is empty")
					return
				}
			default:
				writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type",
					"grant_type must be password or refresh_token; use GET with Basic credentials otherwise")
				return
			}
		default:
			w.Header().Set("Allow", "GET, POST")
			writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "use GET or POST")
			return
		}
		if svc := first(params["service"]); svc != "" && svc != c.tokens.cfg.Service {
			writeError(w, http.StatusBadRequest, "UNSUPPORTED", "unknown service "+quoteShort(svc))
			return
		}
		scopes, err := parseScopes(params["scope"])
		if err != nil {
			writeError(w, http.StatusBadRequest, "UNSUPPORTED", err.Error())
			return
		}

		id := Identity{}
		if refreshToken != "" || (hasCreds && (user != "" || pass != "")) {
			var provider string
			if refreshToken != "" {
				provider = "refresh_token"
				if id, err = c.tokens.verifyRefresh(refreshToken); err != nil {
					err = fmt.Errorf("%w: %w", errBadPassword, err)
				} else if c.oidc == nil || id.Provider != ProviderOIDC {
					// Sessions belong to OIDC logins: with the provider switched off, so are they.
					err = fmt.Errorf("%w: the session's identity provider is not enabled", errBadPassword)
				}
			} else {
				id, provider, err = c.login(r.Context(), user, pass)
				if err == nil && provider == jwtRegistryToken {
					// Exchanging a token for a fresh one would outlive every revocation.
					err = fmt.Errorf("%w: a registry token cannot be exchanged for another", errBadPassword)
				}
			}
			if err != nil {
				c.audit.authFailed(r, user, provider, err)
				if errors.Is(err, errProviderUnavailable) {
					w.Header().Set("Retry-After", "10")
					writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", errUnavailableMessage)
					return
				}
				w.Header().Set("WWW-Authenticate", `Basic realm="`+c.cfg.Realm+`"`)
				writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
				return
			}
		}
		granted, err := c.grant(r.Context(), id, scopes)
		if err != nil {
			c.log.Warn("An authorizer could not be asked", "user", id.User, "err", err)
			w.Header().Set("Retry-After", "10")
			writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", errUnavailableMessage)
			return
		}
		// A ServiceAccount is reviewed again when its token is exchanged again: a token of
		// a deleted ServiceAccount stops working within twice the review cache's lifetime,
		// whatever the configured token TTL.
		// A token never outlives the credential it was issued for (a ServiceAccount token,
		// a pull credential).
		var maxTTL time.Duration
		if id.Provider == ProviderServiceAccount && c.kube != nil && c.kube.cfg.ServiceAccounts != nil {
			maxTTL = c.kube.cfg.ServiceAccounts.CacheTTL.Duration
		}
		if !id.expires.IsZero() {
			left := id.expires.Sub(c.tokens.now())
			if left < time.Second {
				w.Header().Set("WWW-Authenticate", `Basic realm="`+c.cfg.Realm+`"`)
				writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the credential has expired")
				return
			}
			if maxTTL == 0 || left < maxTTL {
				maxTTL = left
			}
		}
		token, issued, ttl, err := c.tokens.issue(c.tokenIdentity(id), granted, maxTTL)
		if err != nil {
			c.log.Error("Issue a token", "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "the token could not be issued")
			return
		}
		resp := tokenResponse{Token: token, AccessToken: token, ExpiresIn: int(ttl / time.Second),
			IssuedAt: issued.UTC().Format(time.RFC3339)}
		// An OIDC login that asks for it (docker: offline_token=true; OAuth2:
		// access_type=offline) gets a refresh token to store instead of the ID token, which
		// expires within minutes. Passwords of the other providers do not expire, and
		// clients keep storing them.
		if id.Provider == ProviderOIDC && refreshToken == "" &&
			(first(params["offline_token"]) == "true" || first(params["access_type"]) == "offline") {
			if resp.RefreshToken, err = c.tokens.issueRefresh(c.tokenIdentity(id)); err != nil {
				c.log.Error("Issue a refresh token", "err", err)
				writeError(w, http.StatusInternalServerError, "UNKNOWN", "the token could not be issued")
				return
			}
		}
		c.audit.issued.WithLabelValues(providerLabel(id)).Inc()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
}

func providerLabel(id Identity) string {
	if id.anonymous() {
		return "anonymous"
	}
	return id.Provider
}

// tokenIdentity keeps, of id's groups, those the access rules name: a directory user in
// hundreds of groups must not get a token too large for a request header.
func (c *Controller) tokenIdentity(id Identity) Identity {
	if c.kube != nil && c.kube.cfg.RBAC != nil {
		// Kubernetes RBAC may bind any group: keep them all.
		return Identity{User: id.User, Groups: id.Groups, Provider: id.Provider, repositories: id.repositories, actions: id.actions}
	}
	var groups []string
	for _, g := range id.Groups {
		if c.ruleGroups[g] && !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	return Identity{User: id.User, Groups: groups, Provider: id.Provider, repositories: id.repositories, actions: id.actions}
}

// grant computes, for each requested scope, the actions the access rules (and Kubernetes
// RBAC, when on) allow id. An error means an authorizer could not be asked.
func (c *Controller) grant(ctx context.Context, id Identity, scopes []tokenAccess) ([]tokenAccess, error) {
	var out []tokenAccess
	for _, s := range scopes {
		var acts []string
		switch s.Type {
		case "repository":
			for _, a := range s.Actions {
				want := []string{a}
				if a == "*" {
					want = []string{ActionPull, ActionPush, ActionDelete}
				}
				for _, w := range want {
					if slices.Contains(acts, w) {
						continue
					}
					ok, _, err := c.permits(ctx, id, s.Name, w)
					if err != nil {
						return nil, err
					}
					if ok {
						acts = append(acts, w)
					}
				}
			}
		case "registry":
			if s.Name == "catalog" && slices.Contains(s.Actions, "*") && (!id.anonymous() || c.cfg.AnonymousPull) {
				acts = []string{"*"}
			}
		}
		if len(acts) > 0 {
			out = append(out, tokenAccess{Type: s.Type, Name: s.Name, Actions: acts})
		}
	}
	return out, nil
}

// parseScopes parses token scopes, `type:name:actions` (several per parameter separated by
// spaces). A type may carry a class, `repository(plugin)`, which is ignored.
func parseScopes(values []string) ([]tokenAccess, error) {
	var out []tokenAccess
	for _, v := range values {
		for _, s := range strings.Fields(v) {
			if len(out) == maxTokenScopes {
				return nil, errors.New("too many scopes")
			}
			typ, rest, ok := strings.Cut(s, ":")
			i := strings.LastIndex(rest, ":")
			if !ok || i < 0 {
				return nil, errors.New("malformed scope " + quoteShort(s) + " (want type:name:actions)")
			}
			name, actions := rest[:i], rest[i+1:]
			if j := strings.Index(typ, "("); j >= 0 && strings.HasSuffix(typ, ")") {
				typ = typ[:j]
			}
			switch typ {
			case "repository":
				if len(name) > 255 || !anchoredName.MatchString(name) {
					return nil, errors.New("invalid repository name in scope " + quoteShort(s))
				}
			case "registry":
			default:
				// Unknown resource types are ignored, as the protocol allows.
				continue
			}
			acts := strings.Split(actions, ",")
			for _, a := range acts {
				switch a {
				case ActionPull, ActionPush, ActionDelete, "*":
				default:
					return nil, errors.New("unknown action in scope " + quoteShort(s))
				}
			}
			out = append(out, tokenAccess{Type: typ, Name: name, Actions: acts})
		}
	}
	return out, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// quoteShort quotes client input for an error message, cut to a readable length.
func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// writeOAuthError writes an OAuth2 error answer (RFC 6749 section 5.2).
func writeOAuthError(w http.ResponseWriter, code int, errCode, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": errCode, "error_description": desc})
}

// TokenPath re-exports the endpoint's path for callers of this package.
const TokenPath = registryconfig.TokenPath
