package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
)

// How often the operator checks a Registry's identity providers (binds to the LDAP
// directory, reads the OIDC provider's discovery document and keys) to report their health
// in AuthReady: every 5 minutes while they work, every 30 seconds while they do not.
const (
	providerRecheckHealthy = 5 * time.Minute
	providerRecheckFailing = 30 * time.Second
	providerCheckTimeout   = 10 * time.Second
)

// ldapState is what the operator observed of spec.auth.ldap.
type ldapState struct {
	bind *secretState
	ca   *secretState // nil without ldap.ca
	// checked is false when the check could not run (bind Secret or CA missing).
	checked bool
	err     error
	url     string
}

// observeLDAP reads the bind password and CA the Registry refers to and, when both are
// there, checks the directory (a service-account bind), at most every few minutes per
// Registry and settings.
func (r *RegistryReconciler) observeLDAP(ctx context.Context, reg *v1alpha1.Registry, l *v1alpha1.LDAPSpec) (*ldapState, time.Duration, error) {
	st := &ldapState{url: strings.Join(l.URLs, ", ")}
	sec, ss, err := r.readSecret(ctx, reg.Namespace, l.BindPasswordSecretRef.Name, l.BindPasswordSecretRef.Key)
	if err != nil {
		return nil, 0, err
	}
	st.bind = ss
	ca, caPEM, err := r.observeCA(ctx, reg, l.CA)
	if err != nil {
		return nil, 0, err
	}
	st.ca = ca
	if !st.bind.ok() || (st.ca != nil && !st.ca.ok()) {
		return st, 0, nil
	}
	cfg := resources.LDAPConfig(l)
	pw := sec.Data[l.BindPasswordSecretRef.Key]
	key := ldapCheckKey(reg, cfg, pw, caPEM)
	res, recheck := r.providerChecks.run(key, r.now(), func() error {
		ctx, cancel := context.WithTimeout(ctx, providerCheckTimeout)
		defer cancel()
		ctrl.LoggerFrom(ctx).V(1).Info("Checking LDAP directory", "urls", st.url)
		return r.checkLDAP(ctx, *cfg, pw, caPEM)
	})
	st.checked, st.err = true, res.err
	return st, recheck, nil
}

// oidcState is what the operator observed of spec.auth.oidc.
type oidcState struct {
	ca      *secretState // nil without oidc.ca
	checked bool
	err     error
}

// observeOIDC reads the CA the Registry refers to and, when it is there, reads the
// provider's discovery document and key set, at most every few minutes per Registry.
func (r *RegistryReconciler) observeOIDC(ctx context.Context, reg *v1alpha1.Registry, o *v1alpha1.OIDCSpec) (*oidcState, time.Duration, error) {
	ca, caPEM, err := r.observeCA(ctx, reg, o.CA)
	if err != nil {
		return nil, 0, err
	}
	st := &oidcState{ca: ca}
	if ca != nil && !ca.ok() {
		return st, 0, nil
	}
	h := sha256.New()
	fmt.Fprintf(h, "oidc\x00%s\x00%s\x00", reg.UID, o.IssuerURL)
	h.Write(caPEM)
	res, recheck := r.providerChecks.run(hex.EncodeToString(h.Sum(nil)), r.now(), func() error {
		ctx, cancel := context.WithTimeout(ctx, providerCheckTimeout)
		defer cancel()
		ctrl.LoggerFrom(ctx).V(1).Info("Checking OIDC provider", "issuer", o.IssuerURL)
		if r.OIDCCheck != nil {
			return r.OIDCCheck(ctx, o.IssuerURL, caPEM)
		}
		return access.CheckOIDC(ctx, o.IssuerURL, caPEM, providerCheckTimeout)
	})
	st.checked, st.err = true, res.err
	return st, recheck, nil
}

// observeCA reads a CA bundle reference (nil: none, the system roots).
func (r *RegistryReconciler) observeCA(ctx context.Context, reg *v1alpha1.Registry, ca *v1alpha1.CABundleSource) (*secretState, []byte, error) {
	if ca == nil {
		return nil, nil, nil
	}
	if ref := ca.SecretKeyRef; ref != nil {
		sec, st, err := r.readSecret(ctx, reg.Namespace, ref.Name, ref.Key)
		if err != nil || sec == nil {
			return st, nil, err
		}
		return st, sec.Data[ref.Key], nil
	}
	ref := ca.ConfigMapKeyRef
	st := &secretState{name: ref.Name, kind: "ConfigMap"}
	cm := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: ref.Name}, cm)
	switch {
	case apierrors.IsNotFound(err):
		return st, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("get ConfigMap %s/%s: %w", reg.Namespace, ref.Name, err)
	}
	st.found = true
	pem := []byte(cm.Data[ref.Key])
	if len(pem) == 0 {
		st.missingKeys = []string{ref.Key}
	}
	return st, pem, nil
}

