package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReplicationDirection says which way a ReplicationRule copies.
// +kubebuilder:validation:Enum=Push;Pull
type ReplicationDirection string

const (
	// ReplicationPush copies from the local Registry to the remote.
	ReplicationPush ReplicationDirection = "Push"
	// ReplicationPull copies from the remote into the local Registry.
	ReplicationPull ReplicationDirection = "Pull"
)

// ReplicationRunAnnotation asks for a run now: set it to any new value and the operator
// synchronises the rule once, then records the value in status.lastHandledRunRequest.
//
//	kubectl annotate replicationrule <name> registry.dockyard.dev/run-now="$(date +%s)" --overwrite
const ReplicationRunAnnotation = RetentionRunAnnotation

// ReplicationRuleSpec says what is copied, between which registries, and when.
//
// A run lists the source's repositories and tags, keeps what the filters match and copies
// every artifact (a manifest with all the tags that name it; an index with all its
// children; its referrers when asked) the destination does not have yet, byte for byte:
// digests never change. Blobs the destination has are not sent again, so an interrupted
// run resumes where it stopped. A manifest is pushed only after all it references, and a
// tag only after its manifest: the destination never shows a partial artifact.
// +kubebuilder:validation:XValidation:rule="!(has(self.onPush) && self.onPush) || self.direction == 'Push'",message="onPush: only Push rules react to pushes (the local Registry sees them); a Pull rule runs on its schedule"
// +kubebuilder:validation:XValidation:rule="!has(self.destination) || !has(self.destination.stripSegments) || self.destination.stripSegments == 0 || self.filters.repositories.all(p, size(p.split('/')) > self.destination.stripSegments || p.contains('**'))",message="destination.stripSegments: every repository pattern must keep at least one segment after stripping"
type ReplicationRuleSpec struct {
	// registryRef names the local Registry, in this namespace: the source of a Push rule,
	// the destination of a Pull rule.
	// +required
	RegistryRef LocalRegistryReference `json:"registryRef"`

	// direction is Push (local Registry to remote) or Pull (remote to local Registry).
	// +required
	Direction ReplicationDirection `json:"direction"`

	// remote is the other registry.
	// +required
	Remote ReplicationRemote `json:"remote"`

	// filters select what is copied.
	// +required
	Filters ReplicationFilters `json:"filters"`

	// destination renames repositories on the way: strip leading segments of the source
	// path, then put prefix in front. By default a repository keeps its name.
	// +optional
	Destination *ReplicationDestination `json:"destination,omitempty"`

	// onPush copies each push to the local Registry within seconds: the Registry tells the
	// operator what it acknowledged, and the operator copies the repositories pushed to.
	// Push rules only. Events missed while the operator was away are caught up when it
	// starts and by the schedule, which defaults to every 15 minutes for onPush rules.
	// +optional
	OnPush bool `json:"onPush,omitempty"`

	// schedule runs the rule in cron format: five fields (minute hour day-of-month month
	// day-of-week), or one of @yearly, @monthly, @weekly, @daily, @hourly, in the
	// controller-manager's time zone (usually UTC). A run compares everything the filters
	// select. The rule also runs when its spec changes and when asked with the
	// registry.dockyard.dev/run-now annotation. Defaults to "*/15 * * * *" with onPush
	// (the backstop for lost events); no default otherwise.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4}$')",message="schedule: use five cron fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\") or @yearly, @monthly, @weekly, @daily or @hourly"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.matches('(?i)^([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/0*[1-9][0-9]{0,3})?(,([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/0*[1-9][0-9]{0,3})?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/0*[1-9][0-9]{0,3})?(,([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(/0*[1-9][0-9]{0,3})?(,([*]|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(/0*[1-9][0-9]{0,3})?)* +([*]|[?]|([0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?)(/0*[1-9][0-9]{0,3})?(,([*]|[?]|([0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?)(/0*[1-9][0-9]{0,3})?)*$')",message="schedule: a field is out of range or has an unknown token: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or SUN-SAT; each field is *, a value, a range a-b, a list a,b, optionally with a step /n"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// propagateDeletes removes, at the destination, tags the filters match that no longer
	// exist at the source (in repositories the source still has). Off by default: the
	// destination only grows. Manifests are never deleted; garbage collection and
	// retention at the destination reclaim what no tag names.
	// +optional
	PropagateDeletes bool `json:"propagateDeletes,omitempty"`

	// suspend stops scheduled, requested and spec-change runs.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// ReplicationRemote is the registry at the other end.
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureSkipTLSVerify) && self.insecureSkipTLSVerify && has(self.caBundle))",message="remote: set caBundle or insecureSkipTLSVerify, not both"
// +kubebuilder:validation:XValidation:rule="!(self.url.startsWith('http://') && (has(self.caBundle) || (has(self.insecureSkipTLSVerify) && self.insecureSkipTLSVerify)))",message="remote: caBundle and insecureSkipTLSVerify need an https URL"
type ReplicationRemote struct {
	// url of the registry: https://host[:port] (https when no scheme is given). Another
	// Dockyard Registry in the cluster is https://<name>.<namespace>.svc:<port>, its status.url.
	// http:// sends credentials and images in clear text; use it only inside a trusted
	// network.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=260
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?://)?([a-z0-9]([-a-z0-9]*[a-z0-9])?)([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?/?$')",message="url: a registry address such as https://registry.example.com or registry.example.com:5000 (lowercase host, optional port, no path)"
	// +required
	URL string `json:"url"`

	// credentialsSecretRef names a Secret, in this namespace, with the credentials for the
	// remote: a kubernetes.io/dockerconfigjson Secret (the entry for the remote's host is
	// used), or keys username and password. Anonymous when unset.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`

	// caBundle is the PEM bundle that signs the remote's certificate, when the system's
	// roots do not (a private CA, another Dockyard Registry's ca.crt).
	// +optional
	CABundle *CABundleSource `json:"caBundle,omitempty"`

	// insecureSkipTLSVerify accepts any certificate from the remote. Strongly discouraged:
	// anyone on the path can read the credentials and swap images. Use caBundle instead.
	// +optional
	InsecureSkipTLSVerify bool `json:"insecureSkipTLSVerify,omitempty"`
}

