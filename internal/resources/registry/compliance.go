package registry

import (
	"encoding/json"
	"fmt"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// CompliancePolicy is reg's spec.scanning.policy (which must be set) as its judges read
// it, with the scanner's public key (PEM; nil before the scanner has one).
func CompliancePolicy(reg *v1alpha1.Registry, scannerKeys []byte) registryconfig.CompliancePolicy {
	p := reg.Spec.Scanning.Policy
	out := registryconfig.CompliancePolicy{
		Severity:       p.Severity,
		FixableOnly:    p.FixableOnly,
		BlockUnscanned: p.Unscanned == v1alpha1.UnscannedDeny,
		ScannerKeys:    string(scannerKeys),
		ExemptionHint:  fmt.Sprintf("spec.scanning.policy.exemptions of Registry %s/%s", reg.Namespace, reg.Name),
	}
	for _, e := range p.Exemptions {
		out.Exemptions = append(out.Exemptions, registryconfig.ComplianceExemption{ID: e.ID, Reason: e.Reason,
			Expires: e.Expires.UTC(), Repositories: e.Repositories})
	}
	if p.Signatures != nil {
		out.SignatureKeys = p.Signatures.PublicKeys
	}
	return out
}

// RefusesPulls reports whether reg's registry refuses non-compliant pulls itself
// (spec.scanning.policy.pullAction: Deny).
func RefusesPulls(reg *v1alpha1.Registry) bool {
	s := reg.Spec.Scanning
	return s != nil && s.Policy != nil && s.Policy.PullAction == v1alpha1.PullDeny
}

// complianceConfig is the config's compliance section: set when the registry refuses
// pulls. The policy itself is a separate key of the ConfigMap, read live.
func complianceConfig(reg *v1alpha1.Registry) *registryconfig.Compliance {
	if !RefusesPulls(reg) {
		return nil
	}
	return &registryconfig.Compliance{PolicyFile: registryconfig.ConfigDir + "/" + registryconfig.ComplianceFileName}
}

// ComplianceFile renders the policy file of a registry that refuses pulls (nil otherwise).
func ComplianceFile(reg *v1alpha1.Registry, scannerKeys []byte) ([]byte, error) {
	if !RefusesPulls(reg) {
		return nil, nil
	}
	return json.MarshalIndent(CompliancePolicy(reg, scannerKeys), "", "  ")
}
