package controller

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/replication"
)

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// pendingPushes holds, per onPush rule, the repositories pushed to since its last run.
// It is memory only: what a restarted manager never heard of, the startup and backstop
// runs (which compare everything) catch up.
type pendingPushes struct {
	mu sync.Mutex
	m  map[types.NamespacedName]*pendingRun
	ch chan event.TypedGenericEvent[*v1alpha1.ReplicationRule]
}

// pendingRun is what an onPush run has to look at.
type pendingRun struct {
	// repos pushed to (or deleted from).
	repos map[string]*pendingRepo
	// all: events were lost, compare everything.
	all bool
}

// pendingRepo is what happened in one repository.
type pendingRepo struct {
	// since is the time of the oldest event.
	since time.Time
	// tags pushed; allTags: something else happened (a push by digest, a signature tag,
	// a delete), so the whole repository is compared.
	tags    []string
	allTags bool
}

func newPendingPushes() *pendingPushes {
	return &pendingPushes{m: map[types.NamespacedName]*pendingRun{},
		ch: make(chan event.TypedGenericEvent[*v1alpha1.ReplicationRule], 1024)}
}

// add records events for a rule and wakes its reconcile.
func (p *pendingPushes) add(ctx context.Context, rule *v1alpha1.ReplicationRule, repos map[string]*pendingRepo, all bool) {
	key := types.NamespacedName{Namespace: rule.Namespace, Name: rule.Name}
	p.mu.Lock()
	pr := p.m[key]
	if pr == nil {
		pr = &pendingRun{repos: map[string]*pendingRepo{}}
		p.m[key] = pr
	}
	pr.merge(&pendingRun{repos: repos, all: all})
	p.mu.Unlock()
	select {
	case p.ch <- event.TypedGenericEvent[*v1alpha1.ReplicationRule]{Object: rule}:
	case <-ctx.Done():
	}
}

func (pr *pendingRun) merge(o *pendingRun) {
	pr.all = pr.all || o.all
	for r, o := range o.repos {
		cur := pr.repos[r]
		if cur == nil {
			cur = &pendingRepo{since: o.since}
			pr.repos[r] = cur
		}
		if o.since.Before(cur.since) {
			cur.since = o.since
		}
		cur.allTags = cur.allTags || o.allTags
		for _, t := range o.tags {
			if !slices.Contains(cur.tags, t) {
				cur.tags = append(cur.tags, t)
			}
		}
	}
}

// take removes and returns what is pending for a rule (nil when nothing is).
func (p *pendingPushes) take(key types.NamespacedName) *pendingRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.m[key]
	delete(p.m, key)
	return pr
}

// putBack returns what a failed run did not copy.
func (p *pendingPushes) putBack(key types.NamespacedName, pr *pendingRun) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.m[key]; cur != nil {
		pr.merge(cur)
	}
	p.m[key] = pr
}

// forget drops a deleted rule's pending events.
func (p *pendingPushes) forget(key types.NamespacedName) {
	p.mu.Lock()
	delete(p.m, key)
	p.mu.Unlock()
}

// EventReceiver serves registryconfig.EventsPath: registries post what they acknowledged,
// authenticated by a projected ServiceAccount token (audience registryconfig.EventsAudience)
// that a TokenReview must show to be the Registry's own ServiceAccount. It runs only in
// the leader (the manager that runs replication); others refuse connections, and the
// registries retry.
type EventReceiver struct {
	// Addr is the listen address (":8082").
	Addr string
	// Client lists rules (from the cache) and creates TokenReviews.
	Client client.Client
	// Clock returns the time; time.Now when nil.
	Clock   func() time.Time
	pending *pendingPushes
	// scans, when set, also gets every push (for the scanners of spec.scanning).
	scans *ScanForwarder

	mu      sync.Mutex
	known   map[[32]byte]reviewed
	reviews chan struct{}
	ln      net.Listener
}

// reviewed is a cached TokenReview answer.
type reviewed struct {
	user    string
	expires time.Time
}

// Bounds of the receiver.
const (
	eventsMaxBody        = 1 << 20
	eventsReviewCacheTTL = time.Minute
	eventsReviewCacheMax = 1024
	// eventsReviewsInFlight bounds concurrent TokenReviews.
	eventsReviewsInFlight = 4
)

// NeedLeaderElection is true: only the leader receives (it is the one that replicates).
func (e *EventReceiver) NeedLeaderElection() bool { return true }

// Listen opens the listener (so tests learn the port before Start).
func (e *EventReceiver) Listen() (string, error) {
	ln, err := net.Listen("tcp", e.Addr)
	if err != nil {
		return "", fmt.Errorf("listen for registry events on %s: %w", e.Addr, err)
	}
	e.ln = ln
	return ln.Addr().String(), nil
}

