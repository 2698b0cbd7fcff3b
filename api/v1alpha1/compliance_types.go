package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CompliancePolicy decides which of the Registry's images may run in the cluster. The
// operator's admission webhook checks every Pod, and the Pod template of every
// Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob, whose image comes from
// this Registry (by any of its host names, with any port: the Service's names, the
// Ingress host, spec.tls.dnsNames; not by IP address): a tag is resolved to its digest,
// the newest report the scanner signed is read, and the policy decides. A refusal names the image, the vulnerabilities
// or the missing signature, and how to get an exemption. The operator's own namespace and
// kube-system, kube-public and kube-node-lease are never checked, nor is spec.scanning.image
// in the Registry's namespace (the scanner must run to scan anything), nor what
// Kubernetes' controllers create from a checked template; a namespace
// labelled dockyard.dev/compliance=ignore is not checked either (a cluster administrator's
// escape hatch, visible on the namespace).
// +kubebuilder:validation:XValidation:rule="has(self.severity) || has(self.signatures) || (has(self.unscanned) && self.unscanned == 'Deny')",message="policy: set severity, signatures or unscanned: Deny (a policy that refuses nothing)"
type CompliancePolicy struct {
	// action is what happens to a non-compliant image: Deny (the default) refuses the
	// object at admission; Warn admits it and returns the same message as a warning
	// (kubectl prints it), to roll a policy out before enforcing it.
	// +kubebuilder:validation:Enum=Deny;Warn
	// +kubebuilder:default=Deny
	// +optional
	Action ComplianceAction `json:"action,omitempty"`

	// pullAction is what the registry itself answers a client outside the cluster that
	// pulls a non-compliant image: Allow (the default) serves it (admission is the gate),
	// Deny refuses the manifest (GET, by tag or digest) with 403 and an OCI DENIED error
	// whose message is the refusal admission gives. Never refused: Managers (whoever may
	// delete in the repository), the pull Secrets the operator writes (the kubelet's pulls,
	// which admission has judged: a rollout or a node restart never breaks), the operator's
	// replicator and the scanner; anonymous pulls, when allowed, are judged. HEAD requests
	// and blobs are served (they reveal a digest, and content whose digest the caller
	// already knows). Signatures, attestations and other artifacts are served unjudged.
	// Needs spec.auth (the exemptions are told apart by their credentials). Policy edits
	// reach the registry pods within about a minute without a restart.
	// +kubebuilder:validation:Enum=Allow;Deny
	// +kubebuilder:default=Allow
	// +optional
	PullAction PullAction `json:"pullAction,omitempty"`

	// severity refuses images with a vulnerability of this severity or a higher one:
	// Critical, High, Medium, Low or Unknown (Unknown refuses any vulnerability). Unset:
	// vulnerabilities do not refuse an image.
	// +kubebuilder:validation:Enum=Critical;High;Medium;Low;Unknown
	// +optional
	Severity string `json:"severity,omitempty"`

	// fixableOnly counts only vulnerabilities that have a fixed version (the image's owner
	// can act on them).
	// +optional
	FixableOnly bool `json:"fixableOnly,omitempty"`

	// unscanned is what happens to an image without a report yet (just pushed, or the
	// scanner is down): Allow (the default) lets it through, Deny refuses it until it has
	// been scanned.
	// +kubebuilder:validation:Enum=Allow;Deny
	// +kubebuilder:default=Allow
	// +optional
	Unscanned UnscannedAction `json:"unscanned,omitempty"`

	// exemptions accept vulnerabilities by ID until they expire, each with a reason: the
	// record of who accepted what, and why, is this list (in Git, for a GitOps
	// repository). An admitted image that needed one gets a warning naming it, and the
	// API server's audit log records it (audit annotation
	// pods.compliance.dockyard.dev/exempted, or workloads./cronjobs.). Expired entries
	// stop applying on their own.
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	// +optional
	Exemptions []VulnerabilityExemption `json:"exemptions,omitempty"`

	// signatures requires images to be signed (cosign's signature format, as `cosign sign
	// --key` stores it) by one of these keys. Verified offline against the keys alone:
	// no transparency log, no certificate authority.
	// +optional
	Signatures *SignaturePolicy `json:"signatures,omitempty"`
}

// ComplianceAction is what happens to a non-compliant image.
type ComplianceAction string

// Actions.
const (
	ComplianceDeny ComplianceAction = "Deny"
	ComplianceWarn ComplianceAction = "Warn"
)

// PullAction is what the registry does when a client outside the cluster pulls a
// non-compliant image.
type PullAction string

// Pull actions.
const (
	PullAllow PullAction = "Allow"
	PullDeny  PullAction = "Deny"
)

// UnscannedAction is what happens to an image without a report.
type UnscannedAction string

// Unscanned actions.
const (
	UnscannedAllow UnscannedAction = "Allow"
	UnscannedDeny  UnscannedAction = "Deny"
)

// VulnerabilityExemption accepts one vulnerability until it expires.
type VulnerabilityExemption struct {
	// id of the vulnerability, as the report names it (CVE-2024-1234, GHSA-xxxx-xxxx-xxxx).
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._:-]*$`
	// +required
	ID string `json:"id"`

	// repositories limits the exemption to these repositories of the Registry (exact
	// names, or a prefix ending in /** for everything below it). Unset: every repository.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*(/\*\*)?$`
	// +listType=set
	// +optional
	Repositories []string `json:"repositories,omitempty"`

	// reason the vulnerability is accepted (not exploitable here, fix scheduled, …): shown
	// in the warning a person gets, and in the audit log.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +required
	Reason string `json:"reason"`

	// expires ends the exemption (RFC 3339, e.g. 2027-03-31T00:00:00Z). Required: an
	// accepted risk is reviewed again.
	// +required
	Expires metav1.Time `json:"expires"`
}

// SignaturePolicy requires a signature by one of a set of keys.
type SignaturePolicy struct {
	// publicKeys are PEM public keys (ECDSA P-256/P-384/P-521, RSA of 2048 bits or more,
	// or Ed25519), as `cosign generate-key-pair` writes cosign.pub; an image needs a valid
	// signature by any one of them. Public keys are not secrets: they live in the spec.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=8192
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.trim().startsWith('-----BEGIN PUBLIC KEY-----') && k.trim().endsWith('-----END PUBLIC KEY-----'))",message="signatures.publicKeys: each entry is one PEM block, -----BEGIN PUBLIC KEY----- … -----END PUBLIC KEY----- (cosign.pub)"
	// +listType=atomic
	// +required
	PublicKeys []string `json:"publicKeys"`
}
