package registryconfig

import (
	"fmt"
	"strings"
	"time"
)

// Auth is authentication and authorization.
type Auth struct {
	// HtpasswdFile is the users file (bcrypt htpasswd); re-read when it changes. Empty when
	// no htpasswd users are configured (another provider must be).
	HtpasswdFile string `json:"htpasswdFile,omitempty"`
	// GroupsFile optionally maps groups to users (see UsersGroupsKey); re-read when it changes.
	GroupsFile string `json:"groupsFile,omitempty"`
	// Realm is the Basic realm in challenges. Default "dockyard".
	Realm string `json:"realm,omitempty"`
	// AnonymousPull lets unauthenticated clients pull every repository.
	AnonymousPull bool `json:"anonymousPull,omitempty"`
	// Access lists the rules; a user is allowed an action when any rule grants it. An empty
	// list grants every htpasswd user the Manager role on every repository (LDAP and OIDC
	// users get nothing without a rule: a whole directory vouches for them).
	Access []AccessRule `json:"access,omitempty"`
	// Token, when set, turns on the registry token service (the Docker registry token
	// protocol): 401 answers carry a Bearer challenge pointing at TokenPath, where clients
	// exchange their credentials for a short-lived signed token. Basic credentials sent
	// directly keep working.
	Token *Token `json:"token,omitempty"`
	// LDAP, when set, authenticates users against an LDAP directory / Active Directory.
	LDAP *LDAP `json:"ldap,omitempty"`
	// OIDC, when set, accepts ID tokens of an OpenID Connect provider as passwords and as
	// Bearer tokens.
	OIDC *OIDC `json:"oidc,omitempty"`
	// RobotsFile, when set, holds the robot accounts (Robots as JSON), written by the
	// operator; re-read when it changes.
	RobotsFile string `json:"robotsFile,omitempty"`
	// Kubernetes, when set, accepts ServiceAccount tokens and/or authorizes with
	// Kubernetes RBAC.
	Kubernetes *Kubernetes `json:"kubernetes,omitempty"`
}

// RobotUserPrefix starts the user name of every robot account: robot+<name>. Names with
// it are checked only against the robots file.
const RobotUserPrefix = "robot+"

// Robots is the content of Auth.RobotsFile.
type Robots struct {
	Robots []Robot `json:"robots"`
}

// Robot is a machine account: its user name, what it may do, and the credentials that
// log it in (hashes only).
type Robot struct {
	// User is RobotUserPrefix + the robot's name.
	User         string       `json:"user"`
	Repositories []string     `json:"repositories"`
	Role         Role         `json:"role"`
	Credentials  []RobotToken `json:"credentials"`
}

