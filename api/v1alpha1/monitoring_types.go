package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// MonitoringSpec configures the PodMonitor the operator writes for a Registry when the
// Prometheus Operator's CRDs (monitoring.coreos.com/v1) are installed: Prometheus then
// scrapes every registry pod's /metrics on port 5001. Without those CRDs nothing is written
// and the MonitoringReady condition says so.
type MonitoringSpec struct {
	// disabled stops the operator from writing a PodMonitor (and removes its own).
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// labels are added to the PodMonitor, for a Prometheus whose podMonitorSelector
	// selects by label (e.g. release: kube-prometheus-stack).
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// interval is the scrape interval. Defaults to 30s (5s to 10m).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5s') && duration(self) <= duration('10m')",message="monitoring.interval: between 5s and 10m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
}
