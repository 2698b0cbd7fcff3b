package registry

import (
	"fmt"
	"maps"
	"strings"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// RunbookBase is where every alert's runbook_url points: a section of docs/runbooks.md
// named after the alert (GitHub's anchor is the alert name in lower case).
const RunbookBase = "https://github.com/dockyard-dev/dockyard/blob/main/docs/runbooks.md#"

// Alert names (each has a section in docs/runbooks.md).
const (
	AlertRegistryDown                = "DockyardRegistryDown"
	AlertRegistryNotReady            = "DockyardRegistryNotReady"
	AlertRegistryReplicasUnavailable = "DockyardRegistryReplicasUnavailable"
	AlertRegistryHighErrorRate       = "DockyardRegistryHighErrorRate"
	AlertRegistryHighLatency         = "DockyardRegistryHighLatency"
	AlertRegistryStorageNearlyFull   = "DockyardRegistryStorageNearlyFull"
	AlertRegistryStorageFull         = "DockyardRegistryStorageFull"
	AlertRegistryCertificateExpiring = "DockyardRegistryCertificateExpiring"
	AlertRegistryCertificateCritical = "DockyardRegistryCertificateExpiresToday"
	AlertRegistryGCFailed            = "DockyardRegistryGarbageCollectionFailed"
	AlertRegistryGCNotRun            = "DockyardRegistryGarbageCollectionNotRun"
	AlertRegistryEventsDropped       = "DockyardRegistryEventsDropped"
	AlertRegistryBackupFailed        = "DockyardRegistryBackupFailed"
	AlertRegistryBackupNotRun        = "DockyardRegistryBackupNotRun"
	AlertRetentionFailed             = "DockyardRetentionFailed"
	AlertRegistryReplicationFailing  = "DockyardReplicationFailing"
	AlertRegistryReplicationLagging  = "DockyardReplicationLagging"
	AlertScanDatabaseStale           = "DockyardScanDatabaseStale"
	AlertScanBacklog                 = "DockyardScanBacklog"
	alertScanBacklog                 = 100
	alertSeverityCritical            = "critical"
	alertSeverityWarning             = "warning"
	gcMissedSchedules                = 3
	backupMissedSchedules            = 2
	gcPeriodHorizon                  = 400 * 24 * time.Hour
	alertLatencyThresholdSeconds     = 2
	alertErrorRatio                  = 0.05
	alertCertificateWarnDays         = 7
	alertReplicationLagSeconds       = 3600
	alertStorageWarnFreeRatio        = 0.15
	alertStorageCriticalFreeRatio    = 0.05
	alertMetadataRoutes              = "base|manifest|tags|referrers"
	alertMinimumRequestRatePerSecond = 0.1
	alertEvaluationInterval          = "30s"
)

// PrometheusRule holds the Registry's alerts, scoped to it by the namespace and registry
// labels (the PodMonitor adds registry to every scraped series; the manager's own metrics
// carry both). Alerts that cannot apply are left out: storage alerts without a volume
// claim, certificate alerts without TLS, garbage-collection alerts without a schedule (or
// while it is suspended). nil when monitoring or its alerts are disabled.
func PrometheusRule(reg *v1alpha1.Registry) *monitoringv1.PrometheusRule {
	m := reg.Spec.Monitoring
	if m != nil && (m.Disabled || (m.Alerts != nil && m.Alerts.Disabled)) {
		return nil
	}
	sel := fmt.Sprintf(`namespace=%q,registry=%q`, reg.Namespace, reg.Name)
	by := "namespace, registry"
	var rules []monitoringv1.Rule
	add := func(name, severity, forDur, expr, summary, description string) {
		r := monitoringv1.Rule{
			Alert: name,
			Expr:  intstr.FromString(expr),
			Labels: map[string]string{
				"severity": severity, "namespace": reg.Namespace, "registry": reg.Name,
			},
			Annotations: map[string]string{
				"summary":     summary,
				"description": description,
				"runbook_url": RunbookBase + strings.ToLower(name),
			},
		}
		if forDur != "" {
			d := monitoringv1.Duration(forDur)
			r.For = &d
		}
		if m != nil && m.Alerts != nil {
			extra := maps.Clone(m.Alerts.Labels)
			maps.Copy(extra, r.Labels) // ours win (validation refuses them anyway)
			r.Labels = extra
		}
		rules = append(rules, r)
	}
	id := reg.Namespace + "/" + reg.Name

	add(AlertRegistryDown, alertSeverityCritical, "5m",
		fmt.Sprintf(`max by (%s) (dockyard_registry_ready_replicas{%s}) == 0`, by, sel),
		"Registry "+id+" has no ready pod",
		"No registry pod of "+id+" has been ready for 5 minutes: pushes and pulls fail.")
	add(AlertRegistryNotReady, alertSeverityWarning, "15m",
		fmt.Sprintf(`max by (%s) (dockyard_registry_ready{%s}) == 0`, by, sel),
		"Registry "+id+" is not Ready",
		"The Registry's Ready condition has been False or Unknown for 15 minutes; kubectl describe registry shows why.")
	add(AlertRegistryReplicasUnavailable, alertSeverityWarning, "15m",
		fmt.Sprintf(`max by (%[1]s) (dockyard_registry_ready_replicas{%[2]s}) < max by (%[1]s) (dockyard_registry_replicas{%[2]s})`, by, sel),
		"Registry "+id+" runs with fewer ready pods than it has",
		"{{ $value }} of the Registry's pods are ready, fewer than it has, for 15 minutes: it serves with less capacity and redundancy.")
	reqs := fmt.Sprintf(`sum by (%s) (rate(dockyard_registry_http_requests_total{%s}[5m]))`, by, sel)
	errs := fmt.Sprintf(`sum by (%s) (rate(dockyard_registry_http_requests_total{%s,code=~"5.."}[5m]))`, by, sel)
	add(AlertRegistryHighErrorRate, alertSeverityCritical, "10m",
		fmt.Sprintf(`(%s / %s > %g) and %s > %g`, errs, reqs, alertErrorRatio, reqs, alertMinimumRequestRatePerSecond),
		"Registry "+id+" answers more than 5% of requests with a server error",
		"{{ $value | humanizePercentage }} of the Registry's API requests failed with a 5xx status over 5 minutes, for 10 minutes.")
	add(AlertRegistryHighLatency, alertSeverityWarning, "15m",
		fmt.Sprintf(`histogram_quantile(0.99, sum by (%s, le) (rate(dockyard_registry_http_request_duration_seconds_bucket{%s,route=~%q}[5m]))) > %d`,
			by, sel, alertMetadataRoutes, alertLatencyThresholdSeconds),
		"Registry "+id+" is slow to answer manifest and tag requests",
		"The 99th percentile latency of manifest, tag, referrers and base requests has been {{ $value | humanizeDuration }} (over 2s) for 15 minutes. Blob transfers are not counted: their time grows with their size.")

	if pvc := PersistentVolumeClaim(reg); pvc != nil {
		free := fmt.Sprintf(`max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_available_bytes{namespace=%[1]q,persistentvolumeclaim=%[2]q}) / max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{namespace=%[1]q,persistentvolumeclaim=%[2]q})`,
			reg.Namespace, pvc.Name)
		add(AlertRegistryStorageNearlyFull, alertSeverityWarning, "15m",
			fmt.Sprintf(`%s < %g`, free, alertStorageWarnFreeRatio),
			"Registry "+id+" has less than 15% of its volume free",
			"Volume claim "+pvc.Name+" has {{ $value | humanizePercentage }} free. Free space with a retention policy and garbage collection, or grow the claim.")
		add(AlertRegistryStorageFull, alertSeverityCritical, "5m",
			fmt.Sprintf(`%s < %g`, free, alertStorageCriticalFreeRatio),
			"Registry "+id+" has less than 5% of its volume free",
			"Volume claim "+pvc.Name+" has {{ $value | humanizePercentage }} free: pushes will soon fail.")
	}

	if reg.Spec.TLS != nil {
		left := fmt.Sprintf(`min by (%s) (dockyard_registry_tls_certificate_expiry_timestamp_seconds{%s} > 0) - time()`, by, sel)
		add(AlertRegistryCertificateExpiring, alertSeverityWarning, "1h",
			fmt.Sprintf(`%s < %d`, left, alertCertificateWarnDays*24*3600),
			"The serving certificate of Registry "+id+" expires within 7 days",
			"A registry pod serves a certificate that expires in {{ $value | humanizeDuration }}. cert-manager renews long before this, so renewal is failing or the pods do not pick the new certificate up.")
		add(AlertRegistryCertificateCritical, alertSeverityCritical, "",
			fmt.Sprintf(`%s < %d`, left, 24*3600),
			"The serving certificate of Registry "+id+" expires within a day",
			"A registry pod serves a certificate that expires in {{ $value | humanizeDuration }}; clients will refuse it after that.")
	}

	if gc := reg.Spec.GarbageCollection; gc != nil && !gc.Suspend {
		add(AlertRegistryGCFailed, alertSeverityWarning, "",
			fmt.Sprintf(`max by (%s) (dockyard_registry_garbage_collection_last_run_succeeded{%s}) == 0`, by, sel),
			"Garbage collection of Registry "+id+" failed",
			"The last garbage collection run failed: storage is not freed. status.lastGarbageCollection and the CronJob's last Job say why.")
		if period, err := SchedulePeriod(gc.Schedule); err == nil {
			last := fmt.Sprintf(`max by (%s) (dockyard_registry_garbage_collection_last_run_timestamp_seconds{%s})`, by, sel)
			// "Last run older than one period" held for N-1 more periods: N periods without a run.
			add(AlertRegistryGCNotRun, alertSeverityWarning, promDuration((gcMissedSchedules-1)*period),
				fmt.Sprintf(`(time() - %s > %d) or (max by (%s) (dockyard_registry_ready{%s}) unless %s)`,
					last, int64(period.Seconds()), by, sel, last),
				"Garbage collection of Registry "+id+" has not completed for 3 schedules",
				fmt.Sprintf("No garbage collection run has completed for %d scheduled periods (schedule %q): storage is not freed.", gcMissedSchedules, gc.Schedule))
		}
	}

	if b := reg.Spec.Backup; b != nil && !b.Suspend {
		add(AlertRegistryBackupFailed, alertSeverityWarning, "",
			fmt.Sprintf(`max by (%s) (dockyard_registry_backup_last_run_succeeded{%s}) == 0`, by, sel),
			"The last backup of Registry "+id+" failed",
			"The last backup run failed: the newest good backup is older than planned. status.lastBackup and the backup Job's logs say why.")
		if period, err := SchedulePeriod(b.Schedule); err == nil {
			last := fmt.Sprintf(`max by (%s) (dockyard_registry_backup_last_run_timestamp_seconds{%s})`, by, sel)
			add(AlertRegistryBackupNotRun, alertSeverityCritical, promDuration((backupMissedSchedules-1)*period),
				fmt.Sprintf(`(time() - %s > %d) or (max by (%s) (dockyard_registry_ready{%s}) unless %s)`,
					last, int64(period.Seconds()), by, sel, last),
				"Registry "+id+" has no recent backup",
				fmt.Sprintf("No backup run has finished for %d scheduled periods (schedule %q): a restore would lose everything pushed since the last one.", backupMissedSchedules, b.Schedule))
		}
	}

	add(AlertRegistryEventsDropped, alertSeverityWarning, "",
		fmt.Sprintf(`sum by (%s) (increase(dockyard_registry_events_dropped_total{%s}[15m])) > 0`, by, sel),
		"Registry "+id+" dropped push events",
		"Registry pods dropped {{ $value }} push events in 15 minutes because the operator did not take them: on-push replication of those images waits for the rule's schedule.")
	add(AlertRetentionFailed, alertSeverityWarning, "",
		fmt.Sprintf(`max by (namespace, registry, policy) (dockyard_retention_last_enforcement_succeeded{%s}) == 0`, sel),
		"RetentionPolicy {{ $labels.policy }} of Registry "+id+" did not finish its last run",
		"The last enforced run of RetentionPolicy {{ $labels.namespace }}/{{ $labels.policy }} did not succeed (partly failed, failed, or stopped by its ceiling): storage is not freed as planned. Its status.lastEnforcement and Ready condition say why.")
	byRule := "namespace, registry, rule"
	add(AlertRegistryReplicationFailing, alertSeverityWarning, "15m",
		fmt.Sprintf(`(sum by (%[1]s) (increase(dockyard_replication_runs_total{%[2]s,result=~"Failed|PartiallyFailed"}[1h])) > 0) unless (sum by (%[1]s) (increase(dockyard_replication_runs_total{%[2]s,result="Succeeded"}[1h])) > 0)`,
			byRule, sel),
		"ReplicationRule {{ $labels.rule }} of Registry "+id+" keeps failing",
		"Runs of ReplicationRule {{ $labels.namespace }}/{{ $labels.rule }} failed in the last hour and none succeeded; its Ready condition says why.")
	add(AlertRegistryReplicationLagging, alertSeverityWarning, "15m",
		fmt.Sprintf(`max by (%s) (dockyard_replication_lag_seconds{%s}) > %d`, byRule, sel, alertReplicationLagSeconds),
		"ReplicationRule {{ $labels.rule }} of Registry "+id+" is more than an hour behind",
		"The destination of ReplicationRule {{ $labels.namespace }}/{{ $labels.rule }} was {{ $value | humanizeDuration }} behind at the end of its last run.")

	if sc := reg.Spec.Scanning; sc != nil {
		maxAge := sc.GetDatabase().GetMaxAge()
		add(AlertScanDatabaseStale, alertSeverityWarning, "15m",
			fmt.Sprintf(`time() - max by (%s) (%s{%s}) > %d`, by, "dockyard_registry_scan_database_timestamp_seconds", sel, int64(maxAge.Seconds())),
			"The vulnerability database of Registry "+id+" is older than "+promDuration(maxAge),
			"The scanner's vulnerability database is older than "+promDuration(maxAge)+", or it has none (status.scanning.databaseUpdatedAt): scans miss what was published since. Mirror a newer database into "+
				ScanDatabaseRef(reg, sc.GetDatabase().GetRepository())+"; status.scanning.lastError says why the scanner could not update it.")
		add(AlertScanBacklog, alertSeverityWarning, "1h",
			fmt.Sprintf(`max by (%s) (%s{%s}) > %d`, by, "dockyard_registry_scan_queue_length", sel, alertScanBacklog),
			"The scanner of Registry "+id+" falls behind",
			"The scanner's queue has held more than 100 images (now {{ $value }}) for an hour: new images wait that long for a report. Raise spec.scanning.concurrency (and its resources), or see status.scanning.lastError.")
	}

	om := monitoringMeta(reg)
	interval := monitoringv1.Duration(alertEvaluationInterval)
	return &monitoringv1.PrometheusRule{
		TypeMeta:   typeMeta(monitoringv1.SchemeGroupVersion.String(), monitoringv1.PrometheusRuleKind),
		ObjectMeta: om,
		Spec: monitoringv1.PrometheusRuleSpec{Groups: []monitoringv1.RuleGroup{{
			Name:     "dockyard-registry-" + reg.Name,
			Interval: &interval,
			Rules:    rules,
		}}},
	}
}

// SchedulePeriod is the longest gap between two consecutive runs of a cron schedule (five
// fields or a @descriptor), looked at over a year from a fixed start so the result does not
// depend on when it is computed.
func SchedulePeriod(schedule string) (time.Duration, error) {
	s, err := cron.ParseStandard(schedule)
	if err != nil {
		return 0, err
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var longest time.Duration
	prev := s.Next(start)
	if prev.IsZero() {
		return 0, fmt.Errorf("schedule %q never runs", schedule)
	}
	// Stop once a year is covered (at least one gap is measured, for schedules that run
	// every few years, like February 29th); bound the steps for every-minute schedules.
	for i := 0; i < 20000 && (i == 0 || prev.Sub(start) < gcPeriodHorizon); i++ {
		next := s.Next(prev)
		if next.IsZero() {
			break
		}
		if d := next.Sub(prev); d > longest {
			longest = d
		}
		prev = next
	}
	if longest == 0 {
		return 0, fmt.Errorf("schedule %q runs only once", schedule)
	}
	return longest, nil
}

// promDuration writes d the way Prometheus reads durations (whole hours or minutes).
func promDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dm", d/time.Minute)
}
