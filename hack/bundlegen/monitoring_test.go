package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/testfixture/promtool"
)

// kustomizeBuild renders a config/ directory with bin/kustomize-* (make test builds it).
func kustomizeBuild(t *testing.T, dir string) []Object {
	t.Helper()
	bins, _ := filepath.Glob(filepath.Join("..", "..", "bin", "kustomize-v*"))
	if len(bins) == 0 {
		if os.Getenv("DOCKYARD_REQUIRE_CLIENTS") != "" {
			t.Fatal("no bin/kustomize-* built (make test builds it)")
		}
		t.Skip("no bin/kustomize-* built (make test builds it)")
	}
	sort.Strings(bins)
	out, err := exec.Command(bins[len(bins)-1], "build", filepath.Join("..", "..", "config", dir)).Output()
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", dir, err)
	}
	objs, err := ReadObjects(strings.NewReader(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(t *testing.T, objs []Object, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if kindOf(o) == kind && nestedString(o, "metadata", "name") == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o, into, true); err != nil {
				t.Fatalf("%s %s does not decode strictly: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s", kind, name)
}

// TestMonitoringConfigScrapesTheManager renders config/monitoring next to config/default
// and checks that its ServiceMonitor selects the manager's metrics Service (and no other
// Service of the operator) on the right port, in the operator's namespace, keeping the
// metrics' own namespace label the alerts select on.
func TestMonitoringConfigScrapesTheManager(t *testing.T) {
	def := kustomizeBuild(t, "default")
	mon := kustomizeBuild(t, "monitoring")
	var sm monitoringv1.ServiceMonitor
	find(t, mon, "ServiceMonitor", "dockyard-controller-manager-metrics", &sm)
	var svc corev1.Service
	find(t, def, "Service", "dockyard-controller-manager-metrics", &svc)
	if sm.Namespace != svc.Namespace {
		t.Errorf("ServiceMonitor in %q, Service in %q", sm.Namespace, svc.Namespace)
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the metrics Service's labels %v", k, v, svc.Labels)
		}
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("endpoints = %d", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
		t.Errorf("endpoint port %q is not a port of the metrics Service", ep.Port)
	}
	if !ep.HonorLabels {
		t.Error("honorLabels is off: the metrics' namespace label would become exported_namespace and the alerts would not match")
	}
	if ep.Scheme == nil || *ep.Scheme != "https" {
		t.Errorf("scheme = %v, want https (the manager serves metrics over TLS only)", ep.Scheme)
	}
	var cm corev1.ConfigMap
	find(t, mon, "ConfigMap", "dockyard-grafana-dashboard", &cm)
	if cm.Labels["grafana_dashboard"] != "1" || cm.Namespace != svc.Namespace {
		t.Errorf("dashboard ConfigMap %s/%s labels %v: Grafana's sidecar looks for grafana_dashboard=1", cm.Namespace, cm.Name, cm.Labels)
	}
	if !json.Valid([]byte(cm.Data["dockyard.json"])) {
		t.Error("the dashboard ConfigMap holds no valid JSON")
	}
}

// exportedMetrics are the metric names Dockyard's code registers (string literals
// "dockyard_..." in its non-test sources).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"(dockyard_[a-z_]+)"`)
	names := map[string]bool{}
	for _, dir := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join("..", "..", dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				names[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// Metrics of other exporters the dashboard and the alerts read: the kubelet's volume
// statistics and controller-runtime's (the manager's) reconcile and work-queue metrics.
var foreignMetrics = regexp.MustCompile(`^(kubelet_volume_stats_(used|available|capacity)_bytes|controller_runtime_reconcile_(total|time_seconds_bucket)|workqueue_depth)$`)

var metricName = regexp.MustCompile(`\b((?:dockyard|kubelet|controller_runtime|workqueue)_[a-z_]+)\b`)

// queriedMetrics are the metric names a PromQL expression selects.
func queriedMetrics(expr string) []string { return metricName.FindAllString(expr, -1) }

func knownMetric(exported map[string]bool, name string) bool {
	if foreignMetrics.MatchString(name) || exported[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] {
			return true
		}
	}
	return false
}

// TestDashboardQueriesAreValid checks every query of the Grafana dashboard: promtool
// parses it (with Grafana's variables filled in), and each metric it reads is one
// Dockyard exports, or the kubelet's or controller-runtime's. The alerts' expressions get
// the same metric check, so a renamed metric cannot leave a silent panel or alert behind.
func TestDashboardQueriesAreValid(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "monitoring", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	exported := exportedMetrics(t)
	fill := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*", "$registry", ".*")
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range queriedMetrics(tg.Expr) {
				if !knownMetric(exported, m) {
					t.Errorf("panel %q reads %s, which nothing exports", p.Title, m)
				}
			}
			rules = append(rules, rule{Record: "dashboard:query", Expr: fill.Replace(tg.Expr)})
		}
	}
	if len(rules) < 20 {
		t.Errorf("the dashboard has %d queries", len(rules))
	}
	pr := registry.PrometheusRule(&registryForAlerts)
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			for _, m := range queriedMetrics(r.Expr.String()) {
				if !knownMetric(exported, m) {
					t.Errorf("alert %s reads %s, which nothing exports", r.Alert, m)
				}
			}
		}
	}

	// promtool parses the queries as recording rules.
	file, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.rules.yaml"), file, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := promtool.Run(t, dir, "check", "rules", "dashboard.rules.yaml"); err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

// registryForAlerts has every optional alert: volume storage, TLS and garbage collection.
var registryForAlerts = v1alpha1.Registry{
	ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
	Spec: v1alpha1.RegistrySpec{
		Storage:           v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("1Gi")}},
		TLS:               &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Name: "ca"}},
		GarbageCollection: &v1alpha1.GarbageCollectionSpec{Schedule: "@daily"},
	},
}
