// Command chartgen writes Dockyard's Helm chart from the output of
// `kustomize build config/default` (and config/monitoring), so the chart and the kustomize
// install cannot drift apart:
//
//	kustomize build config/default | go run ./hack/chartgen --out charts/dockyard --version 0.1.0 --image IMG --monitoring <(kustomize build config/monitoring)
//
// Every object becomes a template under templates/, unchanged but for what a chart user
// sets through values.yaml: the namespace (the release's), the manager's image, replicas,
// resources and scheduling, whether CRDs are installed (and kept on uninstall), and the
// optional ServiceMonitor and Grafana dashboard. The Namespace object is left out: Helm
// installs into an existing namespace (or --create-namespace). With the default values and
// --namespace dockyard-system, `helm template` renders the same objects as kustomize
// (the chart test compares them). The output is deterministic, so `make verify` can
// regenerate it and diff.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Namespace is the namespace config/default installs into; the chart uses the release's.
const Namespace = "dockyard-system"

type object = map[string]any

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chartgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("chartgen", flag.ContinueOnError)
	var out, version, image, monitoring string
	fs.StringVar(&out, "out", "charts/dockyard", "chart directory (templates/ is replaced)")
	fs.StringVar(&version, "version", "", "chart and app version, e.g. 0.1.0 (required)")
	fs.StringVar(&image, "image", "", "default manager image, REPOSITORY:TAG (required)")
	fs.StringVar(&monitoring, "monitoring", "", "file with `kustomize build config/monitoring` (ServiceMonitor, dashboard ConfigMap)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if version == "" || image == "" {
		return errors.New("--version and --image are required")
	}
	objs, err := readObjects(os.Stdin)
	if err != nil {
		return err
	}
	var mon []object
	if monitoring != "" {
		f, err := os.Open(monitoring)
		if err != nil {
			return err
		}
		defer f.Close()
		if mon, err = readObjects(f); err != nil {
			return err
		}
	}
	files, err := Generate(objs, mon, version, image)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(out, "templates")); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(out, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, files[n], 0o644); err != nil { //nolint:gosec // chart files are public
			return err
		}
	}
	return nil
}

func readObjects(r io.Reader) ([]object, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []object
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		if len(o) > 0 {
			objs = append(objs, o)
		}
	}
}

// Markers stand in for template expressions while objects are marshalled; value markers
// replace a scalar, block markers a whole value (rendered with toYaml at its indentation).
const (
	markNamespace = "__NAMESPACE__"
	markImage     = "__IMAGE__"
	markPull      = "__PULL_POLICY__"
	markReplicas  = "__REPLICAS__"
	blockPrefix   = "__BLOCK_"
)

var valueMarkers = map[string]string{
	markNamespace: "{{ .Release.Namespace }}",
	markImage:     `{{ include "dockyard.image" . }}`,
	markPull:      "{{ .Values.image.pullPolicy }}",
}

// Generate returns the chart's files by path: Chart.yaml, values.yaml, templates/*.
func Generate(objs, monitoring []object, version, image string) (map[string][]byte, error) {
	repo, tag, ok := strings.Cut(image, ":")
	if !ok || strings.Contains(tag, "/") {
		return nil, fmt.Errorf("--image %q: want REPOSITORY:TAG", image)
	}
	files := map[string][]byte{}
	var deploy object
	var resources any
	for _, o := range objs {
		kind, name := str(o, "kind"), str(o, "metadata", "name")
		if kind == "Namespace" {
			continue
		}
		fixNamespaces(o)
		var wrapIf string
		path := fmt.Sprintf("templates/%s-%s.yaml", strings.ToLower(kind), strings.TrimPrefix(name, "dockyard-"))
		switch kind {
		case "CustomResourceDefinition":
			path = fmt.Sprintf("templates/crds/%s.yaml", name)
			wrapIf = ".Values.crds.install"
			md := o["metadata"].(object)
			ann, _ := md["annotations"].(object)
			if ann == nil {
				ann = object{}
			}
			ann["__KEEP__"] = "1"
			md["annotations"] = ann
		case "Deployment":
			r, err := templateManager(o)
			if err != nil {
				return nil, err
			}
			deploy, resources = o, r
		}
		b, err := render(o)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, name, err)
		}
		if wrapIf != "" {
			b = wrap(b, wrapIf)
		}
		files[path] = b
	}
	if deploy == nil {
		return nil, errors.New("no manager Deployment in the input")
	}
	for _, o := range monitoring {
		kind := str(o, "kind")
		fixNamespaces(o)
		var path, cond string
		switch kind {
		case "ServiceMonitor":
			path, cond = "templates/monitoring/servicemonitor.yaml", ".Values.metrics.serviceMonitor.enabled"
			setLabelsBlock(o, "serviceMonitorLabels")
		case "ConfigMap":
			path, cond = "templates/monitoring/grafana-dashboard.yaml", ".Values.grafanaDashboard.enabled"
			setLabelsBlock(o, "dashboardLabels")
		default:
			return nil, fmt.Errorf("config/monitoring: unexpected %s", kind)
		}
		b, err := render(o)
		if err != nil {
			return nil, err
		}
		files[path] = wrap(b, cond)
	}
	files["Chart.yaml"] = []byte(fmt.Sprintf(chartYAML, version, version))
	res, err := yaml.Marshal(object{"resources": resources})
	if err != nil {
		return nil, err
	}
	files["values.yaml"] = []byte(fmt.Sprintf(valuesYAML, repo, tag, strings.TrimSpace(string(res))))
	files["templates/_helpers.tpl"] = []byte(helpersTpl)
	files["templates/NOTES.txt"] = []byte(notesTxt)
	return files, nil
}