// Start serves until ctx ends.
func (e *EventReceiver) Start(ctx context.Context) error {
	if e.ln == nil {
		if _, err := e.Listen(); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle(registryconfig.EventsPath, e)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	ctrl.LoggerFrom(ctx).WithName("events").Info("Receiving registry events", "addr", e.ln.Addr().String())
	if err := srv.Serve(e.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (e *EventReceiver) now() time.Time {
	if e.Clock != nil {
		return e.Clock()
	}
	return time.Now()
}

func (e *EventReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		http.Error(w, "a Bearer token is required", http.StatusUnauthorized)
		return
	}
	var batch registryconfig.EventBatch
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, eventsMaxBody)).Decode(&batch); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	ns, name, ok := strings.Cut(batch.Registry, "/")
	if !ok || ns == "" || name == "" {
		http.Error(w, "registry: namespace/name", http.StatusBadRequest)
		return
	}
	user, err := e.review(r.Context(), token)
	if err != nil {
		http.Error(w, "token review failed", http.StatusServiceUnavailable)
		return
	}
	// The Registry's pods run as the ServiceAccount named after it.
	if user != "system:serviceaccount:"+ns+":"+name {
		http.Error(w, "this token does not belong to Registry "+batch.Registry, http.StatusForbidden)
		return
	}
	if err := e.dispatch(r.Context(), ns, name, batch); err != nil {
		http.Error(w, "dispatch: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if e.scans != nil {
		e.scans.Add(types.NamespacedName{Namespace: ns, Name: name}, batch.Events)
	}
	w.WriteHeader(http.StatusAccepted)
}

// review returns the user a token authenticates as for the events audience ("" when
// it does not). Answers are cached for a minute.
func (e *EventReceiver) review(ctx context.Context, token string) (string, error) {
	sum := sha256.Sum256([]byte(token))
	now := e.now()
	e.mu.Lock()
	if c, ok := e.known[sum]; ok && now.Before(c.expires) {
		e.mu.Unlock()
		return c.user, nil
	}
	e.mu.Unlock()
	// At most a few reviews at once: a caller spraying made-up tokens gets 503s, not a
	// line to the API server.
	select {
	case e.reviews <- struct{}{}:
		defer func() { <-e.reviews }()
	default:
		return "", errors.New("too many token reviews in flight")
	}
	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{registryconfig.EventsAudience}}}
	if err := e.Client.Create(ctx, tr); err != nil {
		return "", err
	}
	user := ""
	if tr.Status.Authenticated && slices.Contains(tr.Status.Audiences, registryconfig.EventsAudience) {
		user = tr.Status.User.Username
	}
	e.mu.Lock()
	if e.known == nil {
		e.known = map[[32]byte]reviewed{}
	}
	if len(e.known) >= eventsReviewCacheMax {
		for k, v := range e.known {
			if !now.Before(v.expires) {
				delete(e.known, k)
			}
		}
	}
	// Full of live answers: this one is not remembered (the registries' own, already
	// cached, are never pushed out by made-up tokens).
	if len(e.known) < eventsReviewCacheMax {
		e.known[sum] = reviewed{user: user, expires: now.Add(eventsReviewCacheTTL)}
	}
	e.mu.Unlock()
	return user, nil
}

// dispatch hands the batch's repositories to the onPush rules of the Registry that
// select them.
func (e *EventReceiver) dispatch(ctx context.Context, ns, name string, batch registryconfig.EventBatch) error {
	var rules v1alpha1.ReplicationRuleList
	if err := e.Client.List(ctx, &rules, client.InNamespace(ns), client.MatchingFields{IndexReplicationRegistry: name}); err != nil {
		return err
	}
	for i := range rules.Items {
		rule := &rules.Items[i]
		if !rule.Spec.OnPush || rule.Spec.Direction != v1alpha1.ReplicationPush || rule.Spec.Suspend {
			continue
		}
		sel := engineRule(rule)
		repos := map[string]*pendingRepo{}
		for _, ev := range batch.Events {
			if !sel.Selects(ev.Repository) {
				continue
			}
			pr := repos[ev.Repository]
			if pr == nil {
				pr = &pendingRepo{since: ev.Time}
				repos[ev.Repository] = pr
			}
			if ev.Time.Before(pr.since) {
				pr.since = ev.Time
			}
			if ev.Action == registryconfig.EventPush && ev.Tag != "" && !replication.IsReferrerTag(ev.Tag) {
				if !slices.Contains(pr.tags, ev.Tag) {
					pr.tags = append(pr.tags, ev.Tag)
				}
			} else {
				pr.allTags = true
			}
		}
		if len(repos) > 0 || batch.Lost {
			e.pending.add(ctx, rule, repos, batch.Lost)
		}
	}
	return nil
}
