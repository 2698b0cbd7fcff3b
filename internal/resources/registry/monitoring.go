package registry

import (
	"maps"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// DefaultScrapeInterval is spec.monitoring.interval's default.
const DefaultScrapeInterval = 30 * time.Second

// PodMonitor tells the Prometheus Operator to scrape every registry pod's /metrics on the
// metrics port (plain HTTP inside the cluster; the registry API port stays untouched).
// nil when spec.monitoring.disabled is set.
func PodMonitor(reg *v1alpha1.Registry) *monitoringv1.PodMonitor {
	m := reg.Spec.Monitoring
	if m != nil && m.Disabled {
		return nil
	}
	interval := DefaultScrapeInterval
	if m != nil && m.Interval != nil {
		interval = m.Interval.Duration
	}
	port := MetricsPortName
	return &monitoringv1.PodMonitor{
		TypeMeta:   typeMeta(monitoringv1.SchemeGroupVersion.String(), monitoringv1.PodMonitorsKind),
		ObjectMeta: monitoringMeta(reg),
		Spec: monitoringv1.PodMonitorSpec{
			Selector: metav1.LabelSelector{MatchLabels: SelectorLabels(reg)},
			PodMetricsEndpoints: []monitoringv1.PodMetricsEndpoint{{
				Port:     &port,
				Path:     registryconfig.MetricsPath,
				Interval: monitoringv1.Duration(interval.String()),
				// Every series carries the Registry's name as label registry (Prometheus
				// adds namespace): the alerts and the dashboard select by both.
				RelabelConfigs: []monitoringv1.RelabelConfig{{
					SourceLabels: []monitoringv1.LabelName{"__meta_kubernetes_pod_label_app_kubernetes_io_instance"},
					TargetLabel:  "registry",
					Action:       "replace",
				}},
			}},
		},
	}
}

// monitoringMeta names the PodMonitor and the PrometheusRule after the Service, with the
// user's spec.monitoring.labels (for a Prometheus that selects by label) under ours.
func monitoringMeta(reg *v1alpha1.Registry) metav1.ObjectMeta {
	om := objectMeta(reg, reg.ServiceName(), ComponentServer)
	if m := reg.Spec.Monitoring; m != nil && len(m.Labels) > 0 {
		labels := maps.Clone(m.Labels)
		maps.Copy(labels, om.Labels) // ours win: they select and own
		om.Labels = labels
	}
	return om
}
