package access

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Provider errors. A provider that does not know a name says errUnknownUser, so the next
// provider may try; one that knows the name but not the password says
// errBadPassword; one that cannot be asked says errProviderUnavailable (wrapped).
var (
	errUnknownUser         = errors.New("unknown user")
	errBadPassword         = errors.New("wrong password")
	errProviderUnavailable = errors.New("identity provider unavailable")
)

// ldapProvider authenticates against an LDAP directory: bind as the service account, find
// the user with a filter in which the login name is escaped, bind as the user's DN with the
// given password, then read the user's groups. Successful and failed logins are cached
// briefly (keyed by an HMAC of name and password), so a token request costs one directory
// round trip and a client retrying a wrong password does not lock the account in Active
// Directory.
type ldapProvider struct {
	cfg      registryconfig.LDAP
	cacheKey []byte
	now      func() time.Time
	// bindPassword and caPEM read the bind password and the CA bundle (from the files the
	// config names; the operator's check passes them in directly).
	bindPassword func() ([]byte, error)
	caPEM        func() ([]byte, error)

	cache *expiringCache[ldapCacheEntry]
}

type ldapCacheEntry struct {
	id Identity
	ok bool
}

// ldapCacheMax bounds the login cache.
const ldapCacheMax = 10000

func newLDAPProvider(cfg registryconfig.LDAP, cacheKey []byte) *ldapProvider {
	p := &ldapProvider{cfg: cfg, cacheKey: cacheKey, now: time.Now, cache: newExpiringCache[ldapCacheEntry](ldapCacheMax)}
	p.bindPassword = func() ([]byte, error) { return os.ReadFile(cfg.BindPasswordFile) }
	p.caPEM = func() ([]byte, error) {
		if cfg.CAFile == "" {
			return nil, nil
		}
		return os.ReadFile(cfg.CAFile)
	}
	return p
}

// CheckLDAP connects to the directory described by cfg (its file fields are ignored: the
// bind password and CA bundle are given) and binds as the service account. It returns nil,
// an error wrapping ErrLDAPBind when the directory answered but refused the account, or
// another error when no URL could be reached. The operator reports the result in AuthReady.
func CheckLDAP(ctx context.Context, cfg registryconfig.LDAP, bindPassword, caPEM []byte) error {
	cfg.Defaults()
	p := newLDAPProvider(cfg, nil)
	p.bindPassword = func() ([]byte, error) { return bindPassword, nil }
	p.caPEM = func() ([]byte, error) { return caPEM, nil }
	return p.check(ctx)
}

// validLoginName rejects names no directory entry should be looked up by: empty, too long,
// not UTF-8, or holding control characters (NUL among them). Filter metacharacters are
// allowed here and escaped when the filter is built.
func validLoginName(user string) bool {
	if user == "" || len(user) > 256 || !utf8.ValidString(user) {
		return false
	}
	for _, r := range user {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func (p *ldapProvider) authenticate(ctx context.Context, user, password string) (Identity, error) {
	if !validLoginName(user) {
		return Identity{}, errUnknownUser
	}
	if password == "" {
		// An LDAP simple bind with a DN and an empty password is an unauthenticated bind,
		// which many servers accept: never send one.
		return Identity{}, errBadPassword
	}
	key := p.key(user, password)
	if e, ok := p.cached(key); ok {
		if e.ok {
			return e.id, nil
		}
		return Identity{}, errBadPassword
	}
	id, err := p.login(ctx, user, password)
	switch {
	case err == nil:
		p.remember(key, ldapCacheEntry{id: id, ok: true}, p.cfg.CacheTTL)
	case errors.Is(err, errBadPassword), errors.Is(err, errUnknownUser):
		p.remember(key, ldapCacheEntry{}, p.cfg.NegativeCacheTTL)
	}
	return id, err
}

func (p *ldapProvider) key(user, password string) [32]byte {
	mac := hmac.New(sha256.New, p.cacheKey)
	mac.Write([]byte("ldap\x00"))
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var k [32]byte
	copy(k[:], mac.Sum(nil))
	return k
}

func (p *ldapProvider) cached(key [32]byte) (ldapCacheEntry, bool) { return p.cache.get(key, p.now()) }

func (p *ldapProvider) remember(key [32]byte, e ldapCacheEntry, ttl *registryconfig.Duration) {
	if ttl == nil || ttl.Duration <= 0 {
		return
	}
	now := p.now()
	p.cache.put(key, e, now.Add(ttl.Duration), now)
}

// login asks the directory.
func (p *ldapProvider) login(ctx context.Context, user, password string) (Identity, error) {
	conn, err := p.serviceBind(ctx)
	if err != nil {
		return Identity{}, err
	}
	defer func() { _ = conn.Close() }()

	u := p.cfg.UserSearch
	attrs := []string{u.UsernameAttribute}
	if p.cfg.GroupsAttribute != "" {
		attrs = append(attrs, p.cfg.GroupsAttribute)
	}
	res, err := conn.Search(ldap.NewSearchRequest(u.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, int(p.cfg.Timeout.Seconds()), false,
		strings.ReplaceAll(u.Filter, "{username}", ldap.EscapeFilter(user)), attrs, nil))
	if err != nil {
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
			return Identity{}, errUnknownUser
		case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
			return Identity{}, fmt.Errorf("%w: the user filter matched more than one entry", errUnknownUser)
		}
		return Identity{}, fmt.Errorf("%w: search for the user: %w", errProviderUnavailable, err)
	}
	switch len(res.Entries) {
	case 0:
		return Identity{}, errUnknownUser
	case 1:
	default:
		// Two entries for one login name: refuse rather than guess whom the password is for.
		return Identity{}, fmt.Errorf("%w: the user filter matched more than one entry", errUnknownUser)
	}
	entry := res.Entries[0]
	name := entry.GetAttributeValue(u.UsernameAttribute)
	if name == "" {
		return Identity{}, fmt.Errorf("%w: the user entry has no %s attribute", errUnknownUser, u.UsernameAttribute)
	}
	if err := conn.Bind(entry.DN, password); err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return Identity{}, errBadPassword
		}
		// Account disabled, locked, password expired (Active Directory answers 49 with a
		// sub-code for those too; others use 53 unwillingToPerform): a refusal, not an outage.
		if ldap.IsErrorAnyOf(err, ldap.LDAPResultUnwillingToPerform, ldap.LDAPResultInappropriateAuthentication,
			ldap.LDAPResultInsufficientAccessRights) {
			return Identity{}, errBadPassword
		}
		return Identity{}, fmt.Errorf("%w: bind as the user: %w", errProviderUnavailable, err)
	}
	id := Identity{User: name, Provider: ProviderLDAP}
	if a := p.cfg.GroupsAttribute; a != "" {
		for _, dn := range entry.GetAttributeValues(a) {
			if g := firstRDNValue(dn); g != "" {
				id.Groups = append(id.Groups, g)
			}
		}
	}
	if g := p.cfg.GroupSearch; g != nil {
		// Search as the service account: the user may not be allowed to read groups.
		if err := p.bindService(conn); err != nil {
			return Identity{}, err
		}
		filter := strings.NewReplacer("{dn}", ldap.EscapeFilter(entry.DN), "{username}", ldap.EscapeFilter(name)).Replace(g.Filter)
		gres, err := conn.Search(ldap.NewSearchRequest(g.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, int(p.cfg.Timeout.Seconds()), false, filter, []string{g.NameAttribute}, nil))
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return Identity{}, fmt.Errorf("%w: search for groups: %w", errProviderUnavailable, err)
		}
		if gres != nil {
			for _, e := range gres.Entries {
				if n := e.GetAttributeValue(g.NameAttribute); n != "" {
					id.Groups = append(id.Groups, n)
				}
			}
		}
	}
	return id, nil
}

