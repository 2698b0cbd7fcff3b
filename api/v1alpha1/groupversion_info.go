// Package v1alpha1 contains the Dockyard API: Registry (and, later, RetentionPolicy and
// ReplicationRule) in the registry.dockyard.dev group.
// +kubebuilder:object:generate=true
// +groupName=registry.dockyard.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of these objects.
	GroupVersion = schema.GroupVersion{Group: "registry.dockyard.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types in this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Registry{}, &RegistryList{}, &RetentionPolicy{}, &RetentionPolicyList{}, &ReplicationRule{}, &ReplicationRuleList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