// fixNamespaces puts namespaced objects, and the subjects of bindings, into the release's
// namespace.
func fixNamespaces(o object) {
	if md, ok := o["metadata"].(object); ok && md["namespace"] == Namespace {
		md["namespace"] = markNamespace
	}
	if subs, ok := o["subjects"].([]any); ok {
		for _, s := range subs {
			if sm, ok := s.(object); ok && sm["namespace"] == Namespace {
				sm["namespace"] = markNamespace
			}
		}
	}
}

// templateManager turns the manager Deployment's settings into values and returns the
// resources config/manager sets (values.yaml's defaults).
func templateManager(o object) (any, error) {
	spec := o["spec"].(object)
	spec["replicas"] = markReplicas
	pod := spec["template"].(object)["spec"].(object)
	for _, k := range []string{"nodeSelector", "tolerations", "affinity"} {
		if _, ok := pod[k]; ok {
			return nil, fmt.Errorf("config/manager sets %s; chartgen would hide it behind values", k)
		}
		pod[k] = blockPrefix + k
	}
	containers, _ := pod["containers"].([]any)
	var resources any
	for _, c := range containers {
		cm := c.(object)
		if cm["name"] != "manager" {
			continue
		}
		resources = cm["resources"]
		cm["image"] = markImage
		cm["imagePullPolicy"] = markPull
		cm["resources"] = blockPrefix + "resources"
		if env, ok := cm["env"].([]any); ok {
			for _, e := range env {
				em := e.(object)
				if em["name"] == "DOCKYARD_IMAGE" {
					em["value"] = markImage
				}
			}
		}
	}
	if resources == nil {
		return nil, errors.New("the Deployment has no container named manager, or it sets no resources")
	}
	return resources, nil
}

// setLabelsBlock lets values add labels to an optional object.
func setLabelsBlock(o object, value string) {
	md := o["metadata"].(object)
	labels, _ := md["labels"].(object)
	if labels == nil {
		labels = object{}
	}
	labels["__LABELS__"] = value
	md["labels"] = labels
}

var (
	blockLine  = regexp.MustCompile(`(?m)^( *)(-? *)([A-Za-z]+): ` + blockPrefix + `(\w+)$`)
	keepLine   = regexp.MustCompile(`(?m)^( *)__KEEP__: "1"\n`)
	labelsLine = regexp.MustCompile(`(?m)^( *)__LABELS__: (\w+)\n`)
)

