package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const (
	testVersion = "0.1.0"
	testImage   = "ghcr.io/dockyard-dev/dockyard:v0.1.0"
)

// manifests returns the operator's manifests: `kustomize build config/manifests` when a
// kustomize binary was built into bin/ (make bundle builds one), else the checked-in
// testdata/manifests.yaml (the same build with the CRD schema trimmed).
func manifests(t *testing.T) []Object {
	t.Helper()
	var data []byte
	bins, _ := filepath.Glob(filepath.Join("..", "..", "bin", "kustomize-v*"))
	sort.Strings(bins)
	if len(bins) > 0 {
		kz := bins[len(bins)-1]
		out, err := exec.Command(kz, "build", filepath.Join("..", "..", "config", "manifests")).Output()
		if err != nil {
			t.Fatalf("%s build config/manifests: %v", kz, err)
		}
		t.Logf("input: %s build config/manifests", filepath.Base(kz))
		data = out
	} else {
		var err error
		if data, err = os.ReadFile(filepath.Join("testdata", "manifests.yaml")); err != nil {
			t.Fatal(err)
		}
		t.Log("input: testdata/manifests.yaml (no bin/kustomize-* built)")
	}
	objs, err := ReadObjects(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func generate(t *testing.T) *Bundle {
	t.Helper()
	b, err := Generate(manifests(t), Options{
		Version: testVersion, Image: testImage, Package: "dockyard",
		Channels: []string{"alpha"}, DefaultChannel: "alpha", MinKubeVersion: DefaultMinKubeVersion,
	})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return b
}

func decode(t *testing.T, b *Bundle, path string) map[string]any {
	t.Helper()
	data, ok := b.Files[path]
	if !ok {
		t.Fatalf("bundle has no %s; files: %v", path, keys(b.Files))
	}
	var obj map[string]any
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return obj
}

func TestCSV(t *testing.T) {
	b := generate(t)
	csv := decode(t, b, "manifests/dockyard.clusterserviceversion.yaml")

	for field, want := range map[string]string{
		"apiVersion":                          "operators.coreos.com/v1alpha1",
		"kind":                                "ClusterServiceVersion",
		"metadata.name":                       "dockyard.v" + testVersion,
		"spec.version":                        testVersion,
		"spec.install.strategy":               "deployment",
		"spec.minKubeVersion":                 DefaultMinKubeVersion,
		"metadata.annotations.containerImage": testImage,
	} {
		if got := nestedString(csv, strings.Split(field, ".")...); got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}

	t.Run("deployment", func(t *testing.T) {
		deps, _, _ := unstructured.NestedSlice(csv, "spec", "install", "spec", "deployments")
		if len(deps) != 1 {
			t.Fatalf("deployments: got %d, want 1", len(deps))
		}
		d := deps[0].(map[string]any)
		if d["name"] != "dockyard-controller-manager" {
			t.Errorf("deployment name = %v, want dockyard-controller-manager", d["name"])
		}
		pod, _, _ := unstructured.NestedMap(d, "spec", "template", "spec")
		if pod["serviceAccountName"] != "dockyard-controller-manager" {
			t.Errorf("serviceAccountName = %v", pod["serviceAccountName"])
		}
		c := pod["containers"].([]any)[0].(map[string]any)
		if c["image"] != testImage {
			t.Errorf("manager image = %v, want %s", c["image"], testImage)
		}
		if got := strings.Join(toStrings(c["args"]), " "); !strings.HasPrefix(got, "manager ") || !strings.Contains(got, "--leader-elect") {
			t.Errorf("manager args = %q", got)
		}
		env := map[string]any{}
		for _, e := range c["env"].([]any) {
			em := e.(map[string]any)
			env[em["name"].(string)] = em["value"]
		}
		if env["DOCKYARD_IMAGE"] != testImage {
			t.Errorf("DOCKYARD_IMAGE = %v, want the operator image %s", env["DOCKYARD_IMAGE"], testImage)
		}
		sc, _ := c["securityContext"].(map[string]any)
		if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
			t.Errorf("manager securityContext is not restricted: %v", sc)
		}
	})

	t.Run("owned CRDs", func(t *testing.T) {
		owned, _, _ := unstructured.NestedSlice(csv, "spec", "customresourcedefinitions", "owned")
		var found bool
		for _, o := range owned {
			om := o.(map[string]any)
			if om["name"] == "registries.registry.dockyard.dev" && om["version"] == "v1alpha1" && om["kind"] == "Registry" {
				found = true
				if om["displayName"] == "" || om["description"] == "" {
					t.Errorf("owned Registry lacks displayName or description: %v", om)
				}
			}
		}
		if !found {
			t.Errorf("owned CRDs %v lack registries.registry.dockyard.dev v1alpha1 Registry", owned)
		}
		if _, ok := b.Files["manifests/registry.dockyard.dev_registries.yaml"]; !ok {
			t.Errorf("no CRD file manifests/registry.dockyard.dev_registries.yaml; files: %v", keys(b.Files))
		}
	})

	t.Run("permissions", func(t *testing.T) {
		for _, field := range []string{"permissions", "clusterPermissions"} {
			perms, _, _ := unstructured.NestedSlice(csv, "spec", "install", "spec", field)
			if len(perms) == 0 {
				t.Errorf("%s: none", field)
				continue
			}
			for _, p := range perms {
				pm := p.(map[string]any)
				if pm["serviceAccountName"] != "dockyard-controller-manager" {
					t.Errorf("%s for %v, want the manager's service account", field, pm["serviceAccountName"])
				}
				rules := pm["rules"].([]any)
				if len(rules) == 0 {
					t.Errorf("%s: no rules", field)
				}
				for _, r := range rules {
					rm := r.(map[string]any)
					for _, k := range []string{"apiGroups", "resources", "verbs"} {
						for _, v := range toStrings(rm[k]) {
							if v == "*" {
								t.Errorf("%s: wildcard %s in rule %v", field, k, rm)
							}
						}
					}
				}
			}
		}
		perms, _, _ := unstructured.NestedSlice(csv, "spec", "install", "spec", "permissions")
		if !strings.Contains(toJSON(t, perms), "leases") {
			t.Errorf("namespaced permissions lack leader-election leases: %s", toJSON(t, perms))
		}
		cperms, _, _ := unstructured.NestedSlice(csv, "spec", "install", "spec", "clusterPermissions")
		if !strings.Contains(toJSON(t, cperms), "registries/status") {
			t.Errorf("cluster permissions lack registries/status: %s", toJSON(t, cperms))
		}
	})

	t.Run("install modes", func(t *testing.T) {
		modes, _, _ := unstructured.NestedSlice(csv, "spec", "installModes")
		supported := map[string]bool{}
		for _, m := range modes {
			mm := m.(map[string]any)
			supported[mm["type"].(string)] = mm["supported"].(bool)
		}
		if len(supported) != 4 || !supported["AllNamespaces"] {
			t.Errorf("installModes = %v, want all four with AllNamespaces supported", supported)
		}
	})

	t.Run("alm-examples", func(t *testing.T) {
		var examples []map[string]any
		if err := json.Unmarshal([]byte(nestedString(csv, "metadata", "annotations", "alm-examples")), &examples); err != nil {
			t.Fatalf("alm-examples is not a JSON array: %v", err)
		}
		var registries int
		for _, e := range examples {
			if e["apiVersion"] == "registry.dockyard.dev/v1alpha1" && e["kind"] == "Registry" {
				registries++
				if nestedString(e, "metadata", "namespace") != "" {
					t.Errorf("example %s carries a namespace", nestedString(e, "metadata", "name"))
				}
			}
		}
		if registries == 0 {
			t.Errorf("alm-examples has no Registry: %v", examples)
		}
	})
}

func TestExtraObjects(t *testing.T) {
	b := generate(t)
	for path := range b.Files {
		obj := decode(t, b, path)
		switch groupKind(obj) {
		case "Namespace", "ServiceAccount", "RoleBinding." + rbacGroup, "ClusterRoleBinding." + rbacGroup:
			t.Errorf("%s: OLM creates %s itself; it must not be in the bundle", path, kindOf(obj))
		case "ClusterRole." + rbacGroup:
			if name(obj) == "dockyard-manager" {
				t.Errorf("%s: the manager's ClusterRole belongs in clusterPermissions", path)
			}
		}
		if nestedString(obj, "metadata", "namespace") != "" {
			t.Errorf("%s: namespaced bundle objects must not set a namespace", path)
		}
	}
	for _, want := range []string{
		"manifests/dockyard-controller-manager-metrics_v1_service.yaml",
		"manifests/dockyard-registry-viewer_rbac.authorization.k8s.io_v1_clusterrole.yaml",
		"manifests/dockyard-registry-editor_rbac.authorization.k8s.io_v1_clusterrole.yaml",
	} {
		if _, ok := b.Files[want]; !ok {
			t.Errorf("bundle lacks %s; files: %v", want, keys(b.Files))
		}
	}
}

func TestAnnotationsAndDockerfile(t *testing.T) {
	b := generate(t)
	ann := decode(t, b, "metadata/annotations.yaml")
	want := map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1":       "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1":       "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":        "metadata/",
		"operators.operatorframework.io.bundle.package.v1":         "dockyard",
		"operators.operatorframework.io.bundle.channels.v1":        "alpha",
		"operators.operatorframework.io.bundle.channel.default.v1": "alpha",
	}
	got, _, _ := unstructured.NestedStringMap(ann, "annotations")
	if len(got) != len(want) {
		t.Errorf("annotations = %v, want %v", got, want)
	}
	df := string(Dockerfile(b.Annotations, "bundle"))
	for k, v := range want {
		if got[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, got[k], v)
		}
		if !strings.Contains(df, "LABEL "+k+"="+v+"\n") {
			t.Errorf("Dockerfile lacks LABEL %s=%s:\n%s", k, v, df)
		}
	}
	for _, line := range []string{"FROM scratch\n", "COPY bundle/manifests /manifests/\n", "COPY bundle/metadata /metadata/\n"} {
		if !strings.Contains(df, line) {
			t.Errorf("Dockerfile lacks %q:\n%s", line, df)
		}
	}
}

