package controller

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/replication"
)

// Replication metrics, served with the manager's metrics; labels namespace, registry (the
// rule's registryRef, so a Registry's alerts select its rules) and rule.
var (
	replicationArtifacts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dockyard_replication_artifacts_total",
		Help: "Artifacts handled by ReplicationRule runs, by result: copied, skipped (already at the destination), failed.",
	}, []string{"namespace", "registry", "rule", "result"})
	replicationBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dockyard_replication_bytes_total",
		Help: "Blob bytes ReplicationRule runs sent to destinations.",
	}, []string{"namespace", "registry", "rule"})
	replicationRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dockyard_replication_runs_total",
		Help: "ReplicationRule runs, by result: Succeeded, PartiallyFailed, Failed.",
	}, []string{"namespace", "registry", "rule", "result"})
	replicationLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dockyard_replication_lag_seconds",
		Help: "How far the destination was behind at the end of the last run (status.lag): 0 after a complete run.",
	}, []string{"namespace", "registry", "rule"})
	replicationLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dockyard_replication_last_success_timestamp_seconds",
		Help: "When the last complete run of a ReplicationRule finished (Unix time).",
	}, []string{"namespace", "registry", "rule"})
)

// ruleRegistry remembers each rule's registryRef as last observed, "namespace/name" to name.
var ruleRegistry sync.Map

func init() {
	metrics.Registry.MustRegister(replicationArtifacts, replicationBytes, replicationRuns, replicationLag, replicationLastSuccess)
}

// observeRun records a finished run in the metrics.
func observeRun(rule *v1alpha1.ReplicationRule, res replication.Result) {
	ns, reg, name := rule.Namespace, rule.Spec.RegistryRef.Name, rule.Name
	key := ns + "/" + name
	if old, ok := ruleRegistry.Swap(key, reg); ok && old != reg {
		forgetRule(ns, name) // registryRef changed: its old series would linger
		ruleRegistry.Store(key, reg)
	}
	replicationArtifacts.WithLabelValues(ns, reg, name, "copied").Add(float64(res.Copied))
	replicationArtifacts.WithLabelValues(ns, reg, name, "skipped").Add(float64(res.Skipped))
	replicationArtifacts.WithLabelValues(ns, reg, name, "failed").Add(float64(res.Failed))
	replicationBytes.WithLabelValues(ns, reg, name).Add(float64(res.Bytes))
	st := rule.Status
	if st.LastRun != nil {
		replicationRuns.WithLabelValues(ns, reg, name, st.LastRun.Result).Inc()
	}
	if st.Lag != nil {
		replicationLag.WithLabelValues(ns, reg, name).Set(st.Lag.Seconds())
	}
	if st.LastSuccessfulSyncTime != nil {
		replicationLastSuccess.WithLabelValues(ns, reg, name).Set(float64(st.LastSuccessfulSyncTime.Unix()))
	}
}

// forgetRule drops a deleted rule's series.
func forgetRule(ns, name string) {
	ruleRegistry.Delete(ns + "/" + name)
	l := prometheus.Labels{"namespace": ns, "rule": name}
	replicationArtifacts.DeletePartialMatch(l)
	replicationBytes.DeletePartialMatch(l)
	replicationRuns.DeletePartialMatch(l)
	replicationLag.DeletePartialMatch(l)
	replicationLastSuccess.DeletePartialMatch(l)
}
