package registry

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// ServiceAccount is the identity of the registry pods (no API token is mounted; cloud
// workload identity annotations can be added to it by the user).
func ServiceAccount(reg *v1alpha1.Registry) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     typeMeta("v1", "ServiceAccount"),
		ObjectMeta:                   objectMeta(reg, reg.ServiceName(), ComponentServer),
		AutomountServiceAccountToken: ptr(false),
	}
}

// Service exposes the registry API port. The metrics port is scraped from the pods.
func Service(reg *v1alpha1.Registry) *corev1.Service {
	s := &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: objectMeta(reg, reg.ServiceName(), ComponentServer),
		Spec: corev1.ServiceSpec{
			Type:     reg.ServiceType(),
			Selector: SelectorLabels(reg),
			Ports: []corev1.ServicePort{{
				Name:        PortName,
				Port:        reg.ServicePort(),
				TargetPort:  intstr.FromString(PortName),
				Protocol:    corev1.ProtocolTCP,
				AppProtocol: ptr(reg.Scheme()),
			}},
		},
	}
	if reg.Spec.Service != nil && len(reg.Spec.Service.Annotations) > 0 {
		s.Annotations = reg.Spec.Service.Annotations
	}
	return s
}

// PodDisruptionBudget keeps all but one replica up during voluntary disruptions; nil
// when there is at most one replica (a budget would block node drains).
func PodDisruptionBudget(reg *v1alpha1.Registry) *policyv1.PodDisruptionBudget {
	if reg.GetReplicas() <= 1 {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
		ObjectMeta: objectMeta(reg, reg.ServiceName(), ComponentServer),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: SelectorLabels(reg)},
		},
	}
}

// NetworkPolicy admits only the listed peers to the registry and metrics ports; nil
// unless spec.networkPolicy is set. A rule is emitted only for a non-empty peer list,
// because a rule without peers would admit everyone.
func NetworkPolicy(reg *v1alpha1.Registry) *networkingv1.NetworkPolicy {
	np := reg.Spec.NetworkPolicy
	if np == nil {
		return nil
	}
	tcp := corev1.ProtocolTCP
	var rules []networkingv1.NetworkPolicyIngressRule
	if len(np.From) > 0 {
		rules = append(rules, networkingv1.NetworkPolicyIngressRule{
			From:  np.From,
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromInt32(registryconfig.DefaultPort))}},
		})
	}
	if reg.Spec.Scanning != nil {
		// The Registry's own scanner pulls images and stores reports.
		rules = append(rules, networkingv1.NetworkPolicyIngressRule{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: ScannerSelectorLabels(reg)}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromInt32(registryconfig.DefaultPort))}},
		})
	}
	if len(np.MetricsFrom) > 0 {
		rules = append(rules, networkingv1.NetworkPolicyIngressRule{
			From:  np.MetricsFrom,
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromInt32(registryconfig.MetricsPort))}},
		})
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   typeMeta("networking.k8s.io/v1", "NetworkPolicy"),
		ObjectMeta: objectMeta(reg, reg.ServiceName(), ComponentServer),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: SelectorLabels(reg)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     rules,
		},
	}
}

// Ingress routes spec.ingress.host to the Service; nil unless spec.ingress is set.
func Ingress(reg *v1alpha1.Registry) *networkingv1.Ingress {
	spec := reg.Spec.Ingress
	if spec == nil {
		return nil
	}
	prefix := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{
		TypeMeta:   typeMeta("networking.k8s.io/v1", "Ingress"),
		ObjectMeta: objectMeta(reg, reg.ServiceName(), ComponentServer),
		Spec: networkingv1.IngressSpec{
			IngressClassName: spec.ClassName,
			Rules: []networkingv1.IngressRule{{
				Host: spec.Host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path:     "/",
						PathType: &prefix,
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: reg.ServiceName(),
							Port: networkingv1.ServiceBackendPort{Name: PortName},
						}},
					}},
				}},
			}},
		},
	}
	if len(spec.Annotations) > 0 {
		ing.Annotations = spec.Annotations
	}
	secret := spec.TLSSecretName
	if secret == "" {
		secret = reg.TLSSecretName()
	}
	if secret != "" {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{spec.Host}, SecretName: secret}}
	}
	return ing
}