func (r *RegistryReconciler) checkLDAP(ctx context.Context, cfg registryconfig.LDAP, pw, ca []byte) error {
	if r.LDAPCheck != nil {
		return r.LDAPCheck(ctx, cfg, pw, ca)
	}
	return access.CheckLDAP(ctx, cfg, pw, ca)
}

func (r *RegistryReconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock()
	}
	return time.Now()
}

// ldapCheckKey identifies a check: the Registry and everything the check depends on, so a
// changed password or URL is checked at once.
func ldapCheckKey(reg *v1alpha1.Registry, cfg *registryconfig.LDAP, pw, ca []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", reg.UID)
	_ = json.NewEncoder(h).Encode(cfg)
	h.Write(pw)
	h.Write([]byte{0})
	h.Write(ca)
	return hex.EncodeToString(h.Sum(nil))
}

// providerCheckCache remembers recent provider checks (directory binds, OIDC discovery),
// keyed by the Registry and everything a check depends on.
type providerCheckCache struct {
	mu sync.Mutex
	m  map[string]providerCheck
}

type providerCheck struct {
	err error
	at  time.Time
}

func recheckAfter(err error) time.Duration {
	if err != nil {
		return providerRecheckFailing
	}
	return providerRecheckHealthy
}

// run returns the cached result of the check under key, or runs check; and how long until
// it should run again.
func (c *providerCheckCache) run(key string, now time.Time, check func() error) (providerCheck, time.Duration) {
	c.mu.Lock()
	res, ok := c.m[key]
	c.mu.Unlock()
	if !ok || now.Sub(res.at) >= recheckAfter(res.err) {
		res = providerCheck{err: check(), at: now}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]providerCheck{}
		}
		for k, v := range c.m {
			if now.Sub(v.at) > providerRecheckHealthy {
				delete(c.m, k)
			}
		}
		c.m[key] = res
		c.mu.Unlock()
	}
	return res, max(time.Second, res.at.Add(recheckAfter(res.err)).Sub(now))
}

// ensureTokenKeys creates the token keys Secret and rotates its keys (see
// resources.RotateTokenKeys). It returns when to look again and the keys the Secret now
// holds (none without spec.auth).
func (r *RegistryReconciler) ensureTokenKeys(ctx context.Context, reg *v1alpha1.Registry) (time.Duration, registryconfig.TokenKeys, error) {
	key := client.ObjectKey{Namespace: reg.Namespace, Name: reg.TokenKeysSecretName()}
	if reg.Spec.Auth == nil {
		return 0, registryconfig.TokenKeys{}, r.deleteSecret(ctx, reg, reg.TokenKeysSecretName())
	}
	sec := &corev1.Secret{}
	var current registryconfig.TokenKeys
	err := r.APIReader.Get(ctx, key, sec)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return 0, registryconfig.TokenKeys{}, fmt.Errorf("get Secret %s: %w", key, err)
	default:
		if err := json.Unmarshal(sec.Data[registryconfig.TokenKeysKey], &current); err != nil {
			// Unreadable (edited by hand): start over. Tokens issued so far stop working.
			ctrl.LoggerFrom(ctx).Error(err, "Token keys unreadable, generating new ones", "secret", key)
			current = registryconfig.TokenKeys{}
		}
	}
	now := r.now()
	tokens := reg.Spec.Auth.Tokens
	keys, changed, next, err := resources.RotateTokenKeys(now, current.Keys, tokens.GetKeyRotationInterval(),
		resources.TokenKeyRetireAfter(tokens.GetSessionTTL()), registryconfig.NewTokenKey)
	if err != nil {
		return 0, registryconfig.TokenKeys{}, fmt.Errorf("generate token key: %w", err)
	}
	if changed {
		desired, err := resources.TokenKeysSecret(reg, keys)
		if err != nil {
			return 0, registryconfig.TokenKeys{}, err
		}
		ctrl.LoggerFrom(ctx).Info("Writing token keys", "secret", key, "keys", len(keys))
		if _, err := r.applier.Apply(ctx, desired, ""); err != nil {
			return 0, registryconfig.TokenKeys{}, err
		}
		if len(current.Keys) > 0 && len(keys) > len(current.Keys) {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "TokenKeyRotated", "RotateTokenKey",
				"Published a new token signing key; replicas sign with it from %s", keys[len(keys)-1].SignFrom.Format(time.RFC3339))
		}
	}
	return max(time.Second, next.Sub(now)), registryconfig.TokenKeys{Keys: keys}, nil
}

