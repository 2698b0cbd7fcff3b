// Package ssa applies child objects with server-side apply under one field owner, and
// skips requests that cannot change anything.
//
// A server-side apply of an unchanged object is still an API write request. Applier
// remembers, per object, the digest of what it last applied and the resourceVersion the
// server answered with; when the desired object digests the same and the object in the
// cache still has that resourceVersion, nobody (neither we nor anyone else) changed it
// since, so the request is skipped. Any foreign edit bumps the resourceVersion and the next
// reconcile re-applies, restoring our fields.
package ssa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Applier applies objects as FieldOwner with forced ownership.
type Applier struct {
	Client     client.Client
	FieldOwner string

	mu   sync.Mutex
	last map[string]string // object key -> digest/resourceVersion after our last apply
}

// NewApplier returns an Applier writing through c as fieldOwner.
func NewApplier(c client.Client, fieldOwner string) *Applier {
	return &Applier{Client: c, FieldOwner: fieldOwner, last: map[string]string{}}
}

// Apply makes the server's object match desired for the fields we own. currentRV is the
// resourceVersion of the object as the cache sees it ("" when absent). It returns whether a
// request was sent. desired must carry apiVersion and kind.
func (a *Applier) Apply(ctx context.Context, desired client.Object, currentRV string) (bool, error) {
	gvk := desired.GetObjectKind().GroupVersionKind()
	if gvk.Empty() {
		return false, fmt.Errorf("apply %T %s/%s: apiVersion and kind are required", desired, desired.GetNamespace(), desired.GetName())
	}
	u, err := toUnstructured(desired)
	if err != nil {
		return false, fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, desired.GetNamespace(), desired.GetName(), err)
	}
	digest, err := digestOf(u)
	if err != nil {
		return false, err
	}
	key := objectKey(gvk, desired)
	if currentRV != "" && a.lookup(key) == digest+"/"+currentRV {
		return false, nil
	}
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(a.FieldOwner), client.ForceOwnership); err != nil {
		a.Forget(gvk, desired)
		return true, fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, desired.GetNamespace(), desired.GetName(), err)
	}
	a.remember(key, digest+"/"+u.GetResourceVersion())
	return true, nil
}

// Forget drops what Applier remembers of an object (after deleting it).
func (a *Applier) Forget(gvk schema.GroupVersionKind, obj client.Object) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.last, objectKey(gvk, obj))
}

func (a *Applier) lookup(key string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last[key]
}

func (a *Applier) remember(key, v string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last[key] = v
}

func objectKey(gvk schema.GroupVersionKind, obj client.Object) string {
	return gvk.String() + "|" + obj.GetNamespace() + "/" + obj.GetName()
}

// toUnstructured converts a typed object into the body of an apply request: no status, no
// server-populated metadata, no zero-valued creationTimestamp.
func toUnstructured(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		for _, f := range []string{"creationTimestamp", "resourceVersion", "uid", "generation", "managedFields"} {
			delete(md, f)
		}
	}
	// Nested pod templates carry a creationTimestamp: null too.
	stripNullTimestamps(m)
	return &unstructured.Unstructured{Object: m}, nil
}

func stripNullTimestamps(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if k == "creationTimestamp" && child == nil {
				delete(t, k)
				continue
			}
			stripNullTimestamps(child)
		}
	case []any:
		for _, child := range t {
			stripNullTimestamps(child)
		}
	}
}

func digestOf(u *unstructured.Unstructured) (string, error) {
	b, err := json.Marshal(u.Object) // map keys are sorted: stable
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", u.GetName(), err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}
