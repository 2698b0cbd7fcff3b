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
		if os.Getenv("DOCKYARD_REQUIRE_CLIENTS") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is unset")
		}
		t.Skip("KUBEBUILDER_ASSETS is unset: run make test, which builds kube-apiserver and etcd")
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

// TestDefaultConfigApplies creates everything `make deploy` applies (kustomize build
// config/default, with bin/kustomize-*) and checks that the API server accepts it and
// that the manager Deployment raises no warning in its namespace, whose labels ask
// PodSecurity to warn about anything the restricted standard forbids.
func TestDefaultConfigApplies(t *testing.T) {
	bins, _ := filepath.Glob(filepath.Join("..", "..", "bin", "kustomize-v*"))
	if len(bins) == 0 {
		if os.Getenv("DOCKYARD_REQUIRE_CLIENTS") != "" {
			t.Fatal("no bin/kustomize-* built (make test builds it)")
		}
		t.Skip("no bin/kustomize-* built (make test builds it)")
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
