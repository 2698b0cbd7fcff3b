package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/replication"
)

// replicationCredentialTTL is how long the credential for the local Registry of one run
// lives (a run that takes longer fails its remaining artifacts, and the next run resumes).
const replicationCredentialTTL = time.Hour

// errMissingInput marks a Secret, ConfigMap or key the rule names that is not there (the
// rule waits for it: reason CredentialsNotFound).
var errMissingInput = errors.New("missing")

// localEndpoint is how the manager reaches the rule's own Registry: its Service (or the
// address the reconciler's RegistryAddress gives), trusting the ca.crt of its TLS Secret,
// with a replication credential signed with its token keys when it has access control.
func (r *ReplicationReconciler) localEndpoint(ctx context.Context, rule *v1alpha1.ReplicationRule, reg *v1alpha1.Registry) (replication.Endpoint, error) {
	host := fmt.Sprintf("%s.%s.svc:%d", reg.ServiceName(), reg.Namespace, reg.ServicePort())
	if r.RegistryAddress != nil {
		host = r.RegistryAddress(reg)
	}
	e := replication.Endpoint{Host: host, PlainHTTP: reg.Spec.TLS == nil}
	if reg.Spec.TLS != nil {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		sec := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.TLSSecretName()}, sec); err != nil {
			return e, fmt.Errorf("read the Registry's TLS Secret %s: %w", reg.TLSSecretName(), err)
		}
		if ca := sec.Data["ca.crt"]; len(ca) > 0 {
			pool.AppendCertsFromPEM(ca)
		}
		e.Transport = transportFor(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	if reg.Spec.Auth == nil {
		return e, nil
	}
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.TokenKeysSecretName()}, sec); err != nil {
		return e, fmt.Errorf("read the Registry's token keys: %w", err)
	}
	var keys registryconfig.TokenKeys
	if err := json.Unmarshal(sec.Data[registryconfig.TokenKeysKey], &keys); err != nil {
		return e, fmt.Errorf("token keys unreadable: %w", err)
	}
	repos, actions := localGrant(rule)
	cred, err := registryconfig.SignReplicationCredential(keys, reg.TokenIssuer(), reg.TokenService(),
		rule.Namespace+"/"+rule.Name, repos, actions, r.now(), replicationCredentialTTL)
	if err != nil {
		return e, err
	}
	e.Auth = &authn.Basic{Username: "dockyard-replicator", Password: cred}
	return e, nil
}

// localGrant is the least a run needs on the local Registry: pull of the filtered
// repositories for a Push rule; pull and push (and delete, to propagate deletes) of the
// destination names for a Pull rule.
func localGrant(rule *v1alpha1.ReplicationRule) ([]string, []string) {
	if rule.Spec.Direction == v1alpha1.ReplicationPush {
		return rule.Spec.Filters.Repositories, []string{"pull"}
	}
	actions := []string{"pull", "push"}
	if rule.Spec.PropagateDeletes {
		actions = append(actions, "delete")
	}
	d := rule.Spec.Destination
	switch {
	case d == nil || (d.Prefix == "" && d.StripSegments == 0):
		return rule.Spec.Filters.Repositories, actions
	case d.StripSegments == 0:
		out := make([]string, 0, len(rule.Spec.Filters.Repositories))
		for _, p := range rule.Spec.Filters.Repositories {
			out = append(out, d.Prefix+"/"+p)
		}
		return out, actions
	case d.Prefix != "":
		return []string{d.Prefix + "/**"}, actions
	}
	return []string{"**"}, actions
}

// remoteEndpoint is the rule's remote: its URL, the CA bundle it names, and the
// credentials of its Secret. Secret values stay in memory.
func (r *ReplicationReconciler) remoteEndpoint(ctx context.Context, rule *v1alpha1.ReplicationRule) (replication.Endpoint, error) {
	spec := rule.Spec.Remote
	e := replication.Endpoint{Host: rule.RemoteHost(), PlainHTTP: rule.RemotePlainHTTP()}
	if !e.PlainHTTP {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		switch {
		case spec.InsecureSkipTLSVerify:
			cfg.InsecureSkipVerify = true //nolint:gosec // the user asked for it, loudly discouraged in the API
		case spec.CABundle != nil:
			pem, err := r.caBundle(ctx, rule.Namespace, spec.CABundle)
			if err != nil {
				return e, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return e, fmt.Errorf("remote.caBundle: %w: no PEM certificate in it", errMissingInput)
			}
			cfg.RootCAs = pool
		}
		e.Transport = transportFor(cfg)
	}
	if spec.CredentialsSecretRef == nil {
		return e, nil
	}
	sec := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: rule.Namespace, Name: spec.CredentialsSecretRef.Name}, sec)
	if apierrors.IsNotFound(err) {
		return e, fmt.Errorf("remote.credentialsSecretRef: %w: Secret %s not found", errMissingInput, spec.CredentialsSecretRef.Name)
	}
	if err != nil {
		return e, fmt.Errorf("read Secret %s: %w", spec.CredentialsSecretRef.Name, err)
	}
	a, err := credentialsFrom(sec, e.Host)
	if err != nil {
		return e, fmt.Errorf("remote.credentialsSecretRef %s: %w: %w", sec.Name, errMissingInput, err)
	}
	e.Auth = a
	return e, nil
}

// credentialsFrom reads a dockerconfigjson Secret's entry for host, or username/password keys.
func credentialsFrom(sec *corev1.Secret, host string) (authn.Authenticator, error) {
	if raw, ok := sec.Data[corev1.DockerConfigJsonKey]; ok {
		return replication.DockerConfigAuth(raw, host)
	}
	user, pass := sec.Data["username"], sec.Data["password"]
	if len(user) == 0 || len(pass) == 0 {
		return nil, errors.New("neither a .dockerconfigjson key nor username and password keys")
	}
	return &authn.Basic{Username: string(user), Password: string(pass)}, nil
}

// caBundle reads a CA bundle the rule names.
func (r *ReplicationReconciler) caBundle(ctx context.Context, ns string, src *v1alpha1.CABundleSource) ([]byte, error) {
	if ref := src.SecretKeyRef; ref != nil {
		sec := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, sec)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("remote.caBundle: %w: Secret %s not found", errMissingInput, ref.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("read Secret %s: %w", ref.Name, err)
		}
		if v, ok := sec.Data[ref.Key]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("remote.caBundle: %w: Secret %s has no key %s", errMissingInput, ref.Name, ref.Key)
	}
	ref := src.ConfigMapKeyRef
	cm := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, cm)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("remote.caBundle: %w: ConfigMap %s not found", errMissingInput, ref.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("read ConfigMap %s: %w", ref.Name, err)
	}
	if v, ok := cm.Data[ref.Key]; ok {
		return []byte(v), nil
	}
	return nil, fmt.Errorf("remote.caBundle: %w: ConfigMap %s has no key %s", errMissingInput, ref.Name, ref.Key)
}

// transportFor is an HTTP transport with the given TLS trust and the usual timeouts.
func transportFor(cfg *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	t.ResponseHeaderTimeout = time.Minute
	return t
}