// RobotToken is one credential of a robot: the SHA-256 of a random password (256 bits of
// entropy, so a fast hash is safe) and its validity.
type RobotToken struct {
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// OIDC verifies ID tokens of an OpenID Connect provider: signature (keys from the
// provider's JWKS, refetched when it rotates), issuer, audience, expiry, then the claims.
type OIDC struct {
	// IssuerURL is the provider's issuer (https); discovery reads
	// IssuerURL/.well-known/openid-configuration.
	IssuerURL string `json:"issuerURL"`
	// Audiences are the accepted aud values (client IDs); a token must name one.
	Audiences []string `json:"audiences"`
	// UsernameClaim holds the user name (default sub); with email, email_verified must not
	// be false.
	UsernameClaim string `json:"usernameClaim,omitempty"`
	// UsernamePrefix is prepended to the user name (e.g. "oidc:"), so OIDC names cannot
	// collide with other providers' names in access rules.
	UsernamePrefix string `json:"usernamePrefix,omitempty"`
	// GroupsClaim holds the groups, a list of strings or one string (default groups).
	GroupsClaim string `json:"groupsClaim,omitempty"`
	// GroupsPrefix is prepended to every group name.
	GroupsPrefix string `json:"groupsPrefix,omitempty"`
	// RequiredClaims must all be present with these string values.
	RequiredClaims map[string]string `json:"requiredClaims,omitempty"`
	// CAFile is a PEM bundle of the CAs to trust for the provider; empty means the system
	// roots.
	CAFile string `json:"caFile,omitempty"`
	// LoginClientID is the public client `dockyard login` uses (device flow); its ID
	// tokens are accepted too (it is an audience). Empty turns `dockyard login` off.
	LoginClientID string `json:"loginClientID,omitempty"`
	// Timeout bounds each request to the provider. Default 10s.
	Timeout Duration `json:"timeout,omitempty"`
}

// OIDCLoginPath serves, when OIDC login is on, what `dockyard login` needs to know:
// {"issuer", "clientID", "scopes"}.
const OIDCLoginPath = "/auth/oidc"

// Token configures the token service.
type Token struct {
	// KeysFile holds the signing keys (TokenKeys as JSON), written by the operator; re-read
	// when it changes.
	KeysFile string `json:"keysFile"`
	// Issuer is the iss claim of issued tokens, checked on the way back in.
	Issuer string `json:"issuer"`
	// Service is the service name in challenges and the aud claim of tokens.
	Service string `json:"service"`
	// TTL is how long an issued token is valid. Default 5m.
	TTL Duration `json:"ttl,omitempty"`
	// Challenge is the scheme of 401 answers: Bearer (default) or Basic (the token endpoint
	// still answers, but clients are sent to it only when they ask).
	Challenge string `json:"challenge,omitempty"`
	// SessionTTL is how long a refresh token is valid: the token endpoint hands one to an
	// OIDC login that asks (docker's offline_token=true, `dockyard login`), and clients
	// store it as their identity token instead of the short-lived ID token. Default 12h.
	SessionTTL Duration `json:"sessionTTL,omitempty"`
}

// Challenge schemes.
const (
	ChallengeBearer = "Bearer"
	ChallengeBasic  = "Basic"
)

// TokenPath is where the workload serves the token endpoint, on the API port.
const TokenPath = "/auth/token"

// TokenKeys is the content of Token.KeysFile: the keys of the token service, newest last.
// Tokens are signed with the newest key whose SignFrom has passed and verified with any
// key listed, so a new key can be published (and reach every replica) before it is used,
// and an old one kept until the tokens it signed have expired.
type TokenKeys struct {
	Keys []TokenKey `json:"keys"`
}

// TokenKey is one ECDSA P-256 signing key.
type TokenKey struct {
	// ID is the key ID (the kid header of the tokens it signs).
	ID string `json:"id"`
	// PrivateKey is the PKCS#8 private key in PEM.
	PrivateKey string `json:"privateKey"`
	// SignFrom is when replicas start signing with this key.
	SignFrom time.Time `json:"signFrom"`
}

// LDAP authenticates against a directory: bind as the service account, find the user,
// bind as the user with the given password, then read the user's groups.
type LDAP struct {
	// URLs are tried in order until one answers: ldaps://host[:port] or, with StartTLS,
	// ldap://host[:port].
	URLs []string `json:"urls"`
	// StartTLS upgrades ldap:// connections with StartTLS before anything is sent.
	StartTLS bool `json:"startTLS,omitempty"`
	// CAFile is a PEM bundle of the CAs to trust; empty means the system roots.
	CAFile string `json:"caFile,omitempty"`
	// BindDN is the service account's DN; BindPasswordFile holds its password.
	BindDN           string `json:"bindDN"`
	BindPasswordFile string `json:"bindPasswordFile"`
	// UserSearch finds the user entry.
	UserSearch LDAPUserSearch `json:"userSearch"`
	// GroupSearch, when set, finds the user's groups by searching for group entries.
	GroupSearch *LDAPGroupSearch `json:"groupSearch,omitempty"`
	// GroupsAttribute, when set, reads the user's groups from this attribute of the user
	// entry (e.g. memberOf); each value is a DN whose first RDN value is the group name.
	GroupsAttribute string `json:"groupsAttribute,omitempty"`
	// Timeout bounds each connection and operation. Default 5s.
	Timeout Duration `json:"timeout,omitempty"`
	// CacheTTL is how long a successful login is remembered; NegativeCacheTTL how long a
	// failed one is. Defaults 60s and 10s; 0 turns a cache off only when set as "0s".
	CacheTTL         *Duration `json:"cacheTTL,omitempty"`
	NegativeCacheTTL *Duration `json:"negativeCacheTTL,omitempty"`
}

// LDAPUserSearch locates a user by login name.
type LDAPUserSearch struct {
	BaseDN string `json:"baseDN"`
	// Filter is an LDAP filter in which {username} stands for the escaped login name.
	// Default (uid={username}).
	Filter string `json:"filter,omitempty"`
	// UsernameAttribute is the attribute whose value is the user's name in access rules and
	// logs. Default uid.
	UsernameAttribute string `json:"usernameAttribute,omitempty"`
}

// LDAPGroupSearch locates the groups a user belongs to.
type LDAPGroupSearch struct {
	BaseDN string `json:"baseDN"`
	// Filter is an LDAP filter in which {dn} stands for the user's escaped DN and
	// {username} for the escaped user name. Default (member={dn}).
	Filter string `json:"filter,omitempty"`
	// NameAttribute is the attribute holding the group's name. Default cn.
	NameAttribute string `json:"nameAttribute,omitempty"`
}

// AccessRule grants Role on Repositories to Subjects.
type AccessRule struct {
	Subjects     []Subject `json:"subjects"`
	Repositories []string  `json:"repositories"`
	Role         Role      `json:"role"`
}

// Subject is a user or a group.
type Subject struct {
	Kind SubjectKind `json:"kind"`
	Name string      `json:"name"`
}

// SubjectKind is User or Group.
type SubjectKind string

const (
	// SubjectUser is a user from the htpasswd file.
	SubjectUser SubjectKind = "User"
	// SubjectGroup is a group from the groups file.
	SubjectGroup SubjectKind = "Group"
)

// Role is a named set of actions.
type Role string

const (
	// RoleManager may pull, push and delete.
	RoleManager Role = "Manager"
	// RoleViewer may pull.
	RoleViewer Role = "Viewer"
)

// defaults fills unset optional auth fields.
func (a *Auth) defaults() {
	if a.Realm == "" {
		a.Realm = "dockyard"
	}
	if t := a.Token; t != nil {
		if t.TTL.Duration == 0 {
			t.TTL.Duration = 5 * time.Minute
		}
		if t.Challenge == "" {
			t.Challenge = ChallengeBearer
		}
		if t.SessionTTL.Duration == 0 {
			t.SessionTTL.Duration = 12 * time.Hour
		}
	}
	if o := a.OIDC; o != nil {
		if o.UsernameClaim == "" {
			o.UsernameClaim = "sub"
		}
		if o.GroupsClaim == "" {
			o.GroupsClaim = "groups"
		}
		if o.Timeout.Duration == 0 {
			o.Timeout.Duration = 10 * time.Second
		}
	}
	if a.LDAP != nil {
		a.LDAP.Defaults()
	}
	if a.Kubernetes != nil {
		a.Kubernetes.defaults()
	}
}

// validate checks the auth section; every problem is reported.
func (a *Auth) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if a.HtpasswdFile == "" && a.LDAP == nil && a.OIDC == nil && a.RobotsFile == "" &&
		(a.Kubernetes == nil || a.Kubernetes.ServiceAccounts == nil) {
		add("auth: at least one of htpasswdFile, ldap, oidc, robotsFile and kubernetes.serviceAccounts is required")
	}
	if a.Kubernetes != nil {
		errs = append(errs, a.Kubernetes.validate()...)
	}
	if o := a.OIDC; o != nil {
		if !strings.HasPrefix(o.IssuerURL, "https://") {
			add("auth.oidc.issuerURL: must be an https:// URL, got %q", o.IssuerURL)
		}
		if len(o.Audiences) == 0 {
			add("auth.oidc.audiences: at least one is required")
		}
	}
	if t := a.Token; t != nil {
		if t.KeysFile == "" || t.Issuer == "" || t.Service == "" {
			add("auth.token: keysFile, issuer and service are required")
		}
		if t.TTL.Duration < 0 {
			add("auth.token.ttl: must not be negative")
		}
		if t.Challenge != ChallengeBearer && t.Challenge != ChallengeBasic {
			add("auth.token.challenge: must be Bearer or Basic, got %q", t.Challenge)
		}
	}
	if l := a.LDAP; l != nil {
		errs = append(errs, l.validate()...)
	}
	for i, r := range a.Access {
		if len(r.Subjects) == 0 {
			add("auth.access[%d].subjects: at least one subject is required", i)
		}
		for j, sub := range r.Subjects {
			if sub.Kind != SubjectUser && sub.Kind != SubjectGroup {
				add("auth.access[%d].subjects[%d].kind: must be User or Group, got %q", i, j, sub.Kind)
			}
			if sub.Name == "" {
				add("auth.access[%d].subjects[%d].name: required", i, j)
			}
		}
		if len(r.Repositories) == 0 {
			add("auth.access[%d].repositories: at least one pattern is required", i)
		}
		for j, p := range r.Repositories {
			if !ValidRepositoryPattern(p) {
				add("auth.access[%d].repositories[%d]: %q is not a repository pattern (lowercase path segments separated by '/', '*' within a segment, '**' as a whole segment)", i, j, p)
			}
		}
		if r.Role != RoleManager && r.Role != RoleViewer {
			add("auth.access[%d].role: must be Manager or Viewer, got %q", i, r.Role)
		}
	}
	return errs
}