// ReplicationFilters select the repositories and tags a rule copies.
type ReplicationFilters struct {
	// repositories are the repository patterns at the source, as in access rules:
	// '/'-separated lowercase segments, '*' inside a segment, '**' as a whole segment
	// (team-a/**). Patterns with wildcards need the source's catalog (/v2/_catalog);
	// registries without one (Docker Hub) take exact names (library/nginx).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*(/[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*)*$'))",message="repositories: each pattern is lowercase path segments separated by '/', with '*' inside a segment or '**' as a whole segment (e.g. team-a/**, library/nginx); no leading, trailing or double '/'"
	// +listType=atomic
	// +required
	Repositories []string `json:"repositories"`

	// excludeRepositories are patterns taken out (same grammar).
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*(/[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*)*$'))",message="excludeRepositories: each pattern is lowercase path segments separated by '/', with '*' inside a segment or '**' as a whole segment"
	// +listType=atomic
	// +optional
	ExcludeRepositories []string `json:"excludeRepositories,omitempty"`

	// tags selects the tags copied (glob, regex, semver; every set field must match);
	// every tag when unset. An artifact is copied with all its matching tags.
	// +optional
	Tags *TagSelector `json:"tags,omitempty"`

	// includeReferrers copies, with each artifact, the artifacts that refer to it
	// (signatures, SBOMs, scan reports: the OCI referrers API, and cosign's
	// sha256-<digest>.sig/.att/.sbom tags). Defaults to true.
	// +kubebuilder:default=true
	// +optional
	IncludeReferrers *bool `json:"includeReferrers,omitempty"`
}

// ReplicationDestination renames repositories: stripSegments leading segments of the
// source path are dropped, then prefix is put in front.
// library/nginx with prefix dockerhub lands as dockerhub/library/nginx; team-a/app with
// stripSegments 1 and prefix prod as prod/app.
type ReplicationDestination struct {
	// prefix is put in front of every repository (a repository path, no wildcards).
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*)*$')",message="destination.prefix: lowercase path segments separated by '/' (e.g. mirror or dockerhub/library), no wildcards, no leading or trailing '/'"
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// stripSegments drops this many leading segments of the source path. A repository
	// with no segment left is not copied (its failure names it).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=8
	// +optional
	StripSegments int32 `json:"stripSegments,omitempty"`
}