// render marshals an object and swaps the markers for template expressions.
func render(o object) ([]byte, error) {
	b, err := yaml.Marshal(o)
	if err != nil {
		return nil, err
	}
	// Text that looks like a template (the dashboard's legends, "{{namespace}}") is
	// escaped, so Helm prints it as it is.
	s := strings.NewReplacer("{{", "\x00L", "}}", "\x00R").Replace(string(b))
	s = strings.NewReplacer("\x00L", `{{ "{{" }}`, "\x00R", `{{ "}}" }}`).Replace(s)
	s = strings.ReplaceAll(s, "app.kubernetes.io/managed-by: kustomize", "app.kubernetes.io/managed-by: {{ .Release.Service }}")
	for m, expr := range valueMarkers {
		s = strings.ReplaceAll(s, m, expr)
	}
	s = strings.ReplaceAll(s, "replicas: "+markReplicas, "replicas: {{ .Values.replicas }}")
	s = blockLine.ReplaceAllStringFunc(s, func(line string) string {
		m := blockLine.FindStringSubmatch(line)
		indent, key, value := m[1]+strings.Repeat(" ", len(m[2])), m[3], m[4]
		if value == "resources" {
			return fmt.Sprintf("%s%s%s:\n%s{{- toYaml .Values.resources | nindent %d }}", m[1], m[2], key, indent, len(indent)+2)
		}
		return fmt.Sprintf("%s{{- with .Values.%s }}\n%s%s%s:\n%s{{- toYaml . | nindent %d }}\n%s{{- end }}",
			indent, value, m[1], m[2], key, indent, len(indent)+2, indent)
	})
	s = keepLine.ReplaceAllStringFunc(s, func(line string) string {
		indent := keepLine.FindStringSubmatch(line)[1]
		return fmt.Sprintf("%s{{- if .Values.crds.keep }}\n%shelm.sh/resource-policy: keep\n%s{{- end }}\n", indent, indent, indent)
	})
	s = labelsLine.ReplaceAllStringFunc(s, func(line string) string {
		m := labelsLine.FindStringSubmatch(line)
		return fmt.Sprintf("%s{{- with .Values.%s }}\n%s{{- toYaml . | nindent %d }}\n%s{{- end }}\n", m[1], m[2], m[1], len(m[1]), m[1])
	})
	if strings.Contains(s, "__") && regexp.MustCompile(`__[A-Z_]+__`).MatchString(s) {
		return nil, fmt.Errorf("a marker was left in the output:\n%s", s)
	}
	return []byte(header + s), nil
}

func wrap(b []byte, cond string) []byte {
	body := strings.TrimPrefix(string(b), header)
	return []byte(header + "{{- if " + cond + " }}\n" + body + "{{- end }}\n")
}

func str(o object, path ...string) string {
	var cur any = o
	for _, p := range path {
		m, ok := cur.(object)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

const header = "# Generated by hack/chartgen from config/ (make chart); do not edit.\n"

const chartYAML = `apiVersion: v2
name: dockyard
description: Private OCI registries run by a Kubernetes operator (Registry, RetentionPolicy, ReplicationRule).
type: application
version: %s
appVersion: "%s"
kubeVersion: ">=1.30.0-0"
home: https://github.com/dockyard-dev/dockyard
sources:
- https://github.com/dockyard-dev/dockyard
keywords: [registry, oci, operator]
`

const valuesYAML = `# Dockyard's Helm chart; generated by hack/chartgen from config/ (make chart).
# The defaults install what ` + "`make deploy`" + ` installs (config/default).

image:
  repository: %s
  # tag defaults to the chart's appVersion when empty.
  tag: "%s"
  pullPolicy: IfNotPresent

# Manager replicas (leader election picks one to reconcile; the others wait).
replicas: 1

# The manager's resources. Measured with make bench: 1,000 Registries peak at 142 MiB
# resident (74 MiB anonymous, the rest the binary's pages); memory grows by about
# 60 KiB per Registry. The manager sets Go's soft memory limit to 90%% of the limit.
%s

nodeSelector: {}
tolerations: []
affinity: {}

crds:
  # install the CRDs with the chart (and upgrade them with it: Helm's crds/ directory
  # would never upgrade them).
  install: true
  # keep the CRDs, and so every Registry, when the release is uninstalled.
  keep: true

metrics:
  serviceMonitor:
    # a ServiceMonitor for the manager's metrics (needs the Prometheus Operator). Bind
    # Prometheus' ServiceAccount to the dockyard-metrics-reader ClusterRole.
    enabled: false
serviceMonitorLabels: {}

grafanaDashboard:
  # the Dockyard dashboard as a ConfigMap for Grafana's sidecar (grafana_dashboard: "1").
  enabled: false
dashboardLabels: {}
`

const helpersTpl = `{{/* The manager's image; also the default image of registry pods. */}}
{{- define "dockyard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
`

const notesTxt = `Dockyard {{ .Chart.AppVersion }} runs in namespace {{ .Release.Namespace }}.

Create a Registry:
  kubectl apply -f https://github.com/dockyard-dev/dockyard/raw/main/config/samples/registry_emptydir.yaml
  kubectl get registries -A
`