// firstRDNValue returns the value of a DN's first RDN: the group name of
// cn=team-a,ou=groups,dc=example,dc=com.
func firstRDNValue(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return ""
	}
	return parsed.RDNs[0].Attributes[0].Value
}

// Check binds as the service account and returns the error a person needs to see: the
// directory cannot be reached, or the bind account or its password is wrong.
func (p *ldapProvider) check(ctx context.Context) error {
	conn, err := p.serviceBind(ctx)
	if err != nil {
		return err
	}
	return conn.Close()
}

// serviceBind connects to the first URL that answers and binds as the service account.
func (p *ldapProvider) serviceBind(ctx context.Context) (*ldap.Conn, error) {
	conn, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.bindService(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// ErrLDAPBind marks a failed service-account bind (as opposed to an unreachable directory).
var ErrLDAPBind = errors.New("service account bind failed")

func (p *ldapProvider) bindService(conn *ldap.Conn) error {
	pw, err := p.bindPassword()
	if err != nil {
		return fmt.Errorf("%w: read the bind password: %w", errProviderUnavailable, err)
	}
	secret := strings.TrimRight(string(pw), "\r\n")
	if secret == "" {
		return fmt.Errorf("%w: %w: the bind password is empty", errProviderUnavailable, ErrLDAPBind)
	}
	if err := conn.Bind(p.cfg.BindDN, secret); err != nil {
		var le *ldap.Error
		if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
			// The directory answered and refused the account (wrong DN or password, locked).
			return fmt.Errorf("%w: %w as %s: %w", errProviderUnavailable, ErrLDAPBind, p.cfg.BindDN, err)
		}
		return fmt.Errorf("%w: bind as %s: %w", errProviderUnavailable, p.cfg.BindDN, err)
	}
	return nil
}

func (p *ldapProvider) tlsConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	pem, err := p.caPEM()
	if err != nil {
		return nil, fmt.Errorf("read the LDAP CA bundle: %w", err)
	}
	if pem != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("the LDAP CA bundle holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// dial tries each URL in order and returns the first connection that is encrypted.
func (p *ldapProvider) dial(ctx context.Context) (*ldap.Conn, error) {
	var errs []error
	for _, raw := range p.cfg.URLs {
		if ctx.Err() != nil {
			break
		}
		conn, err := p.dialOne(raw)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", raw, err))
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return nil, fmt.Errorf("%w: %w", errProviderUnavailable, errors.Join(errs...))
}

func (p *ldapProvider) dialOne(raw string) (*ldap.Conn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	host := u.Hostname()
	tc, err := p.tlsConfig(host)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: p.cfg.Timeout.Duration}
	conn, err := ldap.DialURL(raw, ldap.DialWithDialer(dialer), ldap.DialWithTLSConfig(tc))
	if err != nil {
		return nil, err
	}
	conn.SetTimeout(p.cfg.Timeout.Duration)
	if u.Scheme == "ldap" {
		if err := conn.StartTLS(tc); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("StartTLS: %w", err)
		}
	}
	return conn, nil
}
