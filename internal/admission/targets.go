package admission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/compliance"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/scan"
)

// refreshTargets is how long a Registry's access (CA, credential, scanner key) is reused
// before it is read again; a spec change rebuilds it at once.
const refreshTargets = 10 * time.Minute

// credentialTTL is the lifetime of the webhook's pull credential for a Registry (a fresh
// one is signed every refreshTargets).
const credentialTTL = time.Hour

// Targets are the Registries with a compliance policy, by the hosts images name them by.
type Targets struct {
	// Client lists Registries (the manager's cache).
	Client client.Reader
	// Secrets reads the Registries' TLS, token-key and scanner Secrets (uncached).
	Secrets client.Reader
	// ClusterDomain completes the Service names images may use.
	ClusterDomain string
	// Address, when set, is where the webhook reaches a Registry (tests that run
	// registries on 127.0.0.1); its Service otherwise.
	Address func(*v1alpha1.Registry) string
	// TTL is how long a report or signature verdict is reused (the Checker's TTL).
	TTL time.Duration
	// Now returns the time; time.Now when nil.
	Now func() time.Time

	mu    sync.Mutex
	byUID map[types.UID]*Target
}

// Target is one Registry with a policy, ready to check images against it.
type Target struct {
	Namespace, Name string
	// Hosts the Registry is known by (host names, maybe *.wildcards).
	Hosts []string
	// ScannerImage runs in the Registry's namespace unchecked.
	ScannerImage string
	Action       v1alpha1.ComplianceAction
	Policy       compliance.Policy
	// PolicyErr is set when the policy cannot be used (a public key that does not parse).
	PolicyErr error
	Checker   *compliance.Checker

	generation int64
	built      time.Time
	address    string
	plainHTTP  bool
}

// Rewrite points ref at the address the webhook reaches the Registry by.
func (t *Target) Rewrite(ref name.Reference) name.Reference {
	var opts []name.Option
	if t.plainHTTP {
		opts = append(opts, name.Insecure)
	}
	repo := t.address + "/" + ref.Context().RepositoryStr()
	var out name.Reference
	var err error
	if d, ok := ref.(name.Digest); ok {
		out, err = name.NewDigest(repo+"@"+d.DigestStr(), opts...)
	} else {
		out, err = name.NewTag(repo+":"+ref.Identifier(), opts...)
	}
	if err != nil {
		return ref
	}
	return out
}

// Registries lists the Registries with a policy (from the manager's cache), once per
// admission request: ForHost then picks among them for each image.
func (ts *Targets) Registries(ctx context.Context) ([]*v1alpha1.Registry, error) {
	return withPolicy(ctx, ts.Client)
}

// withPolicy lists the Registries that have a compliance policy and are not being deleted.
func withPolicy(ctx context.Context, c client.Reader) ([]*v1alpha1.Registry, error) {
	var regs v1alpha1.RegistryList
	if err := c.List(ctx, &regs); err != nil {
		return nil, fmt.Errorf("list Registries: %w", err)
	}
	var out []*v1alpha1.Registry
	for i := range regs.Items {
		reg := &regs.Items[i]
		if reg.Spec.Scanning != nil && reg.Spec.Scanning.Policy != nil && reg.DeletionTimestamp.IsZero() {
			out = append(out, reg)
		}
	}
	return out, nil
}

