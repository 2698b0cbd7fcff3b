package controller

import (
	"time"

	"github.com/robfig/cron/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// parseSchedule parses spec.schedule (nil when empty); a problem is a message for status.
func parseSchedule(spec string) (cron.Schedule, string) {
	if spec == "" {
		return nil, ""
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, "schedule: " + err.Error()
	}
	return sched, ""
}

// runDecision is what a reconcile does about runs.
type runDecision struct {
	// start a run; enforce: in Enforce mode (else a plan).
	start, enforce bool
	// handleRequest records the run-now annotation's value as handled; ignoredRequest: it
	// was handled by ignoring it (suspended).
	handleRequest, ignoredRequest bool
	// next is status.nextScheduleTime (nil without a schedule).
	next *metav1.Time
	// requeueAfter is when to look again (0: only on a change).
	requeueAfter time.Duration
}

// decideRun decides, from the policy and its status, whether a run starts now and of
// which kind. In order: a run in progress blocks everything (a due schedule stays due); a
// new spec is planned first, whatever the mode (nothing is deleted by rules nobody has
// seen a plan for; a request or a due schedule waits for that plan); then a run request;
// then the schedule. suspend stops requested and scheduled runs, not plans. A plan that
// failed for this generation is retried after retentionRetryAfter.
func decideRun(p *v1alpha1.RetentionPolicy, sched cron.Schedule, now time.Time, active bool, lastFailedAt time.Time, failedGen int64) runDecision {
	st := p.Status
	d := runDecision{next: st.NextScheduleTime}
	due := false
	switch {
	case sched == nil:
		d.next = nil
	case st.NextScheduleTime == nil:
		d.next = &metav1.Time{Time: sched.Next(now)}
	default:
		due = !now.Before(st.NextScheduleTime.Time)
	}
	consume := func() { d.next = &metav1.Time{Time: sched.Next(now)} }
	request := p.Annotations[v1alpha1.RetentionRunAnnotation]
	requested := request != "" && request != st.LastHandledRunRequest
	planNeeded := st.ObservedGeneration != p.Generation
	enforce := p.GetMode() == v1alpha1.RetentionEnforce

	switch {
	case active:
		// The Job's completion brings the next reconcile.
	case planNeeded:
		if !lastFailedAt.IsZero() && now.Sub(lastFailedAt) < retentionRetryAfter && failedGen == p.Generation {
			d.requeueAfter = retentionRetryAfter - now.Sub(lastFailedAt)
			return d
		}
		d.start = true
	case p.Spec.Suspend && (requested || due):
		if due {
			consume()
		}
		if requested {
			d.handleRequest, d.ignoredRequest = true, true
		}
	case requested:
		d.start, d.enforce, d.handleRequest = true, enforce, true
		if due {
			consume() // one run serves both
		}
	case due:
		d.start, d.enforce = true, enforce
		consume()
	}
	if d.next != nil && !active && !d.next.Time.Before(now) {
		d.requeueAfter = max(d.next.Sub(now), time.Second)
	}
	return d
}
