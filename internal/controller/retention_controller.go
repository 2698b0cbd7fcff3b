package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// IndexRetentionRegistry indexes RetentionPolicies by spec.registryRef.name.
const IndexRetentionRegistry = ".spec.registryRef.name"

// Retention run bookkeeping.
const (
	// annotationRetentionGeneration is the policy generation a run Job was made for.
	annotationRetentionGeneration = "registry.dockyard.dev/policy-generation"
	// annotationRetentionStarted orders a policy's runs (creation timestamps have only
	// one-second resolution).
	annotationRetentionStarted = "registry.dockyard.dev/started"
	// retentionJobsKept is how many finished run Jobs the operator keeps per policy.
	retentionJobsKept = 3
	// retentionRetryAfter is how long after a failed plan the operator plans again for
	// the same generation (a schedule or a request runs sooner).
	retentionRetryAfter = 5 * time.Minute
)

// RetentionPolicyReconciler runs RetentionPolicies: a Job per run (a plan when the spec
// changes; the policy's mode on schedule and on request), and the Job's summary in status.
type RetentionPolicyReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	// Image is the dockyard image when the Registry's spec.image is empty.
	Image string
	// ClusterDomain is the cluster's DNS suffix (for the names pods pull by).
	ClusterDomain string
	// Clock returns the time; time.Now when nil.
	Clock func() time.Time
}

// +kubebuilder:rbac:groups=registry.dockyard.dev,resources=retentionpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=registry.dockyard.dev,resources=retentionpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=list

func (r *RetentionPolicyReconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock()
	}
	return time.Now()
}

// Reconcile observes the policy's runs, records the newest finished one, and starts a run
// when one is due.
func (r *RetentionPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	policy := &v1alpha1.RetentionPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, policy); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !policy.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := policy.DeepCopy()
	st := &policy.Status
	now := r.now()

	result, err := r.reconcile(ctx, policy, now)
	if err != nil {
		setCondition(st, policy.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonReconcileFailed, err.Error())
	}
	if !equalStatus(before.Status, policy.Status) {
		if perr := r.Client.Status().Patch(ctx, policy, client.MergeFrom(before)); perr != nil {
			if err == nil {
				err = fmt.Errorf("update status of RetentionPolicy %s: %w", req, perr)
			}
		}
	}
	if err != nil {
		log.Error(err, "Reconcile failed")
	}
	return result, err
}

func equalStatus(a, b v1alpha1.RetentionPolicyStatus) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func setCondition(st *v1alpha1.RetentionPolicyStatus, gen int64, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: truncate(msg, 1024), ObservedGeneration: gen})
}

