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

// How often the operator binds to a Registry's LDAP directory to report its health in
// AuthReady: every 5 minutes while it works, every minute while it does not.
const (
	ldapRecheckHealthy = 5 * time.Minute
	ldapRecheckFailing = time.Minute
	ldapCheckTimeout   = 10 * time.Second
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
	var caPEM []byte
	if ca := l.CA; ca != nil {
		switch {
		case ca.SecretKeyRef != nil:
			csec, cs, err := r.readSecret(ctx, reg.Namespace, ca.SecretKeyRef.Name, ca.SecretKeyRef.Key)
			if err != nil {
				return nil, 0, err
			}
			st.ca = cs
			if csec != nil {
				caPEM = csec.Data[ca.SecretKeyRef.Key]
			}
		case ca.ConfigMapKeyRef != nil:
			cm := &corev1.ConfigMap{}
			st.ca = &secretState{name: ca.ConfigMapKeyRef.Name, kind: "ConfigMap"}
			err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: ca.ConfigMapKeyRef.Name}, cm)
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return nil, 0, fmt.Errorf("get ConfigMap %s/%s: %w", reg.Namespace, ca.ConfigMapKeyRef.Name, err)
			default:
				st.ca.found = true
				caPEM = []byte(cm.Data[ca.ConfigMapKeyRef.Key])
				if len(caPEM) == 0 {
					st.ca.missingKeys = []string{ca.ConfigMapKeyRef.Key}
				}
			}
		}
	}
	if !st.bind.ok() || (st.ca != nil && !st.ca.ok()) {
		return st, 0, nil
	}
	cfg := resources.Config(reg, resources.Inputs{}).Auth.LDAP
	pw := sec.Data[l.BindPasswordSecretRef.Key]
	key := ldapCheckKey(reg, cfg, pw, caPEM)
	res, ok := r.ldapChecks.get(key, r.now())
	if !ok {
		ctx, cancel := context.WithTimeout(ctx, ldapCheckTimeout)
		defer cancel()
		ctrl.LoggerFrom(ctx).V(1).Info("Checking LDAP directory", "urls", st.url)
		res = ldapCheck{err: r.checkLDAP(ctx, *cfg, pw, caPEM), at: r.now()}
		r.ldapChecks.put(key, res)
	}
	st.checked, st.err = true, res.err
	wait := ldapRecheckHealthy
	if res.err != nil {
		wait = ldapRecheckFailing
	}
	return st, max(time.Second, res.at.Add(wait).Sub(r.now())), nil
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

type ldapCheck struct {
	err error
	at  time.Time
}

// ldapCheckCache remembers recent directory checks.
type ldapCheckCache struct {
	mu sync.Mutex
	m  map[string]ldapCheck
}

func (c *ldapCheckCache) get(key string, now time.Time) (ldapCheck, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res, ok := c.m[key]
	if !ok {
		return ldapCheck{}, false
	}
	wait := ldapRecheckHealthy
	if res.err != nil {
		wait = ldapRecheckFailing
	}
	if now.Sub(res.at) >= wait {
		return ldapCheck{}, false
	}
	return res, true
}

func (c *ldapCheckCache) put(key string, res ldapCheck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]ldapCheck{}
	}
	for k, v := range c.m {
		if res.at.Sub(v.at) > ldapRecheckHealthy {
			delete(c.m, k)
		}
	}
	c.m[key] = res
}

// ensureTokenKeys creates the token keys Secret and rotates its keys (see
// resources.RotateTokenKeys). It returns when to look again.
func (r *RegistryReconciler) ensureTokenKeys(ctx context.Context, reg *v1alpha1.Registry) (time.Duration, error) {
	key := client.ObjectKey{Namespace: reg.Namespace, Name: reg.TokenKeysSecretName()}
	if reg.Spec.Auth == nil {
		pm := &metav1.PartialObjectMetadata{}
		pm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if err := r.Client.Get(ctx, key, pm); err != nil {
			return 0, client.IgnoreNotFound(err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleting token keys: auth is off", "secret", key)
		if err := client.IgnoreNotFound(r.Client.Delete(ctx, pm)); err != nil {
			return 0, fmt.Errorf("delete Secret %s: %w", key, err)
		}
		return 0, nil
	}
	sec := &corev1.Secret{}
	var current registryconfig.TokenKeys
	err := r.APIReader.Get(ctx, key, sec)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return 0, fmt.Errorf("get Secret %s: %w", key, err)
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
		return 0, fmt.Errorf("generate token key: %w", err)
	}
	if changed {
		desired, err := resources.TokenKeysSecret(reg, keys)
		if err != nil {
			return 0, err
		}
		ctrl.LoggerFrom(ctx).Info("Writing token keys", "secret", key, "keys", len(keys))
		if _, err := r.applier.Apply(ctx, desired, ""); err != nil {
			return 0, err
		}
		if len(current.Keys) > 0 && len(keys) > len(current.Keys) {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "TokenKeyRotated", "RotateTokenKey",
				"Published a new token signing key; replicas sign with it from %s", keys[len(keys)-1].SignFrom.Format(time.RFC3339))
		}
	}
	return max(time.Second, next.Sub(now)), nil
}

// authCondition reports every identity provider: the users Secret, the LDAP bind Secret,
// CA and directory. It is False with the reason of the first provider that is not ready;
// the message lists each provider's state. Nil without spec.auth.
func authCondition(reg *v1alpha1.Registry, s *scope) *metav1.Condition {
	a := reg.Spec.Auth
	if a == nil {
		return nil
	}
	c := &metav1.Condition{Type: v1alpha1.ConditionAuthReady}
	if a.LDAP == nil {
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
	if !failed {
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonProvidersReady
	}
	c.Message = strings.Join(parts, "; ")
	return c
}
