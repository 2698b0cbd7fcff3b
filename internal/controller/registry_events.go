package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// emitTransitionEvents records an Event when something a person can act on changes: a
// dependency condition turns False, the Registry becomes Ready, a GC run finishes. Events
// follow status transitions only, so a steady state emits none.
func (r *RegistryReconciler) emitTransitionEvents(reg *v1alpha1.Registry, before, after *v1alpha1.RegistryStatus) {
	if r.Recorder == nil {
		return
	}
	for _, t := range []string{v1alpha1.ConditionStorageReady, v1alpha1.ConditionCertificateReady, v1alpha1.ConditionAuthReady, v1alpha1.ConditionDegraded} {
		now := meta.FindStatusCondition(after.Conditions, t)
		if now == nil || !changed(meta.FindStatusCondition(before.Conditions, t), now) {
			continue
		}
		bad := now.Status == metav1.ConditionFalse
		if t == v1alpha1.ConditionDegraded {
			bad = now.Status == metav1.ConditionTrue
		}
		if bad && now.Reason != v1alpha1.ReasonVolumePending && now.Reason != v1alpha1.ReasonGarbageCollectionFailed {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
		}
	}
	if now := meta.FindStatusCondition(after.Conditions, v1alpha1.ConditionReady); now != nil && now.Status == metav1.ConditionTrue {
		if old := meta.FindStatusCondition(before.Conditions, v1alpha1.ConditionReady); old == nil || old.Status != metav1.ConditionTrue {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "RegistryReady", "Reconcile", "%s", now.Message)
		}
	}
	if gc := after.LastGarbageCollection; gc != nil && (before.LastGarbageCollection == nil || before.LastGarbageCollection.JobName != gc.JobName) {
		if gc.Result == registryconfig.GCResultFailed {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeWarning, "GarbageCollectionFailed", "GarbageCollect", "job %s failed: %s", gc.JobName, gc.Message)
		} else {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "GarbageCollectionSucceeded", "GarbageCollect", "job %s deleted %d blobs and %d manifests, freeing %d bytes", gc.JobName, gc.BlobsDeleted, gc.ManifestsDeleted, gc.BytesFreed)
		}
	}
}

func changed(old, now *metav1.Condition) bool {
	return old == nil || old.Status != now.Status || old.Reason != now.Reason
}