// authCondition reports every identity provider: the users Secret, the LDAP bind Secret,
// CA and directory, the OIDC CA and provider. It is False with the reason of the first provider that is not ready;
// the message lists each provider's state. Nil without spec.auth.
func authCondition(reg *v1alpha1.Registry, s *scope) *metav1.Condition {
	a := reg.Spec.Auth
	if a == nil {
		return nil
	}
	c := &metav1.Condition{Type: v1alpha1.ConditionAuthReady}
	if a.UsersSecretRef != nil && a.LDAP == nil && a.OIDC == nil && !reg.UsesKubernetesAuth() {
		secretCondition(c, s.users, "users")
		return c
	}
	var parts []string
	failed := false
	fail := func(reason, msg string) {
		if !failed {
			failed = true
			c.Status, c.Reason = metav1.ConditionFalse, reason
		}
		parts = append(parts, msg)
	}
	if a.UsersSecretRef != nil {
		uc := &metav1.Condition{}
		secretCondition(uc, s.users, "users")
		if uc.Status != metav1.ConditionTrue {
			fail(uc.Reason, "htpasswd: "+uc.Message)
		} else {
			parts = append(parts, "htpasswd: "+uc.Message)
		}
	}
	l := s.ldap
	switch {
	case a.LDAP == nil:
	case l == nil:
		fail(v1alpha1.ReasonNotObserved, "ldap: not observed")
	case !l.bind.ok():
		bc := &metav1.Condition{}
		secretCondition(bc, l.bind, "bind password")
		fail(bc.Reason, "ldap: "+bc.Message)
	case l.ca != nil && !l.ca.ok():
		cc := &metav1.Condition{}
		secretCondition(cc, l.ca, "CA bundle")
		fail(cc.Reason, "ldap: "+cc.Message)
	case l.err != nil && errors.Is(l.err, access.ErrLDAPBind):
		fail(v1alpha1.ReasonLDAPBindFailed, fmt.Sprintf("ldap: the directory refused the bind account %q: %v", a.LDAP.BindDN, l.err))
	case l.err != nil:
		fail(v1alpha1.ReasonLDAPUnreachable, fmt.Sprintf("ldap: cannot reach %s: %v", l.url, l.err))
	default:
		parts = append(parts, fmt.Sprintf("ldap: %s answers and the bind account works", l.url))
	}
	if o := a.OIDC; o != nil {
		ost := s.oidc
		switch {
		case ost == nil:
			fail(v1alpha1.ReasonNotObserved, "oidc: not observed")
		case ost.ca != nil && !ost.ca.ok():
			cc := &metav1.Condition{}
			secretCondition(cc, ost.ca, "CA bundle")
			fail(cc.Reason, "oidc: "+cc.Message)
		case ost.err != nil:
			fail(v1alpha1.ReasonOIDCDiscoveryFailed, fmt.Sprintf("oidc: cannot read the provider's discovery document or keys at %s: %v", o.IssuerURL, ost.err))
		default:
			parts = append(parts, fmt.Sprintf("oidc: %s publishes its discovery document and keys", o.IssuerURL))
		}
	}
	if reg.UsesKubernetesAuth() && s.authDelegation != nil && !*s.authDelegation {
		fail(v1alpha1.ReasonAuthDelegationNotAllowed, fmt.Sprintf(
			"kubernetes: serviceAccounts and kubernetesRBAC need cluster-wide TokenReview and SubjectAccessReview; a cluster administrator allows it with `kubectl label namespace %s %s=true`",
			reg.Namespace, v1alpha1.LabelAllowAuthDelegation))
	}
	if a.ServiceAccounts != nil {
		parts = append(parts, "serviceaccounts: tokens for "+strings.Join(reg.ServiceAccountAudiences(), ", ")+" are reviewed by the API server")
	}
	if len(a.Robots) > 0 {
		parts = append(parts, fmt.Sprintf("robots: %d", len(a.Robots)))
	}
	if !failed {
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonProvidersReady
	}
	c.Message = strings.Join(parts, "; ")
	return c
}