// ForHost returns the Targets among regs (from Registries) that host (a host name without
// port, lower case) names: usually none or one.
func (ts *Targets) ForHost(ctx context.Context, regs []*v1alpha1.Registry, host string) ([]*Target, error) {
	var out []*Target
	for _, reg := range regs {
		if !matchesHost(hostsOf(reg, ts.ClusterDomain), host) {
			continue
		}
		t, err := ts.target(ctx, reg)
		if err != nil {
			return nil, fmt.Errorf("the Registry %s/%s: %w", reg.Namespace, reg.Name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// matchesHost reports whether host is one of names, a name being exact or a wildcard
// (*.example.com: one label in front of example.com).
func matchesHost(names []string, host string) bool {
	for _, n := range names {
		if suffix, ok := strings.CutPrefix(n, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && rest == suffix {
				return true
			}
		} else if n == host {
			return true
		}
	}
	return false
}

// target returns the Registry's Target, rebuilding it when its spec changed or it is old.
func (ts *Targets) target(ctx context.Context, reg *v1alpha1.Registry) (*Target, error) {
	now := ts.now()
	ts.mu.Lock()
	t, ok := ts.byUID[reg.UID]
	ts.mu.Unlock()
	if ok && t.generation == reg.Generation && now.Sub(t.built) < refreshTargets {
		return t, nil
	}
	t, err := ts.build(ctx, reg, now)
	if err != nil {
		return nil, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.byUID == nil {
		ts.byUID = map[types.UID]*Target{}
	}
	ts.byUID[reg.UID] = t
	return t, nil
}

// Forget drops Targets of Registries that are gone or have no policy (called by the
// configuration reconciler with the UIDs that still have one).
func (ts *Targets) Forget(keep map[types.UID]bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for uid := range ts.byUID {
		if !keep[uid] {
			delete(ts.byUID, uid)
		}
	}
}

func (ts *Targets) build(ctx context.Context, reg *v1alpha1.Registry, now time.Time) (*Target, error) {
	spec := reg.Spec.Scanning
	t := &Target{Namespace: reg.Namespace, Name: reg.Name, ScannerImage: spec.GetImage(), Action: spec.Policy.Action,
		generation: reg.Generation, built: now, plainHTTP: reg.Spec.TLS == nil}
	t.Hosts = hostsOf(reg, ts.ClusterDomain)
	if t.Action == "" {
		t.Action = v1alpha1.ComplianceDeny
	}
	t.Policy, t.PolicyErr = PolicyOf(reg)
	t.address = fmt.Sprintf("%s.%s.svc:%d", reg.ServiceName(), reg.Namespace, reg.ServicePort())
	if ts.Address != nil {
		t.address = ts.Address(reg)
	}
	opts := []remote.Option{remote.WithUserAgent(scan.AdmissionUserAgent)}
	if reg.Spec.TLS != nil {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		sec := &corev1.Secret{}
		if err := ts.Secrets.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.TLSSecretName()}, sec); err != nil {
			return nil, fmt.Errorf("read the Registry's TLS Secret %s: %w", reg.TLSSecretName(), err)
		}
		pool.AppendCertsFromPEM(sec.Data["ca.crt"])
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		tr.ResponseHeaderTimeout = 5 * time.Second
		opts = append(opts, remote.WithTransport(tr))
	}
	if reg.Spec.Auth != nil {
		sec := &corev1.Secret{}
		if err := ts.Secrets.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.TokenKeysSecretName()}, sec); err != nil {
			return nil, fmt.Errorf("read the Registry's token keys: %w", err)
		}
		var keys registryconfig.TokenKeys
		if err := json.Unmarshal(sec.Data[registryconfig.TokenKeysKey], &keys); err != nil {
			return nil, fmt.Errorf("the Registry's token keys are unreadable: %w", err)
		}
		cred, err := registryconfig.SignReplicationCredential(keys, reg.TokenIssuer(), reg.TokenService(),
			"admission-webhook", []string{"**"}, []string{"pull"}, now, credentialTTL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: "dockyard-admission", Password: cred}))
	}
	var scanKeys []byte
	sec := &corev1.Secret{}
	switch err := ts.Secrets.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.ScannerSecretName()}, sec); {
	case apierrors.IsNotFound(err):
		// No scanner yet: no report can be trusted, every image is "not scanned" (the
		// Checker reads no report without a key).
	case err != nil:
		return nil, fmt.Errorf("read the scanner's public key: %w", err)
	default:
		scanKeys = sec.Data[resources.ScannerPublicKeyKey]
	}
	c := &compliance.Checker{Remote: opts, TTL: ts.TTL, Now: ts.Now}
	if len(scanKeys) > 0 {
		keys, err := scan.ParsePublicKeys(scanKeys)
		if err != nil {
			return nil, fmt.Errorf("the scanner's public key: %w", err)
		}
		c.Keys = keys
	}
	t.Checker = c
	return t, nil
}

// PolicyOf converts a Registry's spec.scanning.policy (which must be set), as the
// registry reads it too (one conversion: the same policy, the same words).
func PolicyOf(reg *v1alpha1.Registry) (compliance.Policy, error) {
	p, _, err := compliance.FromConfig(resources.CompliancePolicy(reg, nil))
	return p, err
}

// hostsOf are the host names (lower case, without port; maybe *.wildcards) images name
// reg by: those of Registry.ImageHosts. Any port counts: the gate does not let a second
// spelling of the same server through.
func hostsOf(reg *v1alpha1.Registry, clusterDomain string) []string {
	var hosts []string
	for _, h := range reg.ImageHosts(clusterDomain) {
		if n := hostname(h); !slices.Contains(hosts, n) {
			hosts = append(hosts, n)
		}
	}
	return hosts
}

func (ts *Targets) now() time.Time {
	if ts.Now != nil {
		return ts.Now()
	}
	return time.Now()
}
