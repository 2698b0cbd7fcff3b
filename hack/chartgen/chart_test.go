package main

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/strvals"

	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

// These tests lint and render the committed chart with Helm's own packages (the loader,
// values, template engine and linter that `helm lint` and `helm template` run; helm.sh/helm/v3
// from the Go module proxy, pinned in go.mod) and compare it with kustomize's
// (bin/kustomize-*) rendering of config/. The helm CLI itself is not built: it took 9
// minutes to build cold, for the same code.

func kustomize(t *testing.T, dir string) []object {
	t.Helper()
	bins, _ := filepath.Glob(filepath.Join("..", "..", "bin", "kustomize-v*"))
	if len(bins) == 0 {
		testfixture.Missing(t, "no bin/kustomize-* built (make test builds it)")
		return nil
	}
	sort.Strings(bins)
	out, err := exec.Command(bins[len(bins)-1], "build", filepath.Join("..", "..", "config", dir)).Output()
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", dir, err)
	}
	objs, err := readObjects(strings.NewReader(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

var chartDir = filepath.Join("..", "..", "charts", "dockyard")

// helmTemplate renders the chart as `helm template dockyard charts/dockyard --namespace NS
// --set S...` does, for Kubernetes 1.37.
func helmTemplate(t *testing.T, namespace string, sets ...string) []object {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load the chart: %v", err)
	}
	vals := map[string]any{}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rv, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{Name: "dockyard", Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	out, err := engine.Render(chrt, rv)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []object
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") {
			continue
		}
		o, err := readObjects(strings.NewReader(out[n]))
		if err != nil {
			t.Fatalf("%s: %v\n%s", n, err, out[n])
		}
		objs = append(objs, o...)
	}
	if len(objs) == 0 {
		t.Fatal("the chart rendered nothing")
	}
	return objs
}

func byKey(objs []object) map[string]object {
	m := map[string]object{}
	for _, o := range objs {
		m[str(o, "kind")+"/"+str(o, "metadata", "name")] = o
	}
	return m
}

// normalize drops what legitimately differs between the installs: the managed-by label
// (Helm or kustomize) and the CRDs' keep policy.
func normalize(o object) {
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, child := range t {
				if k == "labels" {
					if l, ok := child.(map[string]any); ok {
						delete(l, "app.kubernetes.io/managed-by")
					}
				}
				walk(child)
			}
		case []any:
			for _, child := range t {
				walk(child)
			}
		}
	}
	walk(o)
	if md, ok := o["metadata"].(map[string]any); ok {
		if ann, ok := md["annotations"].(map[string]any); ok {
			delete(ann, "helm.sh/resource-policy")
		}
	}
}

// TestHelmLint runs Helm's linter (what `helm lint --strict` runs): no warning or error,
// with the defaults and with every optional object on.
func TestHelmLint(t *testing.T) {
	for _, set := range []string{"", "metrics.serviceMonitor.enabled=true,grafanaDashboard.enabled=true,crds.install=false"} {
		vals := map[string]any{}
		if set != "" {
			if err := strvals.ParseInto(set, vals); err != nil {
				t.Fatal(err)
			}
		}
		res := lint.All(chartDir, vals, Namespace, true)
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint --strict (%s): %s", set, m)
			}
		}
	}
}

// TestChartRendersWhatKustomizeInstalls: with its defaults and the namespace
// dockyard-system, the chart renders exactly the objects of config/default (but the
// Namespace, which Helm does not own), and with monitoring on, those of config/monitoring.
func TestChartRendersWhatKustomizeInstalls(t *testing.T) {
	want := map[string]object{}
	for k, o := range byKey(kustomize(t, "default")) {
		if strings.HasPrefix(k, "Namespace/") {
			continue
		}
		want[k] = o
	}
	got := byKey(helmTemplate(t, Namespace, "image.repository=controller", "image.tag=latest"))
	compare(t, want, got)

	mon := byKey(kustomize(t, "monitoring"))
	withMon := byKey(helmTemplate(t, Namespace, "image.repository=controller", "image.tag=latest",
		"metrics.serviceMonitor.enabled=true", "grafanaDashboard.enabled=true"))
	for k, o := range mon {
		want[k] = o
	}
	compare(t, want, withMon)
}

