package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RetentionMode says whether a RetentionPolicy deletes.
// +kubebuilder:validation:Enum=DryRun;Enforce
type RetentionMode string

const (
	// RetentionDryRun plans and reports, and deletes nothing.
	RetentionDryRun RetentionMode = "DryRun"
	// RetentionEnforce deletes what the plan says, at scheduled and triggered runs.
	RetentionEnforce RetentionMode = "Enforce"
)

// RetentionRunAnnotation asks for a run now: set it to any new value (e.g. the date) and
// the operator runs the policy once in its mode, then records the value in
// status.lastHandledRunRequest.
//
//	kubectl annotate retentionpolicy <name> registry.dockyard.dev/run-now="$(date +%s)" --overwrite
const RetentionRunAnnotation = "registry.dockyard.dev/run-now"

// RetentionPolicySpec is what a RetentionPolicy keeps, where, and when it runs.
//
// An artifact (a top-level manifest with all its tags) in scope is deleted only when no rule
// keeps any of its tags, nothing else keeps it (an index that lists it, a subject it
// refers to, another RetentionPolicy of the same Registry) and it is older than
// safety.minAge. Several policies may select one Registry: an artifact survives when any of
// them keeps it (a DryRun or suspended policy keeps what its rules keep too).
type RetentionPolicySpec struct {
	// registryRef names the Registry, in this namespace, the policy applies to.
	// +required
	RegistryRef LocalRegistryReference `json:"registryRef"`

	// repositories are the repository patterns in scope, as in access rules: '/'-separated
	// lowercase segments, '*' inside a segment, '**' as a whole segment (team-a/**).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*(/[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*)*$'))",message="repositories: each pattern is lowercase path segments separated by '/', with '*' inside a segment or '**' as a whole segment (e.g. team-a/**, base/debian-*); no leading, trailing or double '/'"
	// +listType=atomic
	// +required
	Repositories []string `json:"repositories"`

	// excludeRepositories are patterns taken out of scope (same grammar).
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*(/[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*)*$'))",message="excludeRepositories: each pattern is lowercase path segments separated by '/', with '*' inside a segment or '**' as a whole segment"
	// +listType=atomic
	// +optional
	ExcludeRepositories []string `json:"excludeRepositories,omitempty"`

	// rules keep tags. A tag is kept when any rule keeps it; each rule counts its own tags,
	// so keepLast of one rule never uses up another's budget. A tag no rule keeps is
	// removed, and its manifest deleted when nothing else keeps it.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +required
	Rules []RetentionRule `json:"rules"`

	// untagged says what happens to artifacts no tag names (e.g. the previous image of a
	// moved tag, or an image pushed by digest): Keep (the default) or Delete. Children of a
	// kept index and referrers of a kept image are kept either way.
	// +kubebuilder:validation:Enum=Keep;Delete
	// +kubebuilder:default=Keep
	// +optional
	Untagged UntaggedPolicy `json:"untagged,omitempty"`

	// mode is DryRun (the default: plan and report, delete nothing) or Enforce (delete what
	// the plan says at scheduled and requested runs).
	// +kubebuilder:default=DryRun
	// +optional
	Mode RetentionMode `json:"mode,omitempty"`

	// schedule runs the policy in its mode, in cron format: five fields (minute hour
	// day-of-month month day-of-week), or one of @yearly, @monthly, @weekly, @daily,
	// @hourly, in the controller-manager's time zone (usually UTC). Without it the policy
	// runs only when its spec changes (a plan, never deletions) and when asked with the
	// registry.dockyard.dev/run-now annotation.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4}$')",message="schedule: use five cron fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\") or @yearly, @monthly, @weekly, @daily or @hourly"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.matches('(?i)^([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/0*[1-9][0-9]{0,3})?(,([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/0*[1-9][0-9]{0,3})?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/0*[1-9][0-9]{0,3})?(,([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/0*[1-9][0-9]{0,3})?)* +([*]|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(/0*[1-9][0-9]{0,3})?(,([*]|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(/0*[1-9][0-9]{0,3})?)* +([*]|[?]|([0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?)(/0*[1-9][0-9]{0,3})?(,([*]|[?]|([0-6]|sun|mon|tue|wed|thu|fri|sat)(-([0-6]|sun|mon|tue|wed|thu|fri|sat))?)(/0*[1-9][0-9]{0,3})?)*$')",message="schedule: a field is out of range or has an unknown token: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or SUN-SAT; each field is *, a value, a range a-b, a list a,b, optionally with a step /n"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// suspend stops scheduled and requested runs; plans for spec changes still run.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// collectGarbage starts the Registry's garbage collection (a Job from its
	// garbageCollection CronJob) after an enforced run that deleted something, so the
	// space comes back without waiting for the next scheduled collection. Needs
	// spec.garbageCollection on the Registry.
	// +optional
	CollectGarbage bool `json:"collectGarbage,omitempty"`

	// safety bounds what one enforced run may delete.
	// +optional
	Safety RetentionSafety `json:"safety,omitempty"`
}

// UntaggedPolicy says what happens to untagged artifacts.
type UntaggedPolicy string

const (
	// UntaggedKeep keeps untagged artifacts.
	UntaggedKeep UntaggedPolicy = "Keep"
	// UntaggedDelete deletes untagged artifacts nothing keeps.
	UntaggedDelete UntaggedPolicy = "Delete"
)

// LocalRegistryReference names a Registry in the same namespace.
type LocalRegistryReference struct {
	// name of the Registry.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
}

// RetentionRule keeps the tags its selector matches that meet its conditions: the keepLast
// most recently pushed per repository, those pushed within pushedWithin, those pulled within
// pulledWithin (a tag is kept when any set condition holds). A rule with no condition keeps
// every tag it matches.
// +kubebuilder:validation:XValidation:rule="!has(self.keepLast) || self.keepLast >= 1",message="keepLast: at least 1 (leave it out to keep every matching tag)"
type RetentionRule struct {
	// name identifies the rule in the plan's reasons; defaults to rules[<index>].
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Name string `json:"name,omitempty"`

	// tags selects the tags this rule counts; every tag when unset.
	// +optional
	Tags *TagSelector `json:"tags,omitempty"`

	// keepLast keeps the N most recently pushed matching tags of each repository.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	KeepLast *int32 `json:"keepLast,omitempty"`

	// pushedWithin keeps matching tags pushed (or moved) within this duration, e.g. 720h.
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="pushedWithin: a positive duration such as 720h"
	// +optional
	PushedWithin *metav1.Duration `json:"pushedWithin,omitempty"`

	// pulledWithin keeps matching tags whose image was pulled within this duration. The
	// registry records pulls at most once an hour per image and replica, so durations
	// under an hour are rounded up in effect.
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="pulledWithin: a positive duration such as 2160h"
	// +optional
	PulledWithin *metav1.Duration `json:"pulledWithin,omitempty"`
}

// TagSelector matches tag names; every set field must match.
type TagSelector struct {
	// glob is a shell pattern: '*' any run of characters, '?' one, '[a-z]' a class
	// (e.g. main-*, v*).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="!self.contains('/')",message="glob: tags never contain '/'"
	// +optional
	Glob string `json:"glob,omitempty"`

	// regex is an RE2 regular expression the whole tag must match (it is anchored), e.g.
	// v[0-9]+\.[0-9]+\.[0-9]+.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="type(''.matches('^(?:' + self + ')$')) == bool",message="regex: not a valid RE2 regular expression"
	// +optional
	Regex string `json:"regex,omitempty"`

	// semver is a version constraint, e.g. ">=1.2.0 <2", "~1.4", "^2", "1.x || >=3";
	// tags that are not versions (an optional leading v) never match.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// The rule is SemverConstraintPattern (TestSemverConstraintPattern checks it against the
	// constraint parser the planner uses).
	// +kubebuilder:validation:XValidation:rule="self.matches('^ *((!=|>=|=>|<=|=<|~>|[=><~^])? *v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?|v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)? +- +v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?)(( *, *| +)((!=|>=|=>|<=|=<|~>|[=><~^])? *v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?|v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)? +- +v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?))*( *[|][|] *((!=|>=|=>|<=|=<|~>|[=><~^])? *v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?|v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)? +- +v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?)(( *, *| +)((!=|>=|=>|<=|=<|~>|[=><~^])? *v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?|v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)? +- +v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?))*)* *$')",message="semver: not a version constraint; use comparisons such as >=1.2.0 <2, ~1.4, ^2, 1.x, 1.2 - 1.4, joined by ',' or space, alternatives by ||"
	// +optional
	Semver string `json:"semver,omitempty"`
}

// RetentionSafety bounds what one enforced run deletes.
type RetentionSafety struct {
	// maxDeletionPercent is the ceiling: an enforced run whose plan deletes more than this
	// share of the artifacts in scope deletes nothing, keeps the plan in status and sets
	// Degraded with reason CeilingExceeded. 100 disables the ceiling. Defaults to 50.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=50
	// +optional
	MaxDeletionPercent *int32 `json:"maxDeletionPercent,omitempty"`

	// minAge keeps everything pushed more recently than this, tagged or not: a multi-arch
	// push uploads its platform manifests before the index that names them, and a signature
	// may come before its image. Defaults to 1h; at least 10m.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10m')",message="minAge: at least 10m (pushes in flight need it)"
	// +optional
	MinAge *metav1.Duration `json:"minAge,omitempty"`
}

// RetentionPolicyStatus is the last plan and the last enforced run.
type RetentionPolicyStatus struct {
	// observedGeneration is the generation the last plan was made for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the last run succeeded for the current spec), Degraded (the last
	// run failed or hit the safety ceiling).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// plan is what the policy does to the registry as of its last run.
	// +optional
	Plan *RetentionPlan `json:"plan,omitempty"`

	// lastEnforcement is the outcome of the last enforced run.
	// +optional
	LastEnforcement *RetentionEnforcement `json:"lastEnforcement,omitempty"`

	// lastRunTime is when the last run (planned or enforced) finished.
	// +optional
	LastRunTime *metav1.Time `json:"lastRunTime,omitempty"`

	// lastRunJob is the Job of the last finished run.
	// +optional
	LastRunJob string `json:"lastRunJob,omitempty"`

	// nextScheduleTime is when the schedule runs the policy next.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// lastHandledRunRequest is the value of the registry.dockyard.dev/run-now annotation
	// of the last requested run.
	// +optional
	LastHandledRunRequest string `json:"lastHandledRunRequest,omitempty"`

	// activeJob is the run in progress.
	// +optional
	ActiveJob string `json:"activeJob,omitempty"`
}

// RetentionPlan is the outcome of planning.
type RetentionPlan struct {
	// evaluationTime is when the registry's content was read.
	// +optional
	EvaluationTime *metav1.Time `json:"evaluationTime,omitempty"`
	// jobName is the run that made the plan.
	// +optional
	JobName string `json:"jobName,omitempty"`
	// planHash identifies the actions (equal hashes: the same deletions).
	// +optional
	PlanHash string `json:"planHash,omitempty"`
	// repositories in scope.
	// +optional
	Repositories int64 `json:"repositories"`
	// artifacts in scope (top-level manifests), how many are kept and how many deleted.
	// +optional
	Artifacts int64 `json:"artifacts"`
	// +optional
	ArtifactsKept int64 `json:"artifactsKept"`
	// +optional
	ArtifactsToDelete int64 `json:"artifactsToDelete"`
	// tags in scope, kept and to remove.
	// +optional
	Tags int64 `json:"tags"`
	// +optional
	TagsKept int64 `json:"tagsKept"`
	// +optional
	TagsToRemove int64 `json:"tagsToRemove"`
	// manifestsToDelete counts every manifest deleted, with index children and referrers.
	// +optional
	ManifestsToDelete int64 `json:"manifestsToDelete"`
	// reclaimableBytes is the size of the blobs only deleted manifests use: what the next
	// garbage collection frees.
	// +optional
	ReclaimableBytes int64 `json:"reclaimableBytes"`
	// reclaimable is reclaimableBytes for people (e.g. 1.4GiB).
	// +optional
	Reclaimable string `json:"reclaimable,omitempty"`
	// ceilingExceeded: the plan deletes more than safety.maxDeletionPercent of the
	// artifacts in scope; an enforced run deletes nothing.
	// +optional
	CeilingExceeded bool `json:"ceilingExceeded,omitempty"`
	// sample is the first actions of the plan (at most 10), sorted by repository.
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	Sample []RetentionAction `json:"sample,omitempty"`
}

// RetentionAction is one step of a plan.
type RetentionAction struct {
	// action is Delete (the manifest and its tags go) or Untag (the tags go, the manifest
	// stays because something else keeps it).
	Action string `json:"action"`
	// repository of the manifest.
	Repository string `json:"repository"`
	// digest of the manifest.
	Digest string `json:"digest"`
	// tags removed.
	// +listType=atomic
	// +optional
	Tags []string `json:"tags,omitempty"`
	// reason the rules gave.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// RetentionEnforcement is the outcome of an enforced run.
type RetentionEnforcement struct {
	// jobName is the run.
	// +optional
	JobName string `json:"jobName,omitempty"`
	// completionTime of the run.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// planHash of the plan the run carried out.
	// +optional
	PlanHash string `json:"planHash,omitempty"`
	// result is Succeeded, PartiallyFailed, Failed or CeilingExceeded (nothing deleted).
	// +optional
	Result string `json:"result,omitempty"`
	// manifestsDeleted and tagsRemoved count what was deleted.
	// +optional
	ManifestsDeleted int64 `json:"manifestsDeleted"`
	// +optional
	TagsRemoved int64 `json:"tagsRemoved"`
	// skipped counts planned actions not carried out because the registry changed after
	// planning (a tag moved or re-pushed, a new index or referrer).
	// +optional
	Skipped int64 `json:"skipped"`
	// failed counts actions the storage refused.
	// +optional
	Failed int64 `json:"failed"`
	// reclaimableBytes is what the next garbage collection frees from this run.
	// +optional
	ReclaimableBytes int64 `json:"reclaimableBytes"`
	// garbageCollectionJob is the garbage collection started after the run
	// (spec.collectGarbage); its result is the Registry's status.lastGarbageCollection.
	// +optional
	GarbageCollectionJob string `json:"garbageCollectionJob,omitempty"`
	// errors are the first few failures.
	// +kubebuilder:validation:MaxItems=5
	// +listType=atomic
	// +optional
	Errors []string `json:"errors,omitempty"`
}

// RetentionPolicy deletes old images from a Registry by rules people read in Git, with the
// plan in status before anything is deleted.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rp,categories=dockyard
// +kubebuilder:printcolumn:name="Registry",type=string,JSONPath=`.spec.registryRef.name`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="To delete",type=integer,JSONPath=`.status.plan.artifactsToDelete`
// +kubebuilder:printcolumn:name="Reclaimable",type=string,JSONPath=`.status.plan.reclaimable`
// +kubebuilder:printcolumn:name="Last run",type=date,JSONPath=`.status.lastRunTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 40",message="metadata.name: at most 40 characters (run Jobs are named <name>-retention-<random>)"
type RetentionPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec RetentionPolicySpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status RetentionPolicyStatus `json:"status,omitempty"`
}

// RetentionPolicyList is a list of RetentionPolicies.
//
// +kubebuilder:object:root=true
type RetentionPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RetentionPolicy `json:"items"`
}