func (r *RetentionPolicyReconciler) reconcile(ctx context.Context, policy *v1alpha1.RetentionPolicy, now time.Time) (ctrl.Result, error) {
	st := &policy.Status
	gen := policy.Generation

	// Runs first: record the newest finished one whatever else is wrong.
	var jobs batchv1.JobList
	if err := r.Client.List(ctx, &jobs, client.InNamespace(policy.Namespace), client.MatchingLabels{resources.LabelRetentionPolicy: policy.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list run Jobs: %w", err)
	}
	owned := jobs.Items[:0]
	for _, j := range jobs.Items {
		if metav1.IsControlledBy(&j, policy) {
			owned = append(owned, j)
		}
	}
	active := ""
	for i := range owned {
		if jobFinished(&owned[i]) == nil && owned[i].DeletionTimestamp.IsZero() {
			active = owned[i].Name
		}
	}
	st.ActiveJob = active
	var lastFailedAt time.Time
	if job := newestFinishedRun(owned); job != nil {
		if err := r.record(ctx, policy, job); err != nil {
			return ctrl.Result{}, err
		}
		if c := jobFinished(job); c != nil && c.Type == batchv1.JobFailed {
			lastFailedAt = c.LastTransitionTime.Time
		}
	}
	if err := r.pruneJobs(ctx, owned); err != nil {
		return ctrl.Result{}, err
	}

	// The Registry: runs need its storage and config.
	reg := &v1alpha1.Registry{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: policy.Namespace, Name: policy.Spec.RegistryRef.Name}, reg); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("get Registry %s: %w", policy.Spec.RegistryRef.Name, err)
		}
		setCondition(st, gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRegistryNotFound,
			fmt.Sprintf("Registry %s does not exist in namespace %s", policy.Spec.RegistryRef.Name, policy.Namespace))
		return ctrl.Result{}, nil
	}
	if reg.Spec.Storage.EmptyDir != nil {
		setCondition(st, gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonStorageNotShared,
			"the Registry's storage is an emptyDir, which only its own pod sees: retention runs in a Job and needs a volume or object storage")
		return ctrl.Result{}, nil
	}
	if c := meta.FindStatusCondition(reg.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		setCondition(st, gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRegistryNotReady,
			fmt.Sprintf("waiting for Registry %s to be Ready before running", reg.Name))
		return ctrl.Result{}, nil
	}

	// Nothing blocks runs (any more): Ready reports the last run again.
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil && blockingReason(c.Reason) && st.Plan != nil && st.ObservedGeneration == gen {
		setCondition(st, gen, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPlanned, planMessage(policy))
	}

	sched, problem := parseSchedule(policy.Spec.Schedule)
	if problem != "" { // CEL admits only what parses; an object stored before may not
		setCondition(st, gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, problem)
		return ctrl.Result{}, nil
	}
	d := decideRun(policy, sched, now, active != "", lastFailedAt, failedGeneration(owned))
	st.NextScheduleTime = d.next
	result := ctrl.Result{RequeueAfter: d.requeueAfter}
	if d.handleRequest {
		st.LastHandledRunRequest = policy.Annotations[v1alpha1.RetentionRunAnnotation]
	}
	if d.ignoredRequest {
		r.Recorder.Eventf(policy, nil, corev1.EventTypeNormal, "RunRequestIgnored", "Run", "the policy is suspended; the run requested with %s=%s was not started", v1alpha1.RetentionRunAnnotation, st.LastHandledRunRequest)
	}
	if active != "" && (st.Plan == nil || st.ObservedGeneration != gen) {
		setCondition(st, gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRunning, "run "+active+" is in progress")
	}
	if !d.start {
		return result, nil
	}
	enforce := d.enforce
	planNeeded := st.ObservedGeneration != gen
	name, err := r.startRun(ctx, policy, reg, enforce)
	if err != nil {
		return ctrl.Result{}, err
	}
	st.ActiveJob = name
	if st.Plan == nil || planNeeded {
		setCondition(st, gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRunning, "run "+name+" is in progress")
	}
	return result, nil
}

// newestFinishedRun is the finished run Job started last.
func newestFinishedRun(jobs []batchv1.Job) *batchv1.Job {
	var newest *batchv1.Job
	var newestAt time.Time
	for i := range jobs {
		if jobFinished(&jobs[i]) == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, jobs[i].Annotations[annotationRetentionStarted])
		if err != nil {
			at = jobs[i].CreationTimestamp.Time
		}
		if newest == nil || at.After(newestAt) {
			newest, newestAt = &jobs[i], at
		}
	}
	return newest
}

// failedGeneration is the policy generation of the newest finished run.
func failedGeneration(jobs []batchv1.Job) int64 {
	job := newestFinishedRun(jobs)
	if job == nil {
		return -1
	}
	g, _ := strconv.ParseInt(job.Annotations[annotationRetentionGeneration], 10, 64)
	return g
}

