package controller

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// emitTransitionEvents records an Event when something a person can act on changes: a
// dependency condition turns False, the Registry becomes Ready, a GC run finishes, the
// certificate is renewed, a pod stops being ready outside a rollout. Events follow status
// transitions only, so a steady state emits none.
func (r *RegistryReconciler) emitTransitionEvents(reg *v1alpha1.Registry, deployment *appsv1.Deployment, before, after *v1alpha1.RegistryStatus) {
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
	if b, a := before.Certificate, after.Certificate; b != nil && a != nil && a.Revision > b.Revision && a.NotAfter != nil {
		r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "CertificateRenewed", "RenewCertificate",
			"cert-manager issued certificate revision %d, valid until %s; the pods serve it without a restart",
			a.Revision, a.NotAfter.UTC().Format(time.RFC3339))
	}
	if after.ReadyReplicas < before.ReadyReplicas && after.ReadyReplicas < reg.GetReplicas() && steady(deployment, reg.GetReplicas()) {
		r.Recorder.Eventf(reg, nil, corev1.EventTypeWarning, "ReplicaNotReady", "Observe",
			"ready registry pods fell from %d to %d of %d outside a rollout: a pod fails its readiness check (storage unreachable, or shutting down); "+
				"kubectl get pods -l %s=%s shows which, and the pod's events say why",
			before.ReadyReplicas, after.ReadyReplicas, reg.GetReplicas(), resources.LabelInstance, reg.Name)
	}
	if b := after.LastBackup; b != nil && (before.LastBackup == nil || before.LastBackup.JobName != b.JobName) {
		if b.Result == registryconfig.GCResultFailed {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeWarning, "BackupFailed", "Backup", "job %s failed: %s", b.JobName, b.Message)
		} else {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "BackupSucceeded", "Backup", "job %s wrote backup %s: %d manifests, %d bytes (%d copied)",
				b.JobName, b.Backup, b.Manifests, b.Bytes, b.BytesCopied)
		}
	}
	if rs := after.Restore; rs != nil && rs.Result != "" && (before.Restore == nil || before.Restore.Result != rs.Result || before.Restore.JobName != rs.JobName) {
		if rs.Result == registryconfig.GCResultFailed {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeWarning, v1alpha1.ReasonRestoreFailed, "Restore", "job %s failed: %s", rs.JobName, rs.Message)
		} else {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "Restored", "Restore", "job %s restored backup %s: %d repositories, %d tags, %d manifests",
				rs.JobName, rs.Backup, rs.Repositories, rs.Tags, rs.Manifests)
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

// steady is true when the Deployment is not rolling: every pod runs the current spec and
// no old pod is left, so a pod that turns unready is failing, not being replaced.
func steady(d *appsv1.Deployment, want int32) bool {
	if d == nil {
		return false
	}
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.Replicas == want
}
