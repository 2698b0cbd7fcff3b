package registryconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ComplianceFileName is the key, in the config ConfigMap (mounted at ConfigDir), of the
// registry's compliance policy as JSON (CompliancePolicy). It is outside the pods' inputs
// hash and re-read when it changes: an exemption added to the policy reaches the registry
// within about a minute (the kubelet's ConfigMap sync) without restarting a pod.
const ComplianceFileName = "compliance.json"

// Compliance is the config section that, when set, makes the registry refuse the manifests of non-compliant images
// to clients outside the cluster (spec.scanning.policy.pullAction: Deny).
type Compliance struct {
	// PolicyFile holds the CompliancePolicy (JSON); re-read when it changes.
	PolicyFile string `json:"policyFile"`
}

// CompliancePolicy is a Registry's spec.scanning.policy as every judge of it reads it
// (the operator's admission webhook and the registry), with the scanner's public keys.
// It holds no secret.
type CompliancePolicy struct {
	// Severity refuses images with a vulnerability at or above it (Critical, High, Medium,
	// Low, Unknown); empty: vulnerabilities refuse nothing.
	Severity string `json:"severity,omitempty"`
	// FixableOnly counts only vulnerabilities with a fixed version.
	FixableOnly bool `json:"fixableOnly,omitempty"`
	// BlockUnscanned refuses images without a report.
	BlockUnscanned bool `json:"blockUnscanned,omitempty"`
	// Exemptions accept vulnerabilities until they expire.
	Exemptions []ComplianceExemption `json:"exemptions,omitempty"`
	// SignatureKeys, when set, require a cosign signature by one of these PEM public keys.
	SignatureKeys []string `json:"signatureKeys,omitempty"`
	// ScannerKeys are the PEM public keys the scanner signs reports with; without one no
	// image counts as scanned.
	ScannerKeys string `json:"scannerKeys,omitempty"`
	// ExemptionHint tells a person where exemptions are added.
	ExemptionHint string `json:"exemptionHint,omitempty"`
}

// ComplianceExemption accepts one vulnerability (ID) until Expires.
type ComplianceExemption struct {
	ID           string    `json:"id"`
	Reason       string    `json:"reason"`
	Expires      time.Time `json:"expires"`
	Repositories []string  `json:"repositories,omitempty"`
}

// maxComplianceFile bounds the policy file a registry reads (256 exemptions of a few
// hundred bytes and 16 keys fit many times over).
const maxComplianceFile = 4 << 20

// ParseCompliancePolicy reads a policy file's content, refusing oversized files. Unknown
// fields are ignored: the operator may be upgraded before the registry pods that read
// the file live (a newer field is then not applied until they are).
func ParseCompliancePolicy(data []byte) (*CompliancePolicy, error) {
	if len(data) > maxComplianceFile {
		return nil, fmt.Errorf("compliance policy: %d bytes, more than %d", len(data), maxComplianceFile)
	}
	if len(data) == 0 {
		return nil, errors.New("compliance policy: empty file")
	}
	var p CompliancePolicy
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("compliance policy: %w", err)
	}
	return &p, nil
}