// startRun creates a run Job with every policy of the Registry.
func (r *RetentionPolicyReconciler) startRun(ctx context.Context, policy *v1alpha1.RetentionPolicy, reg *v1alpha1.Registry, enforce bool) (string, error) {
	var all v1alpha1.RetentionPolicyList
	if err := r.Client.List(ctx, &all, client.InNamespace(policy.Namespace), client.MatchingFields{IndexRetentionRegistry: reg.Name}); err != nil {
		return "", fmt.Errorf("list RetentionPolicies of Registry %s: %w", reg.Name, err)
	}
	policies := []v1alpha1.RetentionPolicy{*policy}
	for _, p := range all.Items {
		if p.Name != policy.Name && p.DeletionTimestamp.IsZero() {
			policies = append(policies, p)
		}
	}
	run := resources.RetentionRunOf(policy, policies, enforce)
	inUse, err := r.imagesInUse(ctx, reg)
	if err != nil {
		return "", err
	}
	run.InUse = inUse
	job, err := resources.RetentionJob(reg, resources.Inputs{Image: r.Image}, policy, resources.RetentionJobPrefix(policy.Name), run)
	if err != nil {
		return "", err
	}
	job.Annotations[annotationRetentionGeneration] = strconv.FormatInt(policy.Generation, 10)
	job.Annotations[annotationRetentionStarted] = r.now().UTC().Format(time.RFC3339Nano)
	ctrl.LoggerFrom(ctx).Info("Starting a retention run", "enforce", enforce)
	if err := r.Client.Create(ctx, job); err != nil {
		return "", fmt.Errorf("create a run Job: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("Started a retention run", "job", job.Name, "enforce", enforce)
	return job.Name, nil
}

// record writes the newest finished run into status, once per Job.
func (r *RetentionPolicyReconciler) record(ctx context.Context, policy *v1alpha1.RetentionPolicy, job *batchv1.Job) error {
	st := &policy.Status
	if st.LastRunJob == job.Name {
		return nil
	}
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return fmt.Errorf("list Pods of Job %s: %w", job.Name, err)
	}
	finished := jobFinished(job)
	sum := registryconfig.RetentionSummary{Result: registryconfig.RetentionFailed}
	msg := newestTerminationMessage(pods.Items)
	if msg == "" || json.Unmarshal([]byte(msg), &sum) != nil {
		sum = registryconfig.RetentionSummary{Result: registryconfig.RetentionFailed, Message: "the run reported no summary"}
		if finished.Type == batchv1.JobFailed {
			sum.Message = fmt.Sprintf("the run failed without a summary: %s: %s", finished.Reason, finished.Message)
		}
		if msg != "" {
			sum.Message += ": " + truncate(msg, 300)
		}
	}
	if finished.Type == batchv1.JobFailed && sum.Result != registryconfig.RetentionFailed && sum.Result != registryconfig.RetentionPartiallyFailed {
		sum.Result = registryconfig.RetentionFailed
	}
	completed := finished.LastTransitionTime
	if job.Status.CompletionTime != nil {
		completed = *job.Status.CompletionTime
	}
	gen, _ := strconv.ParseInt(job.Annotations[annotationRetentionGeneration], 10, 64)
	enforced := job.Annotations[resources.AnnotationRetentionEnforce] == "true"
	st.LastRunTime = &completed
	st.LastRunJob = job.Name

	if sum.Result == registryconfig.RetentionFailed {
		setCondition(st, policy.Generation, v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonRunFailed, fmt.Sprintf("run %s failed: %s", job.Name, sum.Message))
		if st.Plan == nil || gen != policy.Generation {
			setCondition(st, policy.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRunFailed, fmt.Sprintf("run %s failed: %s", job.Name, sum.Message))
		}
		r.Recorder.Eventf(policy, nil, corev1.EventTypeWarning, "RetentionRunFailed", "Run", "run %s failed: %s", job.Name, sum.Message)
		if enforced {
			st.LastEnforcement = enforcementOf(job.Name, completed, sum)
		}
		return nil
	}
	st.Plan = planOf(job.Name, sum)
	if gen > 0 {
		st.ObservedGeneration = max(st.ObservedGeneration, gen)
	}
	reason, message := v1alpha1.ReasonPlanned, planMessage(policy)
	degraded, dReason, dMessage := metav1.ConditionFalse, v1alpha1.ReasonAsExpected, ""
	if enforced {
		st.LastEnforcement = enforcementOf(job.Name, completed, sum)
		switch sum.Result {
		case registryconfig.RetentionCeilingExceeded:
			reason, message = v1alpha1.ReasonCeilingExceeded, sum.Message
			degraded, dReason, dMessage = metav1.ConditionTrue, v1alpha1.ReasonCeilingExceeded, sum.Message
			r.Recorder.Eventf(policy, nil, corev1.EventTypeWarning, v1alpha1.ReasonCeilingExceeded, "Enforce", "run %s deleted nothing: %s", job.Name, sum.Message)
		case registryconfig.RetentionPartiallyFailed:
			reason, message = v1alpha1.ReasonEnforced, fmt.Sprintf("deleted %d manifests and %d tags; %d deletions failed", sum.ManifestsDeleted, sum.TagsRemoved, sum.Failed)
			degraded, dReason, dMessage = metav1.ConditionTrue, v1alpha1.ReasonPartiallyFailed, message+": "+firstOr(sum.Errors, "")
			r.Recorder.Eventf(policy, nil, corev1.EventTypeWarning, v1alpha1.ReasonPartiallyFailed, "Enforce", "run %s: %s", job.Name, dMessage)
		default:
			reason = v1alpha1.ReasonEnforced
			message = fmt.Sprintf("deleted %d manifests and removed %d tags (%d skipped: changed after planning); %s to reclaim at the next garbage collection",
				sum.ManifestsDeleted, sum.TagsRemoved, sum.Skipped, humanBytes(sum.ReclaimableBytes))
			r.Recorder.Eventf(policy, nil, corev1.EventTypeNormal, "RetentionEnforced", "Enforce", "run %s %s", job.Name, message)
		}
		if policy.Spec.CollectGarbage && sum.ManifestsDeleted > 0 {
			gc, err := r.collectGarbage(ctx, policy)
			if err != nil {
				return err
			}
			st.LastEnforcement.GarbageCollectionJob = gc
		}
	}
	setCondition(st, policy.Generation, v1alpha1.ConditionReady, metav1.ConditionTrue, reason, message)
	setCondition(st, policy.Generation, v1alpha1.ConditionDegraded, degraded, dReason, dMessage)
	return nil
}

// collectGarbage starts a garbage collection of the policy's Registry from its CronJob, as
// `kubectl create job --from=cronjob/...` does, unless one is running. It returns the Job's
// name ("" when none was started; an event says why).
func (r *RetentionPolicyReconciler) collectGarbage(ctx context.Context, policy *v1alpha1.RetentionPolicy) (string, error) {
	regName := policy.Spec.RegistryRef.Name
	cj := &batchv1.CronJob{}
	// From the API server: the manager's cache keeps CronJobs without their job template.
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: policy.Namespace, Name: regName + "-gc"}, cj); err != nil {
		if !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("get the garbage-collection CronJob of Registry %s: %w", regName, err)
		}
		r.Recorder.Eventf(policy, nil, corev1.EventTypeWarning, "GarbageCollectionNotStarted", "CollectGarbage",
			"Registry %s has no spec.garbageCollection; the deleted images' blobs stay until one runs", regName)
		return "", nil
	}
	var jobs batchv1.JobList
	if err := r.Client.List(ctx, &jobs, client.InNamespace(policy.Namespace), client.MatchingLabels{
		resources.LabelRegistry: regName, resources.LabelComponent: resources.ComponentGC,
	}); err != nil {
		return "", fmt.Errorf("list garbage-collection Jobs: %w", err)
	}
	for i := range jobs.Items {
		if jobFinished(&jobs.Items[i]) == nil {
			r.Recorder.Eventf(policy, nil, corev1.EventTypeNormal, "GarbageCollectionRunning", "CollectGarbage",
				"garbage collection %s is already running; it or the next one frees the deleted images' blobs", jobs.Items[i].Name)
			return jobs.Items[i].Name, nil
		}
	}
	tmpl := cj.Spec.JobTemplate
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: cj.Name + "-retention-", Namespace: cj.Namespace,
			Labels: tmpl.Labels, Annotations: map[string]string{"cronjob.kubernetes.io/instantiate": "retention"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	if err := r.Client.Create(ctx, job); err != nil {
		return "", fmt.Errorf("start garbage collection of Registry %s: %w", regName, err)
	}
	r.Recorder.Eventf(policy, nil, corev1.EventTypeNormal, "GarbageCollectionStarted", "CollectGarbage", "started garbage collection %s", job.Name)
	return job.Name, nil
}

