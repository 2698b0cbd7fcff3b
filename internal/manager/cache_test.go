package manager

import (
	"fmt"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

func TestSlimForCacheKeepsWhatControllersRead(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "r", Namespace: "ns", Generation: 4, ResourceVersion: "7",
		Labels:          map[string]string{resources.LabelInstance: "r"},
		OwnerReferences: []metav1.OwnerReference{{Name: "r", UID: "u"}},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "dockyard"}}}
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "registry", Image: "dockyard"}}}}
	two := int32(2)
	dep := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &two, Template: tmpl},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 4, ReadyReplicas: 2}}
	out, err := SlimForCache(dep)
	if err != nil {
		t.Fatal(err)
	}
	d := out.(*appsv1.Deployment)
	if d.ManagedFields != nil || len(d.Spec.Template.Spec.Containers) != 0 {
		t.Error("managedFields or the pod template survived")
	}
	if d.ResourceVersion != "7" || d.Generation != 4 || len(d.OwnerReferences) != 1 || d.Labels[resources.LabelInstance] != "r" ||
		d.Status.ReadyReplicas != 2 || *d.Spec.Replicas != 2 {
		t.Errorf("what the controllers read was lost: %+v", d)
	}

	cm, _ := SlimForCache(&corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"config.yaml": "x"}})
	if c := cm.(*corev1.ConfigMap); c.Data != nil || c.ResourceVersion != "7" {
		t.Errorf("ConfigMap = %+v", c)
	}
	cj, _ := SlimForCache(&batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{Schedule: "@daily",
		JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}})
	if c := cj.(*batchv1.CronJob); len(c.Spec.JobTemplate.Spec.Template.Spec.Containers) != 0 || c.Spec.Schedule != "@daily" {
		t.Errorf("CronJob = %+v", c.Spec)
	}
	job, _ := SlimForCache(&batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}})
	if j := job.(*batchv1.Job); len(j.Spec.Template.Spec.Containers) != 0 || len(j.Status.Conditions) != 1 {
		t.Errorf("Job = %+v", j)
	}
	// Secrets are cached as metadata only; their metadata keeps its labels.
	pm, _ := SlimForCache(&metav1.PartialObjectMetadata{ObjectMeta: meta})
	if p := pm.(*metav1.PartialObjectMetadata); p.ManagedFields != nil || p.Labels == nil {
		t.Errorf("metadata = %+v", p.ObjectMeta)
	}
}

// TestEveryChildKindIsCachedByLabel: the informers of the kinds the operator writes see
// only objects it labelled, so its memory does not grow with the cluster's other objects.
func TestEveryChildKindIsCachedByLabel(t *testing.T) {
	opts := CacheOptions(true, true)
	for _, obj := range []client.Object{&appsv1.Deployment{}, &appsv1.DaemonSet{}, &corev1.Service{}, &corev1.ConfigMap{},
		&corev1.PersistentVolumeClaim{}, &batchv1.CronJob{}, &batchv1.Job{}, &monitoringv1.PodMonitor{}, &monitoringv1.PrometheusRule{}} {
		found := false
		for k, by := range opts.ByObject {
			if fmt.Sprintf("%T", k) == fmt.Sprintf("%T", obj) {
				found = by.Label != nil && !by.Label.Empty()
			}
		}
		if !found {
			t.Errorf("%T is cached without a label selector", obj)
		}
	}
	if opts.DefaultTransform == nil {
		t.Error("no cache transform")
	}
}

func TestMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"268435456\n":         241591910, // 256Mi → 90%
		"max\n":               0,
		"9223372036854771712": 0, // cgroup v1 without a limit
		"":                    0,
		"-1":                  0,
	} {
		if got := memoryLimit(in); got != want {
			t.Errorf("memoryLimit(%q) = %d, want %d", in, got, want)
		}
	}
}
