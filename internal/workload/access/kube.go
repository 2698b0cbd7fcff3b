package access

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// ProviderServiceAccount names Kubernetes ServiceAccount logins in logs, metrics and tokens.
const ProviderServiceAccount = "serviceaccount"

// ServiceAccountUserPrefix starts the user name of every ServiceAccount.
const ServiceAccountUserPrefix = "system:serviceaccount:"

// Bounds on what the registry asks of the API server.
const (
	// kubeNegativeTTL is how long a refused token is remembered, so a client retrying a
	// bad token costs one TokenReview per interval.
	kubeNegativeTTL = 10 * time.Second
	// kubeMaxInFlight bounds concurrent reviews per replica: a burst of new tokens or of
	// uncached decisions waits rather than flooding the API server.
	kubeMaxInFlight = 16
	kubeCacheMax    = 50000
	kubeRefusedMax  = 10000
)

// kubeProvider asks the Kubernetes API server who a ServiceAccount token belongs to
// (TokenReview) and whether a subject may pull, push or delete a repository
// (SubjectAccessReview), caching both answers for a bounded time.
//
// TokenReview rather than verifying tokens against the cluster's issuer keys: the API
// server also checks that the ServiceAccount (and the pod a token is bound to) still
// exists, so a deleted ServiceAccount's token stops working once the cache entry expires
// (serviceAccounts.cacheTTL, 30 s by default), not when the token expires (up to hours).
// The cost is one API request per new token per cache period; registry tokens from
// /auth/token make that one per token exchange.
type kubeProvider struct {
	cfg     registryconfig.Kubernetes
	now     func() time.Time
	authn   authnclient.AuthenticationV1Interface
	authz   authzclient.AuthorizationV1Interface
	tokens  *expiringCache[kubeReview]
	refused *expiringCache[kubeReview]
	sars    *expiringCache[sarAnswer]
	slots   chan struct{}
	calls   *prometheus.CounterVec
}

// kubeReview is a remembered TokenReview: the identity, or the refusal.
type kubeReview struct {
	id  Identity
	err error
}

// sarAnswer is a remembered SubjectAccessReview.
type sarAnswer struct {
	allowed bool
	reason  string
}

func newKubeProvider(cfg registryconfig.Kubernetes) (*kubeProvider, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes auth: API server configuration: %w", err)
	}
	rc.Timeout = cfg.Timeout.Duration
	// Reviews are small and the caches bound them; client-go's default of 5 per second
	// would turn a cold start under load into seconds of queueing.
	rc.QPS, rc.Burst = 200, 400
	rc.UserAgent = "dockyard-registry"
	an, err := authnclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes auth: %w", err)
	}
	az, err := authzclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes auth: %w", err)
	}
	return &kubeProvider{cfg: cfg, now: time.Now, authn: an, authz: az,
		tokens: newExpiringCache[kubeReview](kubeCacheMax), refused: newExpiringCache[kubeReview](kubeRefusedMax),
		sars:  newExpiringCache[sarAnswer](kubeCacheMax),
		slots: make(chan struct{}, kubeMaxInFlight),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockyard_registry_kubernetes_requests_total",
			Help: "Requests to the Kubernetes API server (kind tokenreview or subjectaccessreview; result ok or error).",
		}, []string{"kind", "result"}),
	}, nil
}

// acquire takes one of the in-flight slots, or fails when ctx ends first.
func (k *kubeProvider) acquire(ctx context.Context) error {
	select {
	case k.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting to ask the Kubernetes API server: %w", errProviderUnavailable, ctx.Err())
	}
}

func (k *kubeProvider) release() { <-k.slots }

// authenticate reviews a ServiceAccount token. A token the API server refuses, issued for
// another audience, or of a user that is not a ServiceAccount is errBadPassword; an API
// server that cannot be asked errProviderUnavailable.
func (k *kubeProvider) authenticate(ctx context.Context, raw string) (Identity, error) {
	sa := k.cfg.ServiceAccounts
	if sa == nil {
		return Identity{}, fmt.Errorf("%w: ServiceAccount tokens are not accepted", errBadPassword)
	}
	sum := sha256.Sum256([]byte(raw))
	now := k.now()
	if r, hit := k.tokens.get(sum, now); hit {
		return r.id, nil
	}
	if r, hit := k.refused.get(sum, now); hit {
		return Identity{}, r.err
	}
	if err := k.acquire(ctx); err != nil {
		return Identity{}, err
	}
	defer k.release()
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout.Duration)
	defer cancel()
	tr, err := k.authn.TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: raw, Audiences: sa.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		k.calls.WithLabelValues("tokenreview", "error").Inc()
		return Identity{}, fmt.Errorf("%w: TokenReview: %w", errProviderUnavailable, err)
	}
	k.calls.WithLabelValues("tokenreview", "ok").Inc()
	var id Identity
	switch st := tr.Status; {
	case !st.Authenticated:
		msg := st.Error
		if msg == "" {
			msg = "the API server did not authenticate the token"
		}
		err = fmt.Errorf("%w: %s", errBadPassword, msg)
	case !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(sa.Audiences, a) }):
		err = fmt.Errorf("%w: the token is not issued for audience %v", errBadPassword, sa.Audiences)
	case !strings.HasPrefix(st.User.Username, ServiceAccountUserPrefix):
		err = fmt.Errorf("%w: only ServiceAccount tokens are accepted", errBadPassword)
	default:
		id = Identity{User: st.User.Username, Groups: slices.Clone(st.User.Groups), Provider: ProviderServiceAccount}
	}
	if err != nil {
		// Refusals live in their own cache: a flood of forged tokens cannot evict the
		// answers for real ones.
		k.refused.put(sum, kubeReview{err: err}, now.Add(kubeNegativeTTL), now)
		return id, err
	}
	expires := now.Add(sa.CacheTTL.Duration)
	if exp, ok := expiryOf(raw); ok {
		id.expires = exp
		if exp.Before(expires) {
			expires = exp
		}
	}
	k.tokens.put(sum, kubeReview{id: id}, expires, now)
	return id, nil
}

