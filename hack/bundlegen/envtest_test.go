package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// These tests put config/ through a real kube-apiserver (envtest) with the generated CRD.
// They need KUBEBUILDER_ASSETS (make test sets it) and skip without it.

// warnings collects the API server's warning headers (PodSecurity "would violate" and
// deprecation notices).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

func startAPIServer(t *testing.T) (client.Client, *warnings) {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: run make test, which builds kube-apiserver and etcd into bin/envtest")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	w := &warnings{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

// TestSamplesPassValidation creates every config/samples object (the bundle's alm-examples),
// so a sample the OpenAPI schema or a CEL rule rejects fails here rather than in a user's
// first `kubectl apply`.
func TestSamplesPassValidation(t *testing.T) {
	c, _ := startAPIServer(t)
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := ReadObjects(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, obj := range objs {
			n++
			u := &unstructured.Unstructured{Object: obj}
			u.SetNamespace("default")
			t.Run(filepath.Base(f)+"/"+u.GetName(), func(t *testing.T) {
				if err := c.Create(context.Background(), u); err != nil {
					t.Errorf("the API server rejects %s: %v", filepath.Base(f), err)
				}
			})
		}
	}
	if n == 0 {
		t.Fatal("no samples in config/samples")
	}
}

// TestDefaultConfigApplies creates everything `make deploy` applies (kustomize build
// config/default, with bin/kustomize-*) and checks that the API server accepts it and
// that the manager Deployment raises no warning in its namespace, whose labels ask
// PodSecurity to warn about anything the restricted standard forbids.
func TestDefaultConfigApplies(t *testing.T) {
	bins, _ := filepath.Glob(filepath.Join("..", "..", "bin", "kustomize-v*"))
	if len(bins) == 0 {
		t.Skip("no bin/kustomize-* built")
	}
	c, w := startAPIServer(t)
	sort.Strings(bins)
	out, err := exec.Command(bins[len(bins)-1], "build", filepath.Join("..", "..", "config", "default")).Output()
	if err != nil {
		t.Fatalf("kustomize build config/default: %v", err)
	}
	objs, err := ReadObjects(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	// Namespaces first, as kubectl would order them.
	sort.SliceStable(objs, func(i, j int) bool { return kindOf(objs[i]) == "Namespace" && kindOf(objs[j]) != "Namespace" })
	ctx := context.Background()
	for _, obj := range objs {
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() == "CustomResourceDefinition" {
			continue // envtest installed it from the same bases
		}
		w.take()
		if err := c.Create(ctx, u); err != nil {
			t.Errorf("create %s %s: %v", u.GetKind(), u.GetName(), err)
			continue
		}
		if msgs := w.take(); len(msgs) > 0 {
			t.Errorf("create %s %s: API server warnings:\n%s", u.GetKind(), u.GetName(), strings.Join(msgs, "\n"))
		}
	}
}
