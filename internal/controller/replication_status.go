package controller

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/replication"
)

// Replication retry bounds: a failed run is retried after replicationRetryBase, doubling
// per consecutive failure up to replicationRetryMax (a schedule or a request runs sooner).
const (
	replicationRetryBase = 30 * time.Second
	replicationRetryMax  = 10 * time.Minute
)

// replicationRetryAfter is the wait after the n-th consecutive failed run.
func replicationRetryAfter(n int32) time.Duration {
	d := replicationRetryBase
	for i := int32(1); i < n && d < replicationRetryMax; i++ {
		d *= 2
	}
	return min(d, replicationRetryMax)
}

// replicationDecision is what a reconcile does about runs.
type replicationDecision struct {
	// trigger of the run to start now ("" for none).
	trigger string
	// requeueAfter is when to look again (0: only on a change).
	requeueAfter time.Duration
}

// decideReplication decides whether a rule runs now, and why: a new spec first, then a
// run request, then a due schedule, then a retry after failures. A suspended rule never
// runs; its request stays pending until it is resumed.
func decideReplication(r *v1alpha1.ReplicationRule, sched cron.Schedule, now time.Time) replicationDecision {
	st := r.Status
	if r.Spec.Suspend {
		return replicationDecision{}
	}
	request := r.Annotations[v1alpha1.ReplicationRunAnnotation]
	switch {
	case st.ObservedGeneration != r.Generation:
		return replicationDecision{trigger: v1alpha1.ReplicationTriggerSpec}
	case request != "" && request != st.LastHandledRunRequest:
		return replicationDecision{trigger: v1alpha1.ReplicationTriggerRequest}
	case sched != nil && st.NextScheduleTime != nil && !now.Before(st.NextScheduleTime.Time):
		return replicationDecision{trigger: v1alpha1.ReplicationTriggerSchedule}
	}
	var wait time.Duration
	if sched != nil {
		next := sched.Next(now)
		if st.NextScheduleTime != nil {
			next = st.NextScheduleTime.Time
		}
		wait = next.Sub(now)
	}
	if st.FailedRuns > 0 && st.LastSyncTime != nil {
		retryAt := st.LastSyncTime.Add(replicationRetryAfter(st.FailedRuns))
		if !now.Before(retryAt) {
			return replicationDecision{trigger: v1alpha1.ReplicationTriggerRetry}
		}
		if wait == 0 || retryAt.Sub(now) < wait {
			wait = retryAt.Sub(now)
		}
	}
	return replicationDecision{requeueAfter: wait}
}

// recordRun writes a finished run into status: counts, times, lag and conditions. err is
// a failure before any artifact (listing the source, resolving credentials). complete is
// false for an onPush run, which looks only at the repositories pushed to: its success
// does not clear the failures of an earlier complete run (their retry still comes).
func recordRun(st *v1alpha1.ReplicationRuleStatus, gen int64, trigger string, start, end time.Time, res replication.Result, err error, complete bool) {
	run := &v1alpha1.ReplicationRun{
		StartTime: &metav1.Time{Time: start}, CompletionTime: &metav1.Time{Time: end}, Trigger: trigger,
		Repositories: res.Repositories, Artifacts: res.Artifacts,
		ReplicationCounts: v1alpha1.ReplicationCounts{
			ArtifactsCopied: res.Copied, ArtifactsSkipped: res.Skipped, ArtifactsFailed: res.Failed,
			ReferrersCopied: res.Referrers, TagsDeleted: res.TagsDeleted, BytesCopied: res.Bytes,
		},
		Errors: res.Errors,
	}
	if err != nil && len(run.Errors) < replication.MaxErrors {
		run.Errors = append([]string{err.Error()}, run.Errors...)
	}
	t := &st.Total
	t.ArtifactsCopied += res.Copied
	t.ArtifactsSkipped += res.Skipped
	t.ArtifactsFailed += res.Failed
	t.ReferrersCopied += res.Referrers
	t.TagsDeleted += res.TagsDeleted
	t.BytesCopied += res.Bytes
	st.ObservedGeneration = gen
	st.LastRun = run
	failure := err
	if failure == nil && res.FirstErr != nil {
		failure = res.FirstErr
	}
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
			Message: msg, ObservedGeneration: gen, LastTransitionTime: metav1.Time{Time: end}})
	}
	set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, "no run in progress")
	if failure == nil && !complete && st.FailedRuns > 0 {
		run.Result = v1alpha1.ReplicationSucceeded
		return // Ready and the retry of the failed complete run stay as they are
	}
	st.LastSyncTime = &metav1.Time{Time: end}
	if failure == nil {
		run.Result = v1alpha1.ReplicationSucceeded
		st.FailedRuns = 0
		st.LastSuccessfulSyncTime = &metav1.Time{Time: end}
		st.InSyncAsOf = &metav1.Time{Time: start}
		st.Lag = &metav1.Duration{}
		if res.Artifacts == 0 {
			set(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonNothingMatched,
				fmt.Sprintf("the filters matched no artifact in %d repositories at the source", res.Repositories))
		} else {
			set(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSynced,
				fmt.Sprintf("%d artifacts in %d repositories at the destination: %d copied (%s), %d already there",
					res.Artifacts, res.Repositories, res.Copied, humanBytes(res.Bytes), res.Skipped))
		}
		set(v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, "the last run succeeded")
		return
	}
	st.FailedRuns++
	run.Result = v1alpha1.ReplicationFailed
	if err == nil && res.Copied+res.Skipped > 0 {
		run.Result = v1alpha1.ReplicationPartiallyFailed
	}
	if st.InSyncAsOf != nil {
		st.Lag = &metav1.Duration{Duration: end.Sub(st.InSyncAsOf.Time).Round(time.Second)}
	}
	reason := replication.Reason(failure)
	msg := failure.Error()
	if err == nil {
		msg = fmt.Sprintf("%d of %d artifacts failed; first: %s", res.Failed, res.Artifacts+boolInt(res.Artifacts == 0), failure)
	}
	msg += fmt.Sprintf(" (retry in %s)", replicationRetryAfter(st.FailedRuns))
	set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, reason, msg)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
