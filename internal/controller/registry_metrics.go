package controller

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// registryCollector reports every Registry's state from the manager's cache at scrape
// time, so alerts need no other exporter: how many Registries are Ready, and per Registry
// its readiness, replicas and last garbage collection.
type registryCollector struct {
	reader client.Reader

	count, ready, replicas, readyReplicas, gcTime, gcOK, backupTime, backupOK, backupBytes *prometheus.Desc
	retentionTime, retentionOK                                                             *prometheus.Desc
	scanDB, scanQueue, scanFailed                                                          *prometheus.Desc
}

// Metric names of the manager's Registry collector.
const (
	MetricRegistries              = "dockyard_registries"
	MetricRegistryReady           = "dockyard_registry_ready"
	MetricRegistryReplicas        = "dockyard_registry_replicas"
	MetricRegistryReadyReplicas   = "dockyard_registry_ready_replicas"
	MetricRegistryGCLastRun       = "dockyard_registry_garbage_collection_last_run_timestamp_seconds"
	MetricRegistryGCLastSucceeded = "dockyard_registry_garbage_collection_last_run_succeeded"
	MetricRegistryBackupLastRun   = "dockyard_registry_backup_last_run_timestamp_seconds"
	MetricRegistryBackupSucceeded = "dockyard_registry_backup_last_run_succeeded"
	MetricRegistryBackupBytes     = "dockyard_registry_backup_bytes"
	MetricRetentionLastRun        = "dockyard_retention_last_enforcement_timestamp_seconds"
	MetricRetentionSucceeded      = "dockyard_retention_last_enforcement_succeeded"
	MetricScanDatabase            = "dockyard_registry_scan_database_timestamp_seconds"
	MetricScanQueue               = "dockyard_registry_scan_queue_length"
	MetricScanFailed              = "dockyard_registry_scan_failures"
)