// TestCommittedBundle keeps the root bundle.Dockerfile in step with the generator.
func TestCommittedBundle(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "bundle.Dockerfile"))
	if err != nil {
		t.Skipf("no bundle.Dockerfile: %v", err)
	}
	if want := Dockerfile(generate(t).Annotations, "bundle"); !bytes.Equal(data, want) {
		t.Errorf("bundle.Dockerfile is stale; run make bundle. got:\n%s\nwant:\n%s", data, want)
	}
}

func TestRunWritesFiles(t *testing.T) {
	if _, err := os.Stat(filepath.Join("testdata", "manifests.yaml")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stale := filepath.Join(dir, "bundle", "manifests", "stale.yaml")
	if err := writeFile(stale, []byte("x")); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(filepath.Join("testdata", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	oldStdin := os.Stdin
	os.Stdin = in
	defer func() { os.Stdin = oldStdin }()
	if err := run([]string{"--out", filepath.Join(dir, "bundle"), "--version", testVersion, "--image", testImage, "--dockerfile", filepath.Join(dir, "bundle.Dockerfile")}); err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale file survived regeneration: %v", err)
	}
	for _, f := range []string{"bundle/manifests/dockyard.clusterserviceversion.yaml", "bundle/manifests/registry.dockyard.dev_registries.yaml", "bundle/metadata/annotations.yaml", "bundle.Dockerfile"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
}

func TestGenerateRejects(t *testing.T) {
	objs := manifests(t)
	opts := func(mut func(*Options)) Options {
		o := Options{Version: testVersion, Package: "dockyard", Channels: []string{"alpha"}, DefaultChannel: "alpha"}
		mut(&o)
		return o
	}
	without := func(gk string) []Object {
		var out []Object
		for _, o := range objs {
			if groupKind(o) != gk {
				out = append(out, o)
			}
		}
		return out
	}
	for name, tc := range map[string]struct {
		objs []Object
		o    Options
	}{
		"no version":              {objs, opts(func(o *Options) { o.Version = "" })},
		"v-prefixed version":      {objs, opts(func(o *Options) { o.Version = "v0.1.0" })},
		"unknown default channel": {objs, opts(func(o *Options) { o.DefaultChannel = "stable" })},
		"no CRD":                  {without("CustomResourceDefinition.apiextensions.k8s.io"), opts(func(*Options) {})},
		"no Deployment":           {without("Deployment.apps"), opts(func(*Options) {})},
		"no samples":              {without("Registry.registry.dockyard.dev"), opts(func(*Options) {})},
		"dangling binding":        {without("Role." + rbacGroup), opts(func(*Options) {})},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Generate(tc.objs, tc.o); err == nil {
				t.Error("Generate succeeded, want an error")
			}
		})
	}
}

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{
		"Registry":        "Registry",
		"RetentionPolicy": "Retention Policy",
		"ReplicationRule": "Replication Rule",
		"OCIMirror":       "OCI Mirror",
	} {
		if got := displayName(in); got != want {
			t.Errorf("displayName(%q) = %q, want %q", in, got, want)
		}
	}
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
