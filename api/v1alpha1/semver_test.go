package v1alpha1

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
)

// One rule, one source: the CRD's CEL rule carries SemverConstraintPattern, and on a table
// of constraints the pattern accepts what the planner's parser accepts.
func TestSemverConstraintPattern(t *testing.T) {
	src, err := os.ReadFile("retentionpolicy_types.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "self.matches('"+SemverConstraintPattern+"')") {
		t.Fatal("the semver CEL rule in retentionpolicy_types.go does not use SemverConstraintPattern")
	}
	re := regexp.MustCompile(SemverConstraintPattern)
	cases := []struct {
		s    string
		want bool
	}{
		{">=1.2.0 <2", true}, {"~1.4", true}, {"^2", true}, {"1.x", true}, {"1.2 - 1.4.5", true},
		{">=1.2.0, <2", true}, {"1.x || >=3", true}, {"v1.2.3", true}, {"=1.2.3", true}, {"!=1.2.3", true},
		{"~>1.2", true}, {"*", true}, {"1.2.3-rc.1", true}, {">= 1.2", true}, {"<=2.0.0+build.5", true},
		{"1.2.X", true}, {">1 <2 || >3 <4", true},
		{"latest", false}, {">=", false}, {"1.2.3.4", false}, {"> > 1", false}, {"1..2", false},
		{"||", false}, {"main-*", false}, {"1.2 -", false}, {"a.b.c", false},
	}
	for _, c := range cases {
		if got := re.MatchString(c.s); got != c.want {
			t.Errorf("pattern on %q = %v, want %v", c.s, got, c.want)
		}
		_, perr := semver.NewConstraint(c.s)
		if (perr == nil) != c.want {
			t.Errorf("the planner's parser on %q: err %v, but the table says valid=%v", c.s, perr, c.want)
		}
	}
}
