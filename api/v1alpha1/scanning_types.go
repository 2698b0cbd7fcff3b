package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultScannerImage is the Trivy image the scanner runs in when spec.scanning.image is
// empty (the release whose JSON report the scanner reads, and which the tests build).
const DefaultScannerImage = "mirror.gcr.io/aquasec/trivy:0.74.0"

// DefaultScanDatabase is where the vulnerability database comes from when
// spec.scanning.database.repository is empty: Trivy's own public mirror.
const DefaultScanDatabase = "mirror.gcr.io/aquasec/trivy-db:2"

// ScanRequestAnnotation asks the Registry's scanner to scan images now, even those with a
// report: its value lists references separated by spaces or commas, each
// "repository:tag", "repository@sha256:…" or "repository" (every tag of it, at most 200),
// at most 50 of them; anything after a "#" is ignored. The operator hands a new value to
// the scanner once, records it in status.scanning.lastHandledScanRequest, and says in an
// event how many images were queued and which references could not be resolved. To ask
// again for the same images, change the value (e.g. the part after "#"):
//
//	kubectl annotate registry <name> registry.dockyard.dev/scan-now="team-a/app:1.4 team-a/web #$(date +%s)" --overwrite
const ScanRequestAnnotation = "registry.dockyard.dev/scan-now"

