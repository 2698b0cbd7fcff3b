package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// TestSamplesPassValidation creates every config/samples object (the bundle's alm-examples)
// in a real kube-apiserver with the generated CRD, so a sample the OpenAPI schema or a CEL
// rule rejects fails here rather than in a user's first `kubectl apply`.
// It needs KUBEBUILDER_ASSETS (make test sets it).
func TestSamplesPassValidation(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: run make test, which builds kube-apiserver and etcd into bin/envtest")
	}
	root := filepath.Join("..", "..")
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
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
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}

	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
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
