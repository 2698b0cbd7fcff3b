package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/replication"
	"github.com/dockyard-dev/dockyard/internal/retention"
)

// Field indexes of ReplicationRules.
const (
	// IndexReplicationRegistry indexes rules by spec.registryRef.name.
	IndexReplicationRegistry = ".spec.registryRef.name"
	// IndexReplicationInputs indexes rules by the Secrets and ConfigMaps they read.
	IndexReplicationInputs = ".spec.remote.inputs"
)

// replicationRunTimeout bounds one run; a longer copy continues in the next run, which
// skips what was already copied.
const replicationRunTimeout = 30 * time.Minute

// ReplicationReconciler runs ReplicationRules in the manager: the leader copies, so a rule
// is never run twice at once whatever the number of Registry replicas, and a restarted
// manager resumes from what the destination already has.
type ReplicationReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	// RegistryAddress, when set, is the host:port the manager reaches a local Registry at
	// (tests); its Service otherwise.
	RegistryAddress func(*v1alpha1.Registry) string
	// Clock returns the time; time.Now when nil.
	Clock func() time.Time
	// MaxConcurrentReconciles is how many rules run at once (default 2).
	MaxConcurrentReconciles int
	// EventsAddr is where the leader receives registry events for onPush rules (see
	// EventReceiver); empty: none are received, onPush rules run on their schedule only.
	EventsAddr string
	// Scans, when set, gets the pushes the receiver hears of, for the Registries' scanners.
	Scans *ScanForwarder

	pending *pendingPushes
	// started holds the onPush rules this process has compared in full once: the first
	// reconcile after a start catches up on what happened while no manager listened.
	started sync.Map
}

// +kubebuilder:rbac:groups=registry.dockyard.dev,resources=replicationrules,verbs=get;list;watch
// +kubebuilder:rbac:groups=registry.dockyard.dev,resources=replicationrules/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

func (r *ReplicationReconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock()
	}
	return time.Now()
}