// ScanningSpec runs a vulnerability scanner beside the Registry (a Deployment
// <name>-scanner): every image pushed is scanned with Trivy, and the report is stored in
// the Registry as an OCI referrer of the image (artifactType
// application/vnd.dockyard.vulnerability-report.v1, signed by the scanner; `oras discover`
// lists it). Images pushed while the scanner was down are found by its sweep (at start
// and every sweepInterval); images pulled lately are scanned again when the database
// changes (rescanPulledWithin); people ask for scans with ScanRequestAnnotation.
// status.scanning and the ScannerReady condition report it.
//
// The scanner runs in the Trivy image (image); an init container copies the dockyard
// binary into it, so the image needs nothing but trivy. It pulls images and stores
// reports as its own identity (a credential the operator signs and renews; with
// spec.auth only), which may pull and write manifests by digest, nothing else. It talks
// to the Registry and to the database repository only.
type ScanningSpec struct {
	// image is the Trivy image the scanner runs in; trivy must be on its PATH. Default
	// mirror.gcr.io/aquasec/trivy:0.74.0. Air-gapped sites mirror it into a registry the
	// nodes can pull from (this one, with spec.nodeTrust and spec.pullSecrets).
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^((?:(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*)(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$`
	// +optional
	Image string `json:"image,omitempty"`

	// database says where Trivy's vulnerability database comes from and how fresh it must be.
	// +optional
	Database *ScanDatabaseSpec `json:"database,omitempty"`

	// concurrency is the number of images scanned at a time, from 1 to 16. Default 1.
	// Each scan uses about one core and a few hundred MiB while it runs.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	// +optional
	Concurrency *int32 `json:"concurrency,omitempty"`

	// timeout bounds one scan, from 30s to 1h. Default 5m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30s') && duration(self) <= duration('1h')",message="timeout must be between 30s and 1h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// sweepInterval is how often the scanner lists the Registry's tags and queues the
	// images that have no report yet (pushes it missed while down, images older than the
	// scanner), from 10m to 168h. Default 1h. It also sweeps once when it starts.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10m') && duration(self) <= duration('168h')",message="sweepInterval must be between 10m and 168h"
	// +optional
	SweepInterval *metav1.Duration `json:"sweepInterval,omitempty"`

	// rescanPulledWithin: images pulled within this long are scanned again when the
	// scanner gets a newer vulnerability database (and at every sweep while their newest
	// report was made with an older one), so a CVE published after an image was scanned
	// reaches admission and the registry gate. Images nobody pulled lately keep their
	// report until they are pulled, pushed again or asked for (see ScanRequestAnnotation).
	// "0s" never rescans; otherwise from 1h to 2160h (90 days). Default 168h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration('0s') || (duration(self) >= duration('1h') && duration(self) <= duration('2160h'))",message="rescanPulledWithin must be 0s (never) or between 1h and 2160h"
	// +optional
	RescanPulledWithin *metav1.Duration `json:"rescanPulledWithin,omitempty"`

	// policy decides which of the Registry's images may run in the cluster, checked by
	// the operator's admission webhook at `kubectl apply` (see CompliancePolicy). Unset:
	// images are scanned and reported, never refused.
	// +optional
	Policy *CompliancePolicy `json:"policy,omitempty"`

	// resources of the scanner container. Default: requests 100m CPU and 256Mi, a memory
	// limit of 1Gi plus 1Gi per concurrent scan (Trivy holds the database and a layer at a
	// time per scan).
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// ScanDatabaseSpec says where Trivy's vulnerability database comes from.
// +kubebuilder:validation:XValidation:rule="duration(has(self.maxAge) ? self.maxAge : '72h') > duration(has(self.updateInterval) ? self.updateInterval : '6h')",message="maxAge must be longer than updateInterval (defaults: maxAge 72h, updateInterval 6h)"
type ScanDatabaseSpec struct {
	// repository holds the database (Trivy's OCI artifact, media type
	// application/vnd.aquasec.trivy.db.layer.v1.tar+gzip), with its tag: either a
	// repository of this Registry (e.g. security/trivy-db:2), which is how an air-gapped
	// site feeds the scanner (mirror the one artifact with `oras copy`), or a full
	// reference to another registry (its host first, with a dot or a port, e.g.
	// mirror.gcr.io/aquasec/trivy-db:2). Default mirror.gcr.io/aquasec/trivy-db:2.
	// The scanner uses its own credential only for this Registry.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*:[\w][\w.-]{0,127}$`
	// +optional
	Repository string `json:"repository,omitempty"`

	// javaRepository holds Trivy's Java database, in the same forms; without it, Java
	// archives (jar, war, ear) are not scanned (the rest of the image is).
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*:[\w][\w.-]{0,127}$`
	// +optional
	JavaRepository string `json:"javaRepository,omitempty"`

	// updateInterval is how often the scanner looks for a newer database, from 10m to
	// 168h. Default 6h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10m') && duration(self) <= duration('168h')",message="updateInterval must be between 10m and 168h"
	// +optional
	UpdateInterval *metav1.Duration `json:"updateInterval,omitempty"`

	// maxAge is how old the database may get (by the time Trivy built it) before the
	// Registry reports ScannerReady=False with reason DatabaseStale and the
	// DockyardScanDatabaseStale alert fires, from 1h to 720h. Default 72h. Findings
	// published since then are missed until a newer database arrives.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('720h')",message="maxAge must be between 1h and 720h"
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
}

// ScanningStatus is what the scanner reports.
type ScanningStatus struct {
	// scanned counts the images scanned since the scanner started; failed those whose
	// scan failed (lastError says why); queue is the number waiting.
	// +optional
	Scanned int64 `json:"scanned,omitempty"`
	// +optional
	Failed int64 `json:"failed,omitempty"`
	// +optional
	Queue int32 `json:"queue,omitempty"`

	// vulnerable counts the scans since the scanner started that found something, by the
	// most severe finding (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN); an image scanned again
	// counts again.
	// +optional
	Vulnerable map[string]int64 `json:"vulnerable,omitempty"`

	// lastScanTime is when the last scan finished.
	// +optional
	LastScanTime *metav1.Time `json:"lastScanTime,omitempty"`

	// lastError is the last failure of a scan, a sweep or a database update; it names the
	// repository and digest (never a secret).
	// +optional
	LastError string `json:"lastError,omitempty"`

	// scanner is the Trivy version.
	// +optional
	Scanner string `json:"scanner,omitempty"`

	// databaseUpdatedAt is when Trivy built the database in use.
	// +optional
	DatabaseUpdatedAt *metav1.Time `json:"databaseUpdatedAt,omitempty"`

	// lastHandledScanRequest is the value of the registry.dockyard.dev/scan-now annotation
	// the operator last handled: handed to the scanner (the Registry's events say how many
	// images were queued, and which references could not be resolved) or refused as
	// invalid (a Warning event says why). A value longer than 4096 bytes is recorded as
	// "sha256:" and the hex digest of the value.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	LastHandledScanRequest string `json:"lastHandledScanRequest,omitempty"`
}
