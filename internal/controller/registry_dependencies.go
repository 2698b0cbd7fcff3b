package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// issuerRecheck is how often a Registry waiting for a cert-manager issuer looks again
// (issuers are not watched; the Certificate is).
const issuerRecheck = 30 * time.Second

// observeDependencies reads the Secrets and the issuer the Registry refers to, and digests
// what the pods read only at start into the inputs hash.
//
// The users Secret and the certificate are deliberately left out of the hash: they are
// mounted as Secret volumes (kubelet refreshes the files) and the workload reloads both
// live, without dropping a request. Rolling the pods for them instead would turn every
// certificate renewal into downtime on a ReadWriteOnce volume, whose Deployment must use
// the Recreate strategy. Storage credentials reach the pods as environment variables,
// which only a restart picks up, so they are hashed.
func (r *RegistryReconciler) observeDependencies(ctx context.Context, s *scope) (ctrl.Result, error) {
	reg := s.reg
	h := sha256.New()
	var res ctrl.Result

	if a := reg.Spec.Auth; a != nil && a.UsersSecretRef != nil {
		sec, st, err := r.readSecret(ctx, reg.Namespace, a.UsersSecretRef.Name, registryconfig.UsersHtpasswdKey)
		if err != nil {
			return res, err
		}
		s.users = st
		if sec != nil {
			_, s.usersGroups = sec.Data[registryconfig.UsersGroupsKey]
		}
	}
	if a := reg.Spec.Auth; a != nil && a.LDAP != nil {
		st, recheck, err := r.observeLDAP(ctx, reg, a.LDAP)
		if err != nil {
			return res, err
		}
		s.ldap = st
		res = lowestRequeue(res, ctrl.Result{RequeueAfter: recheck})
	}
	if a := reg.Spec.Auth; a != nil && a.OIDC != nil {
		st, recheck, err := r.observeOIDC(ctx, reg, a.OIDC)
		if err != nil {
			return res, err
		}
		s.oidc = st
		res = lowestRequeue(res, ctrl.Result{RequeueAfter: recheck})
	}
	if reg.UsesKubernetesAuth() {
		ns := &corev1.Namespace{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: reg.Namespace}, ns); err != nil {
			return res, fmt.Errorf("get Namespace %s: %w", reg.Namespace, err)
		}
		s.authDelegation = ptrTo(v1alpha1.AuthDelegationAllowed(ns.Labels))
	}
	if ref := reg.StorageCredentialsRef(); ref != nil {
		sec, st, err := r.readSecret(ctx, reg.Namespace, ref.Name, credentialKeys(reg)...)
		if err != nil {
			return res, err
		}
		s.credentials = st
		hashSecret(h, "credentials", sec)
	}
	if t := reg.Spec.TLS; t != nil {
		sec, st, err := r.readSecret(ctx, reg.Namespace, reg.TLSSecretName(), corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
		if err != nil {
			return res, err
		}
		s.tls = st
		_ = sec // reloaded live by the workload; see above
		if t.IssuerRef != nil {
			cs, err := r.observeIssuer(ctx, reg)
			if err != nil {
				return res, err
			}
			s.cert = cs
			if !cs.installed || !cs.issuerFound || !cs.issuerReady {
				res.RequeueAfter = issuerRecheck
			}
		}
	}
	s.inputsHash = hex.EncodeToString(h.Sum(nil)[:12])
	return res, nil
}

func credentialKeys(reg *v1alpha1.Registry) []string {
	st := reg.Spec.Storage
	switch {
	case st.S3 != nil:
		return []string{registryconfig.S3AccessKeyIDKey, registryconfig.S3SecretAccessKeyKey}
	case st.GCS != nil:
		return []string{registryconfig.GCSKeyJSONKey}
	case st.Azure != nil:
		return []string{registryconfig.AzureAccountKeyKey}
	}
	return nil
}

// readSecret fetches a Secret from the API server (Secret data is never cached) and
// checks that the keys are present and non-empty.
func (r *RegistryReconciler) readSecret(ctx context.Context, ns, name string, keys ...string) (*corev1.Secret, *secretState, error) {
	st := &secretState{name: name}
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, st, nil
		}
		return nil, nil, fmt.Errorf("get Secret %s/%s: %w", ns, name, err)
	}
	st.found = true
	for _, k := range keys {
		if len(sec.Data[k]) == 0 {
			st.missingKeys = append(st.missingKeys, k)
		}
	}
	return sec, st, nil
}

// hashSecret adds a Secret's content (or its absence) to the inputs hash.
func hashSecret(h interface{ Write([]byte) (int, error) }, role string, sec *corev1.Secret) {
	fmt.Fprintf(h, "%s\x00", role)
	if sec == nil {
		fmt.Fprint(h, "<absent>\x00")
		return
	}
	keys := make([]string, 0, len(sec.Data))
	for k := range sec.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sum := sha256.Sum256(sec.Data[k])
		fmt.Fprintf(h, "%s=%x\x00", k, sum)
	}
}

// observeIssuer looks up the issuer (for a clear reason when it is missing or not ready)
// and the Certificate from the cache.
func (r *RegistryReconciler) observeIssuer(ctx context.Context, reg *v1alpha1.Registry) (*certState, error) {
	cs := &certState{installed: r.CertManager}
	if !r.CertManager {
		return cs, nil
	}
	ref := reg.Spec.TLS.IssuerRef
	if ref.Group != "" && ref.Group != v1alpha1.DefaultIssuerGroup {
		// An external issuer: we cannot read its readiness; trust the Certificate.
		cs.issuerFound, cs.issuerReady = true, true
	} else {
		var conds []cmapi.IssuerCondition
		var err error
		if ref.Kind == "ClusterIssuer" {
			iss := &cmapi.ClusterIssuer{}
			err = r.APIReader.Get(ctx, client.ObjectKey{Name: ref.Name}, iss)
			conds = iss.Status.Conditions
		} else {
			iss := &cmapi.Issuer{}
			err = r.APIReader.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: ref.Name}, iss)
			conds = iss.Status.Conditions
		}
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("get %s %s: %w", ref.Kind, ref.Name, err)
		default:
			cs.issuerFound = true
			for _, c := range conds {
				if c.Type == cmapi.IssuerConditionReady {
					cs.issuerReady = c.Status == cmmeta.ConditionTrue
					cs.issuerMessage = c.Message
				}
			}
		}
	}
	cert := &cmapi.Certificate{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.CertificateName()}, cert)
	switch {
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
	case err != nil:
		return nil, fmt.Errorf("get Certificate %s/%s: %w", reg.Namespace, reg.CertificateName(), err)
	default:
		cs.certificate = cert
	}
	return cs, nil
}

// certificateReady returns cert-manager's Ready condition of the Certificate.
func certificateReady(c *cmapi.Certificate) (bool, string) {
	if c == nil {
		return false, "waiting for cert-manager to pick up the Certificate"
	}
	for _, cond := range c.Status.Conditions {
		if cond.Type == cmapi.CertificateConditionReady {
			if cond.ObservedGeneration != 0 && cond.ObservedGeneration < c.Generation {
				return false, "cert-manager has not processed the latest Certificate spec yet"
			}
			return cond.Status == cmmeta.ConditionTrue, cond.Message
		}
	}
	return false, "cert-manager has not reported on the Certificate yet"
}