func compare(t *testing.T, want, got map[string]object) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("the chart does not render %s", k)
			continue
		}
		normalize(w)
		normalize(g)
		if !reflect.DeepEqual(w, g) {
			wb, _ := render(w)
			gb, _ := render(g)
			t.Errorf("%s differs:\n--- kustomize\n%s\n--- helm\n%s", k, wb, gb)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("the chart renders %s, which kustomize does not", k)
		}
	}
}

// TestChartValues: the values a user sets reach the objects.
func TestChartValues(t *testing.T) {
	objs := byKey(helmTemplate(t, "registries-operator",
		"image.repository=registry.example.com/dockyard", "image.tag=1.2.3", "replicas=2",
		"resources.limits.memory=512Mi", "nodeSelector.pool=system", "tolerations[0].key=dedicated",
		"tolerations[0].operator=Exists", "crds.keep=false",
		"metrics.serviceMonitor.enabled=true", "serviceMonitorLabels.release=kube-prometheus-stack"))
	d := objs["Deployment/dockyard-controller-manager"]
	if d == nil {
		t.Fatal("no manager Deployment")
	}
	if str(d, "metadata", "namespace") != "registries-operator" {
		t.Errorf("Deployment namespace %q", str(d, "metadata", "namespace"))
	}
	spec := d["spec"].(object)
	if spec["replicas"] != float64(2) {
		t.Errorf("replicas = %v", spec["replicas"])
	}
	pod := spec["template"].(object)["spec"].(object)
	c := pod["containers"].([]any)[0].(object)
	if c["image"] != "registry.example.com/dockyard:1.2.3" {
		t.Errorf("image = %v", c["image"])
	}
	for _, e := range c["env"].([]any) {
		if em := e.(object); em["name"] == "DOCKYARD_IMAGE" && em["value"] != "registry.example.com/dockyard:1.2.3" {
			t.Errorf("DOCKYARD_IMAGE = %v: registry pods must run the same image", em["value"])
		}
	}
	if m := c["resources"].(object)["limits"].(object)["memory"]; m != "512Mi" {
		t.Errorf("memory limit = %v", m)
	}
	if pod["nodeSelector"].(object)["pool"] != "system" || len(pod["tolerations"].([]any)) != 1 {
		t.Errorf("scheduling = %v %v", pod["nodeSelector"], pod["tolerations"])
	}
	for k, o := range objs {
		if ns := str(o, "metadata", "namespace"); ns != "" && ns != "registries-operator" {
			t.Errorf("%s in namespace %q", k, ns)
		}
		if subs, ok := o["subjects"].([]any); ok {
			for _, s := range subs {
				if ns := s.(object)["namespace"]; ns != nil && ns != "registries-operator" {
					t.Errorf("%s binds a subject in %v", k, ns)
				}
			}
		}
		if strings.HasPrefix(k, "CustomResourceDefinition/") {
			if ann, _ := o["metadata"].(object)["annotations"].(object); ann["helm.sh/resource-policy"] != nil {
				t.Errorf("%s keeps resource-policy with crds.keep=false", k)
			}
		}
	}
	sm := objs["ServiceMonitor/dockyard-controller-manager-metrics"]
	if sm == nil || sm["metadata"].(object)["labels"].(object)["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels: %v", sm)
	}

	noCRDs := byKey(helmTemplate(t, Namespace, "crds.install=false"))
	for k := range noCRDs {
		if strings.HasPrefix(k, "CustomResourceDefinition/") {
			t.Errorf("crds.install=false still renders %s", k)
		}
	}
	def := byKey(helmTemplate(t, Namespace))
	for k, o := range def {
		if strings.HasPrefix(k, "CustomResourceDefinition/") {
			if ann, _ := o["metadata"].(object)["annotations"].(object); ann["helm.sh/resource-policy"] != "keep" {
				t.Errorf("%s is not kept on uninstall by default", k)
			}
		}
	}
}
