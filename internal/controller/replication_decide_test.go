package controller

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/replication"
)

func TestDecideReplication(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	hourly, _ := cron.ParseStandard("@hourly")
	type mut = func(*v1alpha1.ReplicationRule)
	synced := func(r *v1alpha1.ReplicationRule) { r.Status.ObservedGeneration = r.Generation }
	request := func(v string) mut {
		return func(r *v1alpha1.ReplicationRule) {
			r.Annotations = map[string]string{v1alpha1.ReplicationRunAnnotation: v}
		}
	}
	handled := func(v string) mut { return func(r *v1alpha1.ReplicationRule) { r.Status.LastHandledRunRequest = v } }
	nextAt := func(d time.Duration) mut {
		return func(r *v1alpha1.ReplicationRule) { r.Status.NextScheduleTime = &metav1.Time{Time: now.Add(d)} }
	}
	failed := func(n int32, ago time.Duration) mut {
		return func(r *v1alpha1.ReplicationRule) {
			r.Status.FailedRuns = n
			r.Status.LastSyncTime = &metav1.Time{Time: now.Add(-ago)}
		}
	}
	suspend := func(r *v1alpha1.ReplicationRule) { r.Spec.Suspend = true }
	for name, tc := range map[string]struct {
		mut         []mut
		sched       cron.Schedule
		wantTrigger string
		wantRequeue time.Duration
	}{
		"a new spec runs":                         {wantTrigger: v1alpha1.ReplicationTriggerSpec},
		"nothing due, no schedule: wait":          {mut: []mut{synced}},
		"a new request runs":                      {mut: []mut{synced, request("a")}, wantTrigger: v1alpha1.ReplicationTriggerRequest},
		"a handled request does not":              {mut: []mut{synced, request("a"), handled("a")}},
		"a due schedule runs":                     {mut: []mut{synced, nextAt(-time.Second)}, sched: hourly, wantTrigger: v1alpha1.ReplicationTriggerSchedule},
		"a schedule not due: requeue at it":       {mut: []mut{synced, nextAt(20 * time.Minute)}, sched: hourly, wantRequeue: 20 * time.Minute},
		"a failure is retried after 30s":          {mut: []mut{synced, failed(1, 31*time.Second)}, wantTrigger: v1alpha1.ReplicationTriggerRetry},
		"a retry waits out its backoff":           {mut: []mut{synced, failed(3, time.Minute)}, wantRequeue: time.Minute},
		"the sooner of retry and schedule":        {mut: []mut{synced, failed(1, 0), nextAt(time.Hour)}, sched: hourly, wantRequeue: 30 * time.Second},
		"suspended: nothing, even a new spec":     {mut: []mut{suspend, request("b")}},
		"a new spec goes before a request":        {mut: []mut{request("c")}, wantTrigger: v1alpha1.ReplicationTriggerSpec},
		"the backoff stops growing at 10 minutes": {mut: []mut{synced, failed(30, 9*time.Minute)}, wantRequeue: time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			r := &v1alpha1.ReplicationRule{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
			for _, m := range tc.mut {
				m(r)
			}
			d := decideReplication(r, tc.sched, now)
			if d.trigger != tc.wantTrigger || d.requeueAfter != tc.wantRequeue {
				t.Errorf("got trigger %q requeue %s, want %q %s", d.trigger, d.requeueAfter, tc.wantTrigger, tc.wantRequeue)
			}
		})
	}
}