// Defaults fills unset optional LDAP fields.
func (l *LDAP) Defaults() {
	if l.UserSearch.Filter == "" {
		l.UserSearch.Filter = "(uid={username})"
	}
	if l.UserSearch.UsernameAttribute == "" {
		l.UserSearch.UsernameAttribute = "uid"
	}
	if g := l.GroupSearch; g != nil {
		if g.Filter == "" {
			g.Filter = "(member={dn})"
		}
		if g.NameAttribute == "" {
			g.NameAttribute = "cn"
		}
	}
	if l.Timeout.Duration == 0 {
		l.Timeout.Duration = 5 * time.Second
	}
	if l.CacheTTL == nil {
		l.CacheTTL = &Duration{Duration: time.Minute}
	}
	if l.NegativeCacheTTL == nil {
		l.NegativeCacheTTL = &Duration{Duration: 10 * time.Second}
	}
}

// validate checks an LDAP section.
func (l *LDAP) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("auth.ldap."+format, args...)) }
	if len(l.URLs) == 0 {
		add("urls: at least one is required")
	}
	for i, u := range l.URLs {
		switch {
		case strings.HasPrefix(u, "ldaps://"):
		case strings.HasPrefix(u, "ldap://"):
			if !l.StartTLS {
				add("urls[%d]: %q is plain LDAP; use ldaps:// or set startTLS (passwords are never sent unencrypted)", i, u)
			}
		default:
			add("urls[%d]: %q must start with ldaps:// or ldap://", i, u)
		}
	}
	if l.BindDN == "" || l.BindPasswordFile == "" {
		add("bindDN and bindPasswordFile are required (anonymous binds are not used)")
	}
	if l.UserSearch.BaseDN == "" {
		add("userSearch.baseDN: required")
	}
	if !strings.Contains(l.UserSearch.Filter, "{username}") {
		add("userSearch.filter: must contain {username}, got %q", l.UserSearch.Filter)
	}
	if g := l.GroupSearch; g != nil {
		if g.BaseDN == "" {
			add("groupSearch.baseDN: required")
		}
		if !strings.Contains(g.Filter, "{dn}") && !strings.Contains(g.Filter, "{username}") {
			add("groupSearch.filter: must contain {dn} or {username}, got %q", g.Filter)
		}
	}
	if l.Timeout.Duration < 0 || (l.CacheTTL != nil && l.CacheTTL.Duration < 0) ||
		(l.NegativeCacheTTL != nil && l.NegativeCacheTTL.Duration < 0) {
		add("timeout, cacheTTL, negativeCacheTTL: must not be negative")
	}
	return errs
}