// Reconcile runs the rule when a run is due and records what it did.
func (r *ReplicationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rule := &v1alpha1.ReplicationRule{}
	// Straight from the API server: the cache may still hold the status this controller
	// wrote moments ago (a run in progress), which would look like an interrupted run.
	if err := r.APIReader.Get(ctx, req.NamespacedName, rule); err != nil {
		if apierrors.IsNotFound(err) {
			forgetRule(req.Namespace, req.Name)
			r.pending.forget(req.NamespacedName)
			r.started.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := rule.Status.DeepCopy()
	now := r.now()
	sched, problem := parseSchedule(rule.EffectiveSchedule())
	if problem != "" {
		r.setCondition(rule, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, problem, now)
		return ctrl.Result{}, r.writeStatus(ctx, rule, before)
	}
	if sched == nil {
		rule.Status.NextScheduleTime = nil
	} else if rule.Status.NextScheduleTime == nil || rule.Status.ObservedGeneration != rule.Generation {
		// A new spec may carry a new schedule: its next time counts, not the old one's.
		rule.Status.NextScheduleTime = &metav1.Time{Time: sched.Next(now)}
	}
	if rule.Spec.Suspend {
		r.setCondition(rule, v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is set: no run starts", now)
		return ctrl.Result{}, r.writeStatus(ctx, rule, before)
	}

	reg := &v1alpha1.Registry{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: rule.Namespace, Name: rule.Spec.RegistryRef.Name}, reg); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		r.setCondition(rule, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRegistryNotFound,
			fmt.Sprintf("no Registry %s in namespace %s", rule.Spec.RegistryRef.Name, rule.Namespace), now)
		return ctrl.Result{}, r.writeStatus(ctx, rule, before)
	}
	if !meta.IsStatusConditionTrue(reg.Status.Conditions, v1alpha1.ConditionReady) {
		r.setCondition(rule, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRegistryNotReady,
			fmt.Sprintf("Registry %s is not Ready; runs wait for it", reg.Name), now)
		return ctrl.Result{}, r.writeStatus(ctx, rule, before)
	}

	d := decideReplication(rule, sched, now)
	// Runs happen inside this reconcile, one per rule at a time: a run still marked in
	// progress was cut short by a restart of the operator. It runs again now.
	if meta.IsStatusConditionTrue(rule.Status.Conditions, v1alpha1.ConditionProgressing) {
		r.setCondition(rule, v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonAsExpected,
			"the previous run was interrupted (the operator restarted); it runs again", now)
		if d.trigger == "" {
			d.trigger = v1alpha1.ReplicationTriggerRetry
		}
	}
	var pushed *pendingRun
	if d.trigger == "" && rule.Spec.OnPush {
		if _, ok := r.started.Load(req.NamespacedName); !ok {
			d.trigger = v1alpha1.ReplicationTriggerStartup
		} else if pushed = r.pending.take(req.NamespacedName); pushed != nil {
			d.trigger = v1alpha1.ReplicationTriggerPush
		}
	}
	if d.trigger == "" {
		return ctrl.Result{RequeueAfter: d.requeueAfter}, r.writeStatus(ctx, rule, before)
	}
	putBack := func() {
		if pushed != nil {
			r.pending.putBack(req.NamespacedName, pushed)
		}
	}
	local, err := r.localEndpoint(ctx, rule, reg)
	if err != nil {
		putBack()
		return ctrl.Result{}, fmt.Errorf("reach Registry %s: %w", reg.Name, err)
	}
	remote, err := r.remoteEndpoint(ctx, rule)
	if err != nil {
		putBack()
	}
	if errors.Is(err, errMissingInput) {
		// A Secret's creation brings the next reconcile; a ConfigMap (not watched: the
		// operator caches only its own) is looked for again in a minute.
		r.setCondition(rule, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsNotFound, err.Error(), now)
		return ctrl.Result{RequeueAfter: time.Minute}, r.writeStatus(ctx, rule, before)
	}
	if err != nil {
		return ctrl.Result{}, err
	}

	// Say a run is in progress, then run.
	r.setCondition(rule, v1alpha1.ConditionProgressing, metav1.ConditionTrue, v1alpha1.ReasonSyncing,
		fmt.Sprintf("a run started by %s is copying from %s", d.trigger, sourceHost(rule, local, remote)), now)
	if rule.Status.ObservedGeneration != rule.Generation {
		r.setCondition(rule, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSyncing, "the first run for this spec is in progress", now)
	}
	if err := r.writeStatus(ctx, rule, before); err != nil {
		putBack()
		return ctrl.Result{}, err
	}
	before = rule.Status.DeepCopy()
	erule := engineRule(rule)
	complete := pushed == nil || pushed.all
	if !complete {
		erule.Only = make([]string, 0, len(pushed.repos))
		erule.OnlyTags = map[string][]string{}
		for repo, pr := range pushed.repos {
			erule.Only = append(erule.Only, repo)
			if !pr.allTags {
				erule.OnlyTags[repo] = pr.tags
			}
		}
	}
	if complete && rule.Spec.OnPush {
		r.started.Store(req.NamespacedName, true)
	}

	src, dst := local, remote
	if rule.Spec.Direction == v1alpha1.ReplicationPull {
		src, dst = remote, local
	}
	log := ctrl.LoggerFrom(ctx)
	log.Info("Replicating", "trigger", d.trigger, "source", src.Host, "destination", dst.Host)
	runCtx, cancel := context.WithTimeout(ctx, replicationRunTimeout)
	res, runErr := replication.Sync(runCtx, src, dst, erule, replication.Options{})
	cancel()
	end := r.now()
	if runErr == nil && res.FirstErr == nil {
		log.Info("Replicated", "artifacts", res.Artifacts, "copied", res.Copied, "bytes", res.Bytes)
	} else {
		log.Info("Replication failed", "failed", res.Failed, "reason", replication.Reason(firstErr(runErr, res.FirstErr)))
	}
	if runErr != nil || res.FirstErr != nil {
		putBack()
	}
	recordRun(&rule.Status, rule.Generation, d.trigger, now, end, res, runErr, complete)
	observeRun(rule, res)
	switch d.trigger {
	case v1alpha1.ReplicationTriggerRequest:
		rule.Status.LastHandledRunRequest = rule.Annotations[v1alpha1.ReplicationRunAnnotation]
	case v1alpha1.ReplicationTriggerSchedule:
		rule.Status.NextScheduleTime = &metav1.Time{Time: sched.Next(end)}
	}
	r.event(rule, res, runErr)
	if err := r.writeStatus(ctx, rule, before); err != nil {
		return ctrl.Result{}, err
	}
	next := decideReplication(rule, sched, r.now())
	if next.trigger != "" {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	return ctrl.Result{RequeueAfter: next.requeueAfter}, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func sourceHost(rule *v1alpha1.ReplicationRule, local, remote replication.Endpoint) string {
	if rule.Spec.Direction == v1alpha1.ReplicationPull {
		return remote.Host + " to " + local.Host
	}
	return local.Host + " to " + remote.Host
}

// engineRule turns the spec into the engine's rule.
func engineRule(rule *v1alpha1.ReplicationRule) replication.Rule {
	f := rule.Spec.Filters
	out := replication.Rule{Repositories: f.Repositories, Exclude: f.ExcludeRepositories,
		Referrers: rule.IncludeReferrers(), Rename: rule.DestinationRepository, PropagateDeletes: rule.Spec.PropagateDeletes}
	if f.Tags != nil {
		out.Tags = retention.TagSelector{Glob: f.Tags.Glob, Regex: f.Tags.Regex, Semver: f.Tags.Semver}
	}
	return out
}

// event tells people about runs that copied something or failed.
func (r *ReplicationReconciler) event(rule *v1alpha1.ReplicationRule, res replication.Result, err error) {
	if r.Recorder == nil {
		return
	}
	c := meta.FindStatusCondition(rule.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case err != nil || res.FirstErr != nil:
		r.Recorder.Eventf(rule, nil, corev1.EventTypeWarning, c.Reason, "Replicate", "%s", c.Message)
	case res.Copied > 0 || res.TagsDeleted > 0:
		r.Recorder.Eventf(rule, nil, corev1.EventTypeNormal, "Replicated", "Replicate",
			"copied %d artifacts (%s), %d referrers; removed %d tags", res.Copied, humanBytes(res.Bytes), res.Referrers, res.TagsDeleted)
	}
}

func (r *ReplicationReconciler) setCondition(rule *v1alpha1.ReplicationRule, typ string, status metav1.ConditionStatus, reason, msg string, now time.Time) {
	meta.SetStatusCondition(&rule.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
		Message: msg, ObservedGeneration: rule.Generation, LastTransitionTime: metav1.Time{Time: now}})
}

// writeStatus patches status when it changed.
func (r *ReplicationReconciler) writeStatus(ctx context.Context, rule *v1alpha1.ReplicationRule, before *v1alpha1.ReplicationRuleStatus) error {
	if equality.Semantic.DeepEqual(before, &rule.Status) {
		return nil
	}
	base := rule.DeepCopy()
	base.Status = *before
	if err := r.Client.Status().Patch(ctx, rule, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("update ReplicationRule status: %w", err)
	}
	return nil
}

// SetupWithManager watches rules, the Registries they name and the Secrets and ConfigMaps
// they read.
func (r *ReplicationReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("replication-controller")
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 2
	}
	r.pending = newPendingPushes()
	if r.EventsAddr != "" {
		if err := mgr.Add(&EventReceiver{Addr: r.EventsAddr, Client: mgr.GetClient(), pending: r.pending, scans: r.Scans,
			reviews: make(chan struct{}, eventsReviewsInFlight)}); err != nil {
			return fmt.Errorf("add the registry events receiver: %w", err)
		}
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.ReplicationRule{}, IndexReplicationRegistry, func(o client.Object) []string {
		return []string{o.(*v1alpha1.ReplicationRule).Spec.RegistryRef.Name}
	}); err != nil {
		return fmt.Errorf("index ReplicationRules by Registry: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.ReplicationRule{}, IndexReplicationInputs, func(o client.Object) []string {
		rule := o.(*v1alpha1.ReplicationRule)
		out := rule.ReferencedSecrets()
		if ca := rule.Spec.Remote.CABundle; ca != nil && ca.ConfigMapKeyRef != nil {
			out = append(out, ca.ConfigMapKeyRef.Name)
		}
		return out
	}); err != nil {
		return fmt.Errorf("index ReplicationRules by Secret: %w", err)
	}
	rulesBy := func(field string) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list v1alpha1.ReplicationRuleList
			if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{field: o.GetName()}); err != nil {
				return nil
			}
			out := make([]reconcile.Request, 0, len(list.Items))
			for _, p := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
			}
			return out
		})
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("replicationrule").
		For(&v1alpha1.ReplicationRule{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&v1alpha1.Registry{}, rulesBy(IndexReplicationRegistry), builder.WithPredicates(readyChanged())).
		Watches(&corev1.Secret{}, rulesBy(IndexReplicationInputs), builder.OnlyMetadata).
		WatchesRawSource(source.Channel(r.pending.ch, &handler.TypedEnqueueRequestForObject[*v1alpha1.ReplicationRule]{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}
