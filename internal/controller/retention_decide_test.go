package controller

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// decideRun on a table: what starts, in which mode, what stays pending.
func TestDecideRun(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	daily, _ := cron.ParseStandard("30 2 * * *")
	tomorrow := time.Date(2026, 12, 2, 2, 30, 0, 0, time.UTC)
	past := metav1.NewTime(now.Add(-time.Minute))
	future := metav1.NewTime(now.Add(time.Hour))
	type pol = func(*v1alpha1.RetentionPolicy)
	planned := func(p *v1alpha1.RetentionPolicy) { p.Status.ObservedGeneration = p.Generation }
	enforce := func(p *v1alpha1.RetentionPolicy) { p.Spec.Mode = v1alpha1.RetentionEnforce }
	suspend := func(p *v1alpha1.RetentionPolicy) { p.Spec.Suspend = true }
	request := func(v string) pol {
		return func(p *v1alpha1.RetentionPolicy) {
			p.Annotations = map[string]string{v1alpha1.RetentionRunAnnotation: v}
		}
	}
	handled := func(v string) pol { return func(p *v1alpha1.RetentionPolicy) { p.Status.LastHandledRunRequest = v } }
	nextAt := func(t metav1.Time) pol { return func(p *v1alpha1.RetentionPolicy) { p.Status.NextScheduleTime = &t } }

	cases := map[string]struct {
		mut                     []pol
		sched                   cron.Schedule
		active                  bool
		failedAt                time.Time
		wantStart, wantEnforce  bool
		wantHandled, wantIgnore bool
		wantNext                *time.Time
		wantRequeue             time.Duration
	}{
		"a new policy plans, even in Enforce":         {mut: []pol{enforce}, wantStart: true},
		"a planned policy without schedule waits":     {mut: []pol{planned}},
		"the first reconcile with a schedule sets it": {mut: []pol{planned}, sched: daily, wantNext: &tomorrow, wantRequeue: tomorrow.Sub(now)},
		"not due yet": {mut: []pol{planned, nextAt(future)}, sched: daily, wantNext: &future.Time, wantRequeue: time.Hour},
		"due in Enforce: enforces, next is tomorrow":     {mut: []pol{planned, enforce, nextAt(past)}, sched: daily, wantStart: true, wantEnforce: true, wantNext: &tomorrow, wantRequeue: tomorrow.Sub(now)},
		"due in DryRun: plans":                           {mut: []pol{planned, nextAt(past)}, sched: daily, wantStart: true, wantNext: &tomorrow, wantRequeue: tomorrow.Sub(now)},
		"due while a run is in progress: stays due":      {mut: []pol{planned, enforce, nextAt(past)}, sched: daily, active: true, wantNext: &past.Time},
		"due while suspended: skipped":                   {mut: []pol{planned, enforce, nextAt(past), suspend}, sched: daily, wantNext: &tomorrow, wantRequeue: tomorrow.Sub(now)},
		"a request in Enforce enforces":                  {mut: []pol{planned, enforce, request("a")}, wantStart: true, wantEnforce: true, wantHandled: true},
		"a request already handled does nothing":         {mut: []pol{planned, enforce, request("a"), handled("a")}},
		"a request while suspended is recorded, ignored": {mut: []pol{planned, enforce, request("b"), suspend}, wantHandled: true, wantIgnore: true},
		"a new spec with a request: the plan first": {mut: []pol{enforce, request("c"), nextAt(past)}, sched: daily,
			wantStart: true, wantNext: &past.Time},
		"a request and a due schedule: one run": {mut: []pol{planned, enforce, request("d"), nextAt(past)}, sched: daily,
			wantStart: true, wantEnforce: true, wantHandled: true, wantNext: &tomorrow, wantRequeue: tomorrow.Sub(now)},
		"a plan failed two minutes ago: wait":  {mut: []pol{}, failedAt: now.Add(-2 * time.Minute), wantRequeue: 3 * time.Minute},
		"a plan failed ten minutes ago: retry": {mut: []pol{}, failedAt: now.Add(-10 * time.Minute), wantStart: true},
		"suspended, a new spec still plans":    {mut: []pol{suspend}, wantStart: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := &v1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
			for _, m := range c.mut {
				m(p)
			}
			d := decideRun(p, c.sched, now, c.active, c.failedAt, 2)
			if d.start != c.wantStart || d.enforce != c.wantEnforce || d.handleRequest != c.wantHandled || d.ignoredRequest != c.wantIgnore {
				t.Errorf("start %v enforce %v handled %v ignored %v; want %v %v %v %v", d.start, d.enforce, d.handleRequest, d.ignoredRequest,
					c.wantStart, c.wantEnforce, c.wantHandled, c.wantIgnore)
			}
			switch {
			case c.wantNext == nil && d.next != nil:
				t.Errorf("next = %s, want none", d.next)
			case c.wantNext != nil && (d.next == nil || !d.next.Time.Equal(*c.wantNext)):
				t.Errorf("next = %v, want %s", d.next, c.wantNext)
			}
			if d.requeueAfter != c.wantRequeue {
				t.Errorf("requeueAfter = %s, want %s", d.requeueAfter, c.wantRequeue)
			}
		})
	}
}
