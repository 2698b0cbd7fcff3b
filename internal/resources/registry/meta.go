package registry

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// Label keys and values on every child object.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelRegistry names the owning Registry; the operator's caches select on
	// LabelManagedBy and map events back with LabelRegistry.
	LabelRegistry = "registry.dockyard.dev/registry"

	AppName          = "dockyard-registry"
	ManagedBy        = "dockyard"
	ComponentServer  = "registry"
	ComponentGC      = "garbage-collector"
	ContainerName    = "registry"
	GCContainerName  = "gc"
	PortName         = "registry"
	MetricsPortName  = "metrics"
	AnnotationInputs = "registry.dockyard.dev/inputs-hash"
)

// Inputs are what the builders need besides the Registry: facts the controller observed or
// was configured with.
type Inputs struct {
	// Image is the dockyard image used when spec.image is empty.
	Image string
	// ClusterDomain is the cluster's DNS domain (cluster.local).
	ClusterDomain string
	// InputsHash digests what the pods read only at start (rendered config, storage
	// credentials, the HTTP secret); it is written on the pod template so a change rolls
	// the pods. The certificate and the users Secret are reloaded live instead.
	InputsHash string
	// UsersHaveGroups is true when the users Secret has a groups key.
	UsersHaveGroups bool
	// EventsURL is the operator's events endpoint; empty: the registry sends no events.
	EventsURL string
}

// Labels are the labels of every child of reg for component.
func Labels(reg *v1alpha1.Registry, component string) map[string]string {
	return map[string]string{
		LabelName:      AppName,
		LabelInstance:  reg.Name,
		LabelComponent: component,
		LabelManagedBy: ManagedBy,
		LabelRegistry:  reg.Name,
	}
}

// SelectorLabels select the registry pods of reg. They never change after creation
// (a Deployment's selector is immutable).
func SelectorLabels(reg *v1alpha1.Registry) map[string]string {
	return map[string]string{
		LabelName:      AppName,
		LabelInstance:  reg.Name,
		LabelComponent: ComponentServer,
	}
}

func objectMeta(reg *v1alpha1.Registry, name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       reg.Namespace,
		Labels:          Labels(reg, component),
		OwnerReferences: []metav1.OwnerReference{ownerRef(reg)},
	}
}

func ownerRef(reg *v1alpha1.Registry) metav1.OwnerReference {
	return *metav1.NewControllerRef(reg, v1alpha1.GroupVersion.WithKind("Registry"))
}

func ptr[T any](v T) *T { return &v }