func TestRecordRun(t *testing.T) {
	start := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	end := start.Add(time.Minute)
	authErr := &replication.EndpointError{Side: replication.Destination, Host: "r.example.com",
		Err: &transport.Error{StatusCode: 401, Errors: []transport.Diagnostic{{Code: transport.UnauthorizedErrorCode, Message: "authentication required"}}}}

	t.Run("a complete run: Ready Synced, lag zero, counts added up", func(t *testing.T) {
		st := v1alpha1.ReplicationRuleStatus{FailedRuns: 2, Total: v1alpha1.ReplicationCounts{ArtifactsCopied: 5}}
		recordRun(&st, 3, v1alpha1.ReplicationTriggerSchedule, start, end, replication.Result{Repositories: 2, Artifacts: 4, Copied: 1, Skipped: 3, Bytes: 2048}, nil, true)
		wantCondition(t, st, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSynced,
			"4 artifacts in 2 repositories at the destination: 1 copied (2.0KiB), 3 already there")
		wantCondition(t, st, v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, "the last run succeeded")
		wantCondition(t, st, v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, "no run in progress")
		if st.FailedRuns != 0 || st.Lag == nil || st.Lag.Duration != 0 || !st.InSyncAsOf.Time.Equal(start) ||
			!st.LastSuccessfulSyncTime.Time.Equal(end) || st.Total.ArtifactsCopied != 6 || st.ObservedGeneration != 3 ||
			st.LastRun.Result != v1alpha1.ReplicationSucceeded || st.LastRun.Trigger != v1alpha1.ReplicationTriggerSchedule {
			t.Errorf("status: %+v, last run %+v", st, st.LastRun)
		}
	})
	t.Run("nothing matched: Ready with its own reason", func(t *testing.T) {
		var st v1alpha1.ReplicationRuleStatus
		recordRun(&st, 1, v1alpha1.ReplicationTriggerSpec, start, end, replication.Result{Repositories: 0}, nil, true)
		wantCondition(t, st, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonNothingMatched,
			"the filters matched no artifact in 0 repositories at the source")
	})
	t.Run("a partial failure: Ready False with the failure's reason, lag since the last complete run", func(t *testing.T) {
		st := v1alpha1.ReplicationRuleStatus{InSyncAsOf: &metav1.Time{Time: start.Add(-time.Hour)}}
		res := replication.Result{Artifacts: 3, Copied: 1, Failed: 2, FirstErr: authErr, Errors: []string{authErr.Error()}}
		recordRun(&st, 1, v1alpha1.ReplicationTriggerRetry, start, end, res, nil, true)
		msg := "2 of 3 artifacts failed; first: destination r.example.com: " + authErr.Err.Error() + " (retry in 30s)"
		wantCondition(t, st, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonAuthenticationFailed, msg)
		wantCondition(t, st, v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonAuthenticationFailed, msg)
		if st.LastRun.Result != v1alpha1.ReplicationPartiallyFailed || st.FailedRuns != 1 || st.Lag.Duration != time.Hour+time.Minute ||
			st.LastSuccessfulSyncTime != nil {
			t.Errorf("status: %+v, last run %+v", st, st.LastRun)
		}
	})
	t.Run("an onPush run after failures: nothing in progress, the failure and its retry stand", func(t *testing.T) {
		st := v1alpha1.ReplicationRuleStatus{FailedRuns: 2, LastSyncTime: &metav1.Time{Time: start.Add(-time.Minute)}}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSyncing})
		recordRun(&st, 1, v1alpha1.ReplicationTriggerPush, start, end, replication.Result{Artifacts: 1, Copied: 1}, nil, false)
		wantCondition(t, st, v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, "no run in progress")
		if st.FailedRuns != 2 || !st.LastSyncTime.Time.Equal(start.Add(-time.Minute)) || st.LastRun.Result != v1alpha1.ReplicationSucceeded {
			t.Errorf("status %+v, last run %+v", st, st.LastRun)
		}
	})
	t.Run("a run that could not start: Failed, its error first", func(t *testing.T) {
		var st v1alpha1.ReplicationRuleStatus
		err := &replication.EndpointError{Side: replication.Source, Host: "127.0.0.1:1", Err: errors.New("dial tcp: connection refused")}
		recordRun(&st, 1, v1alpha1.ReplicationTriggerSpec, start, end, replication.Result{}, err, true)
		if st.LastRun.Result != v1alpha1.ReplicationFailed || len(st.LastRun.Errors) != 1 || st.Lag != nil {
			t.Errorf("last run %+v, lag %v", st.LastRun, st.Lag)
		}
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
		if c.Status != metav1.ConditionFalse || c.Message != err.Error()+" (retry in 30s)" {
			t.Errorf("Ready: %+v", c)
		}
	})
}

func wantCondition(t *testing.T, st v1alpha1.ReplicationRuleStatus, typ string, status metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	c := meta.FindStatusCondition(st.Conditions, typ)
	if c == nil || c.Status != status || c.Reason != reason || c.Message != msg {
		t.Errorf("%s: got %+v, want %s/%s %q", typ, c, status, reason, msg)
	}
}

func TestLocalGrant(t *testing.T) {
	rule := func(dir v1alpha1.ReplicationDirection, dest *v1alpha1.ReplicationDestination, deletes bool) *v1alpha1.ReplicationRule {
		return &v1alpha1.ReplicationRule{Spec: v1alpha1.ReplicationRuleSpec{Direction: dir, Destination: dest, PropagateDeletes: deletes,
			Filters: v1alpha1.ReplicationFilters{Repositories: []string{"library/*", "team-a/**"}}}}
	}
	for name, tc := range map[string]struct {
		rule           *v1alpha1.ReplicationRule
		repos, actions []string
	}{
		"push: pull what the filters select": {rule(v1alpha1.ReplicationPush, &v1alpha1.ReplicationDestination{Prefix: "x"}, true),
			[]string{"library/*", "team-a/**"}, []string{"pull"}},
		"pull, same names": {rule(v1alpha1.ReplicationPull, nil, false), []string{"library/*", "team-a/**"}, []string{"pull", "push"}},
		"pull under a prefix": {rule(v1alpha1.ReplicationPull, &v1alpha1.ReplicationDestination{Prefix: "mirror"}, true),
			[]string{"mirror/library/*", "mirror/team-a/**"}, []string{"pull", "push", "delete"}},
		"pull, stripped, with a prefix": {rule(v1alpha1.ReplicationPull, &v1alpha1.ReplicationDestination{Prefix: "m", StripSegments: 1}, false),
			[]string{"m/**"}, []string{"pull", "push"}},
		"pull, stripped": {rule(v1alpha1.ReplicationPull, &v1alpha1.ReplicationDestination{StripSegments: 1}, false),
			[]string{"**"}, []string{"pull", "push"}},
	} {
		t.Run(name, func(t *testing.T) {
			repos, actions := localGrant(tc.rule)
			if !slices.Equal(repos, tc.repos) || !slices.Equal(actions, tc.actions) {
				t.Errorf("got %v %v, want %v %v", repos, actions, tc.repos, tc.actions)
			}
		})
	}
}
