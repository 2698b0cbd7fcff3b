package registryconfig

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// A retention run is one `dockyard registry retention` Job: the operator passes the run as
// JSON in an argument (RetentionArgs) — every RetentionPolicy of the Registry, so the run
// keeps what any of them keeps, and which one it runs — and reads the RetentionSummary the
// job writes to its termination-message path.

// MaxRetentionRunBytes bounds the run's JSON (one process argument may hold 128 KiB).
const MaxRetentionRunBytes = 100 << 10

// RetentionArgs returns the container args of one retention run.
func RetentionArgs(configPath, summaryPath string, run RetentionRun) ([]string, error) {
	b, err := json.Marshal(run)
	if err != nil {
		return nil, fmt.Errorf("encode retention run: %w", err)
	}
	if len(b) > MaxRetentionRunBytes {
		return nil, fmt.Errorf("the Registry's %d RetentionPolicies take %d bytes, more than a run Job's argument may (%d): merge some of them", len(run.Policies), len(b), MaxRetentionRunBytes)
	}
	return []string{"registry", "retention", "--config", configPath, "--summary-file", summaryPath, "--run", string(b)}, nil
}

// RetentionRun is what one run does.
type RetentionRun struct {
	// Policy names the policy the run carries out (one of Policies).
	Policy string `json:"policy"`
	// Enforce deletes; otherwise the run only plans.
	Enforce bool `json:"enforce,omitempty"`
	// Policies are all RetentionPolicies of the Registry.
	Policies []RetentionPolicy `json:"policies"`
	// InUse are the Registry's images the cluster's pods run or are about to run: always
	// kept.
	InUse []ImageInUse `json:"inUse,omitempty"`
}

// ImageInUse is an image of the Registry a pod uses: by digest (its image ID) or by tag.
type ImageInUse struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest,omitempty"`
	Tag        string `json:"tag,omitempty"`
}

// RetentionPolicy is a RetentionPolicy's spec as the planner reads it.
type RetentionPolicy struct {
	Name                string          `json:"name"`
	Repositories        []string        `json:"repositories"`
	ExcludeRepositories []string        `json:"excludeRepositories,omitempty"`
	Rules               []RetentionRule `json:"rules"`
	KeepUntagged        bool            `json:"keepUntagged,omitempty"`
	MaxDeletionPercent  int             `json:"maxDeletionPercent"`
	MinAge              Duration        `json:"minAge"`
}

// RetentionRule is one keep rule.
type RetentionRule struct {
	Name         string   `json:"name"`
	Glob         string   `json:"glob,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Semver       string   `json:"semver,omitempty"`
	KeepLast     int      `json:"keepLast,omitempty"`
	PushedWithin Duration `json:"pushedWithin,omitempty"`
	PulledWithin Duration `json:"pulledWithin,omitempty"`
}

// Retention results.
const (
	// RetentionPlanned: a DryRun run made its plan.
	RetentionPlanned = "Planned"
	// RetentionSucceeded: an enforced run carried out its plan (skipping what changed).
	RetentionSucceeded = "Succeeded"
	// RetentionPartiallyFailed: an enforced run could not delete some of what it planned;
	// the next run retries.
	RetentionPartiallyFailed = "PartiallyFailed"
	// RetentionCeilingExceeded: an enforced run's plan deletes more than the ceiling
	// allows; it deleted nothing.
	RetentionCeilingExceeded = "CeilingExceeded"
	// RetentionFailed: the run could not read the registry or plan.
	RetentionFailed = "Failed"
)

// RetentionSummary is what a run reports. It must fit a termination message (4 KiB):
// FitRetentionSummary trims it.
type RetentionSummary struct {
	Result            string          `json:"result"`
	Message           string          `json:"message,omitempty"`
	Enforced          bool            `json:"enforced,omitempty"`
	EvaluationTime    time.Time       `json:"evaluationTime"`
	PlanHash          string          `json:"planHash,omitempty"`
	Repositories      int64           `json:"repositories"`
	Artifacts         int64           `json:"artifacts"`
	ArtifactsKept     int64           `json:"artifactsKept"`
	ArtifactsToDelete int64           `json:"artifactsToDelete"`
	Tags              int64           `json:"tags"`
	TagsKept          int64           `json:"tagsKept"`
	TagsToRemove      int64           `json:"tagsToRemove"`
	ManifestsToDelete int64           `json:"manifestsToDelete"`
	ReclaimableBytes  int64           `json:"reclaimableBytes"`
	CeilingExceeded   bool            `json:"ceilingExceeded,omitempty"`
	Sample            []RetentionStep `json:"sample,omitempty"`
	ManifestsDeleted  int64           `json:"manifestsDeleted"`
	TagsRemoved       int64           `json:"tagsRemoved"`
	Skipped           int64           `json:"skipped"`
	Failed            int64           `json:"failed"`
	Errors            []string        `json:"errors,omitempty"`
}

// RetentionStep is one action of a plan.
type RetentionStep struct {
	Action     string   `json:"action"`
	Repository string   `json:"repository"`
	Digest     string   `json:"digest"`
	Tags       []string `json:"tags,omitempty"`
	Reason     string   `json:"reason,omitempty"`
}

// RetentionSummaryLimit is the most a summary may take (a termination message holds 4096
// bytes).
const RetentionSummaryLimit = 4000

// FitRetentionSummary encodes s within RetentionSummaryLimit bytes: long strings are cut,
// then sample entries dropped from the end.
func FitRetentionSummary(s RetentionSummary) []byte {
	cut := func(v string, n int) string {
		if len(v) > n {
			return v[:n-3] + "..."
		}
		return v
	}
	s.Message = cut(s.Message, 512)
	if len(s.Errors) > 3 {
		s.Errors = s.Errors[:3]
	}
	for i := range s.Errors {
		s.Errors[i] = cut(s.Errors[i], 200)
	}
	sample := make([]RetentionStep, len(s.Sample))
	for i, st := range s.Sample {
		st.Reason = cut(st.Reason, 160)
		st.Tags = slices.Clone(st.Tags)
		if len(st.Tags) > 5 {
			st.Tags = append(st.Tags[:4:4], fmt.Sprintf("(+%d more)", len(st.Tags)-4))
		}
		for j := range st.Tags {
			st.Tags[j] = cut(st.Tags[j], 64)
		}
		st.Repository = cut(st.Repository, 128)
		sample[i] = st
	}
	s.Sample = sample
	for {
		b, _ := json.Marshal(s)
		if len(b) <= RetentionSummaryLimit || (len(s.Sample) == 0 && len(s.Errors) == 0) {
			return b
		}
		if len(s.Sample) > 0 {
			s.Sample = s.Sample[:len(s.Sample)-1]
		} else {
			s.Errors = s.Errors[:len(s.Errors)-1]
		}
	}
}