// blockingReason: a Ready reason that says runs cannot start.
func blockingReason(r string) bool {
	switch r {
	case v1alpha1.ReasonRegistryNotFound, v1alpha1.ReasonRegistryNotReady, v1alpha1.ReasonStorageNotShared, v1alpha1.ReasonInvalidSpec, v1alpha1.ReasonReconcileFailed:
		return true
	}
	return false
}

// planMessage summarises status.plan for the Ready condition.
func planMessage(policy *v1alpha1.RetentionPolicy) string {
	p := policy.Status.Plan
	return fmt.Sprintf("%d of %d artifacts in scope would be deleted (%s reclaimable); mode %s", p.ArtifactsToDelete, p.Artifacts, p.Reclaimable, policy.GetMode())
}

func firstOr(ss []string, def string) string {
	if len(ss) > 0 {
		return ss[0]
	}
	return def
}

func planOf(job string, s registryconfig.RetentionSummary) *v1alpha1.RetentionPlan {
	p := &v1alpha1.RetentionPlan{
		EvaluationTime: &metav1.Time{Time: s.EvaluationTime}, JobName: job, PlanHash: s.PlanHash,
		Repositories: s.Repositories, Artifacts: s.Artifacts, ArtifactsKept: s.ArtifactsKept, ArtifactsToDelete: s.ArtifactsToDelete,
		Tags: s.Tags, TagsKept: s.TagsKept, TagsToRemove: s.TagsToRemove, ManifestsToDelete: s.ManifestsToDelete,
		ReclaimableBytes: s.ReclaimableBytes, Reclaimable: humanBytes(s.ReclaimableBytes), CeilingExceeded: s.CeilingExceeded,
	}
	for i, a := range s.Sample {
		if i == 10 {
			break
		}
		p.Sample = append(p.Sample, v1alpha1.RetentionAction{Action: a.Action, Repository: a.Repository, Digest: a.Digest, Tags: a.Tags, Reason: a.Reason})
	}
	return p
}

