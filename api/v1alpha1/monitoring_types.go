package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// MonitoringSpec configures the PodMonitor and the PrometheusRule the operator writes for a
// Registry when the Prometheus Operator's CRDs (monitoring.coreos.com/v1) are installed:
// Prometheus then scrapes every registry pod's /metrics on port 5001 and evaluates the
// Registry's alerts (docs/runbooks.md). Without those CRDs nothing is written and the
// MonitoringReady condition says so.
type MonitoringSpec struct {
	// disabled stops the operator from writing a PodMonitor and a PrometheusRule (and
	// removes its own).
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// labels are added to the PodMonitor and the PrometheusRule, for a Prometheus whose
	// podMonitorSelector and ruleSelector select by label (e.g. release: kube-prometheus-stack).
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// interval is the scrape interval. Defaults to 30s (5s to 10m).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5s') && duration(self) <= duration('10m')",message="monitoring.interval: between 5s and 10m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// alerts configures the Registry's alerting rules (a PrometheusRule next to the
	// PodMonitor). Every alert has a runbook section in docs/runbooks.md.
	// +optional
	Alerts *AlertsSpec `json:"alerts,omitempty"`
}

// AlertsSpec configures the Registry's PrometheusRule.
type AlertsSpec struct {
	// disabled stops the operator from writing the PrometheusRule (and removes its own);
	// the PodMonitor stays.
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// labels are added to every alert, for Alertmanager routing (e.g. team: platform).
	// Keys are Prometheus label names; namespace, registry, severity and alertname are the
	// alerts' own and cannot be set.
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]{0,62}$'))",message="alerts.labels: keys must be Prometheus label names (letters, digits, underscores; not starting with a digit; at most 63 characters)"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['namespace', 'registry', 'severity', 'alertname']) && !k.startsWith('__'))",message="alerts.labels: namespace, registry, severity and alertname are set by the operator, and names starting with __ are reserved"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 256)",message="alerts.labels: values are at most 256 characters"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}
