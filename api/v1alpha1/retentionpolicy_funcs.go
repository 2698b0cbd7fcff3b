package v1alpha1

import "time"

// SemverConstraintPattern is the RE2 pattern a rule's tags.semver must match (the CEL rule
// in retentionpolicy_types.go carries it; TestSemverConstraintPattern keeps the two equal
// and checks the pattern against the constraint parser the planner uses).
const SemverConstraintPattern = `^ *((!=|>=|=>|<=|=<|~>|[=><~^])? *v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?|v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)? +- +v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?)(( *, *| +)((!=|>=|=>|<=|=<|~>|[=><~^])? *v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?|v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)? +- +v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?))*( *[|][|] *((!=|>=|=>|<=|=<|~>|[=><~^])? *v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?|v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)? +- +v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?)(( *, *| +)((!=|>=|=>|<=|=<|~>|[=><~^])? *v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?|v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)? +- +v?([0-9]+|[xX*])([.]([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?))*)* *$`

// Retention defaults.
const (
	DefaultMaxDeletionPercent = 50
	DefaultRetentionMinAge    = time.Hour
)

// GetMode is spec.mode with its default.
func (p *RetentionPolicy) GetMode() RetentionMode {
	if p.Spec.Mode == "" {
		return RetentionDryRun
	}
	return p.Spec.Mode
}

// MaxDeletionPercent is spec.safety.maxDeletionPercent with its default.
func (p *RetentionPolicy) MaxDeletionPercent() int {
	if p.Spec.Safety.MaxDeletionPercent == nil {
		return DefaultMaxDeletionPercent
	}
	return int(*p.Spec.Safety.MaxDeletionPercent)
}

// MinAge is spec.safety.minAge with its default.
func (p *RetentionPolicy) MinAge() time.Duration {
	if p.Spec.Safety.MinAge == nil {
		return DefaultRetentionMinAge
	}
	return p.Spec.Safety.MinAge.Duration
}

// RuleName is the name of rules[i] in reasons.
func (p *RetentionPolicy) RuleName(i int) string {
	if n := p.Spec.Rules[i].Name; n != "" {
		return n
	}
	return "rules[" + itoa(i) + "]"
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