func enforcementOf(job string, at metav1.Time, s registryconfig.RetentionSummary) *v1alpha1.RetentionEnforcement {
	e := &v1alpha1.RetentionEnforcement{JobName: job, CompletionTime: &at, PlanHash: s.PlanHash, Result: s.Result,
		ManifestsDeleted: s.ManifestsDeleted, TagsRemoved: s.TagsRemoved, Skipped: s.Skipped, Failed: s.Failed}
	if s.Result == registryconfig.RetentionSucceeded || s.Result == registryconfig.RetentionPartiallyFailed {
		e.ReclaimableBytes = s.ReclaimableBytes
	}
	for i, msg := range s.Errors {
		if i == 5 {
			break
		}
		e.Errors = append(e.Errors, truncate(msg, 256))
	}
	if s.Result == registryconfig.RetentionFailed && s.Message != "" && len(e.Errors) < 5 {
		e.Errors = append(e.Errors, truncate(s.Message, 256))
	}
	return e
}

// humanBytes renders a size with binary units (1.5GiB).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + string("KMGTPE"[exp]) + "iB"
}

// pruneJobs deletes finished run Jobs beyond the newest few.
func (r *RetentionPolicyReconciler) pruneJobs(ctx context.Context, jobs []batchv1.Job) error {
	var finished []batchv1.Job
	for _, j := range jobs {
		if jobFinished(&j) != nil && j.DeletionTimestamp.IsZero() {
			finished = append(finished, j)
		}
	}
	if len(finished) <= retentionJobsKept {
		return nil
	}
	slices.SortFunc(finished, func(a, b batchv1.Job) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	for i := retentionJobsKept; i < len(finished); i++ {
		err := r.Client.Delete(ctx, &finished[i], client.PropagationPolicy(metav1.DeletePropagationBackground))
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete old run Job %s: %w", finished[i].Name, err)
		}
	}
	return nil
}

// SetupWithManager watches policies, their Jobs, and the Registries they name.
func (r *RetentionPolicyReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Scheme == nil {
		r.Scheme = mgr.GetScheme()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("retention-controller")
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.RetentionPolicy{}, IndexRetentionRegistry, func(o client.Object) []string {
		return []string{o.(*v1alpha1.RetentionPolicy).Spec.RegistryRef.Name}
	}); err != nil {
		return fmt.Errorf("index RetentionPolicies by Registry: %w", err)
	}
	policiesOf := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list v1alpha1.RetentionPolicyList
		if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{IndexRetentionRegistry: o.GetName()}); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, p := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("retentionpolicy").
		For(&v1alpha1.RetentionPolicy{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&batchv1.Job{}).
		Watches(&v1alpha1.Registry{}, policiesOf, builder.WithPredicates(readyChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}

// readyChanged passes Registry events that may change whether a policy can run.
func readyChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			a, b := e.ObjectOld.(*v1alpha1.Registry), e.ObjectNew.(*v1alpha1.Registry)
			ra, rb := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady), meta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionReady)
			return (ra == nil) != (rb == nil) || (ra != nil && ra.Status != rb.Status) || a.Generation != b.Generation
		},
	}
}