func newRegistryCollector(reader client.Reader) *registryCollector {
	labels := []string{"namespace", "registry"}
	return &registryCollector{reader: reader,
		count: prometheus.NewDesc(MetricRegistries, "Registries by their Ready condition (True, False, Unknown).", []string{"ready"}, nil),
		ready: prometheus.NewDesc(MetricRegistryReady, "1 when the Registry's Ready condition is True, else 0.", labels, nil),
		replicas: prometheus.NewDesc(MetricRegistryReplicas, "Registry pods the Registry's Deployment has (status.replicas).",
			labels, nil),
		readyReplicas: prometheus.NewDesc(MetricRegistryReadyReplicas, "Registry pods ready to serve (status.readyReplicas).", labels, nil),
		gcTime: prometheus.NewDesc(MetricRegistryGCLastRun, "When the Registry's last garbage collection finished (Unix time).",
			labels, nil),
		gcOK: prometheus.NewDesc(MetricRegistryGCLastSucceeded, "1 when the Registry's last garbage collection succeeded, else 0.",
			labels, nil),
		backupTime: prometheus.NewDesc(MetricRegistryBackupLastRun, "When the Registry's last backup run finished (Unix time).", labels, nil),
		backupOK:   prometheus.NewDesc(MetricRegistryBackupSucceeded, "1 when the Registry's last backup run succeeded, else 0.", labels, nil),
		backupBytes: prometheus.NewDesc(MetricRegistryBackupBytes, "Size of the blobs of the Registry's last successful backup (bytes).",
			labels, nil),
		retentionTime: prometheus.NewDesc(MetricRetentionLastRun, "When a RetentionPolicy's last enforced run finished (Unix time).",
			[]string{"namespace", "registry", "policy"}, nil),
		retentionOK: prometheus.NewDesc(MetricRetentionSucceeded, "1 when a RetentionPolicy's last enforced run succeeded, else 0 (PartiallyFailed, Failed, CeilingExceeded).",
			[]string{"namespace", "registry", "policy"}, nil),
		scanDB: prometheus.NewDesc(MetricScanDatabase, "When the vulnerability database of the Registry's scanner was built (Unix time; 0: it has none). From status.scanning, refreshed every minute.",
			labels, nil),
		scanQueue: prometheus.NewDesc(MetricScanQueue, "Images waiting for the Registry's scanner or being scanned (status.scanning.queue).", labels, nil),
		scanFailed: prometheus.NewDesc(MetricScanFailed, "Scans of the Registry's scanner that failed since it started (status.scanning.failed).",
			labels, nil),
	}
}

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.count, c.ready, c.replicas, c.readyReplicas, c.gcTime, c.gcOK, c.backupTime, c.backupOK, c.backupBytes, c.retentionTime, c.retentionOK, c.scanDB, c.scanQueue, c.scanFailed} {
		ch <- d
	}
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list v1alpha1.RegistryList
	if err := c.reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil { // read only
		return // the cache is not started yet (or not the leader's): nothing to report
	}
	counts := map[metav1.ConditionStatus]float64{metav1.ConditionTrue: 0, metav1.ConditionFalse: 0, metav1.ConditionUnknown: 0}
	for i := range list.Items {
		reg := &list.Items[i]
		status := metav1.ConditionUnknown
		if cond := meta.FindStatusCondition(reg.Status.Conditions, v1alpha1.ConditionReady); cond != nil {
			status = cond.Status
		}
		counts[status]++
		ready := 0.0
		if status == metav1.ConditionTrue {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready, reg.Namespace, reg.Name)
		ch <- prometheus.MustNewConstMetric(c.replicas, prometheus.GaugeValue, float64(reg.Status.Replicas), reg.Namespace, reg.Name)
		ch <- prometheus.MustNewConstMetric(c.readyReplicas, prometheus.GaugeValue, float64(reg.Status.ReadyReplicas), reg.Namespace, reg.Name)
		if gc := reg.Status.LastGarbageCollection; gc != nil && gc.CompletionTime != nil {
			ok := 0.0
			if gc.Result != registryconfig.GCResultFailed {
				ok = 1
			}
			ch <- prometheus.MustNewConstMetric(c.gcTime, prometheus.GaugeValue, float64(gc.CompletionTime.Unix()), reg.Namespace, reg.Name)
			ch <- prometheus.MustNewConstMetric(c.gcOK, prometheus.GaugeValue, ok, reg.Namespace, reg.Name)
		}
		if sc := reg.Status.Scanning; reg.Spec.Scanning != nil && sc != nil {
			db := 0.0
			if sc.DatabaseUpdatedAt != nil {
				db = float64(sc.DatabaseUpdatedAt.Unix())
			}
			ch <- prometheus.MustNewConstMetric(c.scanDB, prometheus.GaugeValue, db, reg.Namespace, reg.Name)
			ch <- prometheus.MustNewConstMetric(c.scanQueue, prometheus.GaugeValue, float64(sc.Queue), reg.Namespace, reg.Name)
			ch <- prometheus.MustNewConstMetric(c.scanFailed, prometheus.GaugeValue, float64(sc.Failed), reg.Namespace, reg.Name)
		}
		if b := reg.Status.LastBackup; b != nil && b.CompletionTime != nil {
			ok := 0.0
			if b.Result != registryconfig.GCResultFailed {
				ok = 1
				ch <- prometheus.MustNewConstMetric(c.backupBytes, prometheus.GaugeValue, float64(b.Bytes), reg.Namespace, reg.Name)
			}
			ch <- prometheus.MustNewConstMetric(c.backupTime, prometheus.GaugeValue, float64(b.CompletionTime.Unix()), reg.Namespace, reg.Name)
			ch <- prometheus.MustNewConstMetric(c.backupOK, prometheus.GaugeValue, ok, reg.Namespace, reg.Name)
		}
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, n, string(s))
	}
	var policies v1alpha1.RetentionPolicyList
	if err := c.reader.List(ctx, &policies, client.UnsafeDisableDeepCopy); err != nil { // read only
		return
	}
	for i := range policies.Items {
		p := &policies.Items[i]
		e := p.Status.LastEnforcement
		if e == nil || e.CompletionTime == nil {
			continue
		}
		ok := 0.0
		if e.Result == registryconfig.GCResultSucceeded {
			ok = 1
		}
		ch <- prometheus.MustNewConstMetric(c.retentionTime, prometheus.GaugeValue, float64(e.CompletionTime.Unix()), p.Namespace, p.Spec.RegistryRef.Name, p.Name)
		ch <- prometheus.MustNewConstMetric(c.retentionOK, prometheus.GaugeValue, ok, p.Namespace, p.Spec.RegistryRef.Name, p.Name)
	}
}

// RegisterRegistryMetrics serves the Registry collector with the manager's metrics.
func RegisterRegistryMetrics(reader client.Reader) error {
	return metrics.Registry.Register(newRegistryCollector(reader))
}