// expiryOf returns the exp claim of a JWT, unverified (the API server verified it).
func expiryOf(raw string) (time.Time, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(c.Exp, 0), true
}

// RBACTarget maps a repository to the namespace and name RBAC authorizes: the first path
// segment is the namespace when it is a valid namespace name and more segments follow
// (team-a/app/api → namespace team-a, name app/api); otherwise the repository is outside
// any namespace (namespace "", name the whole path), and only a ClusterRoleBinding grants it.
func RBACTarget(repository string) (namespace, name string) {
	first, remainder, ok := strings.Cut(repository, "/")
	if !ok || len(validation.IsDNS1123Label(first)) > 0 {
		return "", repository
	}
	return first, remainder
}

// errReservedName refuses a non-Kubernetes identity whose name Kubernetes reserves.
const reservedPrefix = "system:"

// rbacSubject is the SAR subject for id: its name and groups, plus system:authenticated as
// the API server adds it. Names and groups that start with system: are Kubernetes' own: a
// directory, OIDC or htpasswd identity claiming one (a group named system:masters) is not
// taken at its word — the user is not asked about, such groups are dropped.
func rbacSubject(id Identity) (string, []string, bool) {
	if id.Provider == ProviderServiceAccount {
		return id.User, id.Groups, true
	}
	if strings.HasPrefix(id.User, reservedPrefix) {
		return "", nil, false
	}
	groups := make([]string, 0, len(id.Groups)+1)
	for _, g := range id.Groups {
		if !strings.HasPrefix(g, reservedPrefix) {
			groups = append(groups, g)
		}
	}
	return id.User, append(groups, "system:authenticated"), true
}

// allows asks Kubernetes RBAC whether id may perform action (pull, push, delete) on
// repository. The reason of a refusal names the verb, the resource and the namespace.
func (k *kubeProvider) allows(ctx context.Context, id Identity, repository, action string) (bool, string, error) {
	user, groups, ok := rbacSubject(id)
	if !ok {
		return false, fmt.Sprintf("Kubernetes RBAC: the user name %q is reserved for Kubernetes identities", id.User), nil
	}
	ns, name := RBACTarget(repository)
	key := sarKey(user, groups, action, ns, name)
	now := k.now()
	if a, hit := k.sars.get(key, now); hit {
		return a.allowed, a.reason, nil
	}
	if err := k.acquire(ctx); err != nil {
		return false, "", err
	}
	defer k.release()
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout.Duration)
	defer cancel()
	sar, err := k.authz.SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: user, Groups: groups,
		ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: action,
			Group: registryconfig.RBACGroup, Resource: registryconfig.RBACResource, Name: name},
	}}, metav1.CreateOptions{})
	if err != nil {
		k.calls.WithLabelValues("subjectaccessreview", "error").Inc()
		return false, "", fmt.Errorf("%w: SubjectAccessReview: %w", errProviderUnavailable, err)
	}
	k.calls.WithLabelValues("subjectaccessreview", "ok").Inc()
	a := sarAnswer{allowed: sar.Status.Allowed && !sar.Status.Denied}
	if !a.allowed {
		where := "cluster-wide (the repository is outside any namespace)"
		if ns != "" {
			where = "in namespace " + ns
		}
		a.reason = fmt.Sprintf("Kubernetes RBAC: %s may not %s %s.%s %q %s", user, action,
			registryconfig.RBACResource, registryconfig.RBACGroup, name, where)
	}
	k.sars.put(key, a, now.Add(k.cfg.RBAC.CacheTTL.Duration), now)
	return a.allowed, a.reason, nil
}

func sarKey(user string, groups []string, parts ...string) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	sorted := slices.Clone(groups)
	slices.Sort(sorted)
	for _, g := range sorted {
		h.Write([]byte(g))
		h.Write([]byte{1})
	}
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// isServiceAccountToken reports whether claims (unverified) look like a Kubernetes
// ServiceAccount token: a kubernetes.io claim (bound tokens) or a ServiceAccount subject.
func isServiceAccountToken(c jwtPeek) bool {
	return c.Kubernetes != nil || strings.HasPrefix(c.Sub, ServiceAccountUserPrefix)
}
