package registry

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// PersistentVolumeClaim is the data volume (filesystem storage); nil for other backends.
// With deletionPolicy Retain it carries no owner reference, so deleting the Registry
// leaves it (and the images) in place; with Delete the Registry owns it and Kubernetes'
// garbage collector removes it with the Registry. Switching the policy adds or removes the
// reference on the next reconcile.
func PersistentVolumeClaim(reg *v1alpha1.Registry) *corev1.PersistentVolumeClaim {
	fs := reg.Spec.Storage.Filesystem
	if fs == nil {
		return nil
	}
	meta := objectMeta(reg, reg.PVCName(), ComponentServer)
	if reg.Spec.DeletionPolicy != v1alpha1.DeletionPolicyDelete {
		meta.OwnerReferences = nil
	}
	return &corev1.PersistentVolumeClaim{
		TypeMeta:   typeMeta("v1", "PersistentVolumeClaim"),
		ObjectMeta: meta,
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      fs.GetAccessModes(),
			StorageClassName: fs.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: fs.Size},
			},
		},
	}
}

// IsOwnedBy reports whether obj carries a controller reference to reg.
func IsOwnedBy(obj metav1.Object, reg *v1alpha1.Registry) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == reg.UID && ref.Controller != nil && *ref.Controller {
			return true
		}
	}
	return false
}
