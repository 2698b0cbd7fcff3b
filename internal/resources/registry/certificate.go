package registry

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// Certificate asks cert-manager for the serving certificate; nil unless tls.issuerRef is
// set. cert-manager renews it before expiry (with a new private key); kubelet refreshes the
// mounted Secret and the registry serves the new certificate without a restart.
func Certificate(reg *v1alpha1.Registry, in Inputs) *cmapi.Certificate {
	if reg.Spec.TLS == nil || reg.Spec.TLS.IssuerRef == nil {
		return nil
	}
	ref := reg.Spec.TLS.IssuerRef
	kind, group := ref.Kind, ref.Group
	if kind == "" {
		kind = "Issuer"
	}
	if group == "" {
		group = v1alpha1.DefaultIssuerGroup
	}
	return &cmapi.Certificate{
		TypeMeta:   typeMeta("cert-manager.io/v1", "Certificate"),
		ObjectMeta: objectMeta(reg, reg.CertificateName(), ComponentServer),
		Spec: cmapi.CertificateSpec{
			SecretName: reg.CertificateName(),
			SecretTemplate: &cmapi.CertificateSecretTemplate{
				Labels: Labels(reg, ComponentServer),
			},
			DNSNames:  reg.DNSNames(in.ClusterDomain),
			IssuerRef: cmmeta.IssuerReference{Name: ref.Name, Kind: kind, Group: group},
			PrivateKey: &cmapi.CertificatePrivateKey{
				Algorithm:      cmapi.ECDSAKeyAlgorithm,
				Size:           256,
				RotationPolicy: cmapi.RotationPolicyAlways,
			},
			Usages: []cmapi.KeyUsage{cmapi.UsageServerAuth, cmapi.UsageDigitalSignature},
		},
	}
}