// ReplicationRuleStatus is what the last runs did.
type ReplicationRuleStatus struct {
	// observedGeneration is the generation the last finished run was made for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the last run copied everything it matched), Progressing (a run
	// is in progress), Degraded (the last run failed, entirely or in part).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastSyncTime is when the last run finished.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// lastSuccessfulSyncTime is when the last run that copied everything it matched
	// finished.
	// +optional
	LastSuccessfulSyncTime *metav1.Time `json:"lastSuccessfulSyncTime,omitempty"`

	// inSyncAsOf is the start of the last run that left the destination with everything
	// the filters matched at the source: what was pushed before it has been copied.
	// +optional
	InSyncAsOf *metav1.Time `json:"inSyncAsOf,omitempty"`

	// lag is how far the destination was behind at the end of the last run: 0s when that
	// run copied everything, else the time since inSyncAsOf (an upper bound of the age of
	// the oldest matched push not at the destination).
	// +optional
	Lag *metav1.Duration `json:"lag,omitempty"`

	// nextScheduleTime is when the schedule runs the rule next.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// lastHandledRunRequest is the value of the registry.dockyard.dev/run-now annotation
	// of the last requested run.
	// +optional
	LastHandledRunRequest string `json:"lastHandledRunRequest,omitempty"`

	// failedRuns counts the runs that failed since the last one that succeeded; retries
	// back off with it (30s doubling, at most 10m).
	// +optional
	FailedRuns int32 `json:"failedRuns,omitempty"`

	// lastRun is what the last run did.
	// +optional
	LastRun *ReplicationRun `json:"lastRun,omitempty"`

	// total adds up every run since the rule was created.
	// +optional
	Total ReplicationCounts `json:"total,omitempty"`
}

// ReplicationCounts are what runs copied.
type ReplicationCounts struct {
	// artifactsCopied: artifacts the destination lacked (or whose tags pointed elsewhere)
	// and now has.
	// +optional
	ArtifactsCopied int64 `json:"artifactsCopied"`
	// artifactsSkipped: artifacts the destination already had with the same tags.
	// +optional
	ArtifactsSkipped int64 `json:"artifactsSkipped"`
	// artifactsFailed: artifacts that could not be copied.
	// +optional
	ArtifactsFailed int64 `json:"artifactsFailed"`
	// referrersCopied: signatures, SBOMs and other referrers copied with them.
	// +optional
	ReferrersCopied int64 `json:"referrersCopied"`
	// tagsDeleted: tags removed at the destination (propagateDeletes).
	// +optional
	TagsDeleted int64 `json:"tagsDeleted"`
	// bytesCopied: blob bytes sent to the destination (blobs it had are not sent).
	// +optional
	BytesCopied int64 `json:"bytesCopied"`
}

// ReplicationRun is one run of a rule.
type ReplicationRun struct {
	// startTime and completionTime of the run.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// trigger is what started it: Spec, Schedule, Request, Retry, Push (only the
	// repositories pushed to) or Startup (the operator started: catch up).
	// +optional
	Trigger string `json:"trigger,omitempty"`
	// result is Succeeded, PartiallyFailed or Failed.
	// +optional
	Result string `json:"result,omitempty"`
	// repositories the filters matched at the source.
	// +optional
	Repositories int64 `json:"repositories"`
	// artifacts the filters matched at the source.
	// +optional
	Artifacts int64 `json:"artifacts"`
	// counts of what the run did.
	// +optional
	ReplicationCounts `json:",inline"`
	// errors are the first few failures.
	// +kubebuilder:validation:MaxItems=5
	// +listType=atomic
	// +optional
	Errors []string `json:"errors,omitempty"`
}

// ReplicationRule copies images between a Registry and another registry, on push, on a
// schedule and on request, with per-run status.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rr,categories=dockyard
// +kubebuilder:printcolumn:name="Registry",type=string,JSONPath=`.spec.registryRef.name`
// +kubebuilder:printcolumn:name="Direction",type=string,JSONPath=`.spec.direction`
// +kubebuilder:printcolumn:name="On push",type=boolean,JSONPath=`.spec.onPush`,priority=1
// +kubebuilder:printcolumn:name="Remote",type=string,JSONPath=`.spec.remote.url`
// +kubebuilder:printcolumn:name="Lag",type=string,JSONPath=`.status.lag`
// +kubebuilder:printcolumn:name="Last sync",type=date,JSONPath=`.status.lastSyncTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
type ReplicationRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec ReplicationRuleSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status ReplicationRuleStatus `json:"status,omitempty"`
}

// ReplicationRuleList is a list of ReplicationRules.
//
// +kubebuilder:object:root=true
type ReplicationRuleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReplicationRule `json:"items"`
}
