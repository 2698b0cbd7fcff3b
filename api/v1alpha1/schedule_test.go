package v1alpha1

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/distribution/reference"
	"github.com/robfig/cron/v3"
)

// buildCronPattern builds CronSchedulePattern from its parts.
func buildCronPattern() string {
	step := "(/0*[1-9][0-9]{0,3})?"
	term := func(v string, q bool) string {
		alt := "[*]"
		if q {
			alt += "|[?]"
		}
		return "(" + alt + "|" + v + "(-" + v + ")?)" + step
	}
	field := func(v string, q bool) string { t := term(v, q); return t + "(," + t + ")*" }
	minute := "([0-5]?[0-9])"
	hour := "([01]?[0-9]|2[0-3])"
	dom := "(0?[1-9]|[12][0-9]|3[01])"
	month := "(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
	dow := "([0-6]|sun|mon|tue|wed|thu|fri|sat)"
	return "(?i)^" + field(minute, false) + " +" + field(hour, false) + " +" + field(dom, true) +
		" +" + field(month, false) + " +" + field(dow, true) + "$"
}

// One rule, one source: the constant is what the builder makes, the CRD marker carries the
// constant, and on a table of schedules the pattern agrees with the cron parser Kubernetes
// validates CronJob schedules with (except where the comment says).
func TestCronSchedulePattern(t *testing.T) {
	if got := buildCronPattern(); got != CronSchedulePattern {
		t.Fatalf("CronSchedulePattern is stale; regenerate it:\n%s", got)
	}
	for _, file := range []string{"registry_types.go", "retentionpolicy_types.go"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), "self.matches('"+CronSchedulePattern+"')") {
			t.Fatalf("the schedule's CEL rule in %s does not use CronSchedulePattern", file)
		}
	}
	re := regexp.MustCompile(CronSchedulePattern)
	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	cases := []struct {
		s    string
		want bool
	}{
		{"0 3 * * *", true}, {"*/15 * * * *", true}, {"0 0 1 1 *", true}, {"59 23 31 12 6", true},
		{"0 3 * * MON-FRI", true}, {"0 3 * * sun", true}, {"0 3 ? * ?", true}, {"0 3 * JAN,JUL *", true},
		{"5,10,15 1-5/2 * * *", true}, {"0 0 */2 * *", true}, {"3/15 * * * *", true}, {"00 03 01 01 0", true},
		{"0 3  * * *", true},
		{"60 * * * *", false}, {"* 24 * * *", false}, {"* * 0 * *", false}, {"* * 32 * *", false},
		{"* * * 0 *", false}, {"* * * 13 *", false}, {"* * * * 7", false}, {"* * * * MON-FOO", false},
		{"* * * FOO *", false}, {"*/0 * * * *", false}, {"* * * *", false}, {"* * * * * *", false},
		{"1-2-3 * * * *", false}, {"0 3 * * L", false}, {"0 3 W * *", false}, {"-1 * * * *", false},
	}
	// Stricter than the parser on purpose: `?` only where cron means "no specific value"
	// (day fields), and no empty list items.
	stricter := []string{"? * * * *", ",1 * * * *", "1, * * * *"}
	for _, tc := range cases {
		_, perr := parser.Parse(tc.s)
		if got := re.MatchString(tc.s); got != tc.want {
			t.Errorf("pattern on %q = %v, want %v", tc.s, got, tc.want)
		}
		if (perr == nil) != tc.want {
			t.Errorf("cron parser on %q: err %v, but the table says valid=%v", tc.s, perr, tc.want)
		}
	}
	for _, s := range stricter {
		if _, perr := parser.Parse(s); perr != nil || re.MatchString(s) {
			t.Errorf("%q: parser err %v, pattern %v; want accepted by the parser, refused by the pattern", s, perr, re.MatchString(s))
		}
	}
}

func TestImageReferencePattern(t *testing.T) {
	if reference.ReferenceRegexp.String() != ImageReferencePattern {
		t.Fatalf("ImageReferencePattern is stale; distribution/reference now says:\n%s", reference.ReferenceRegexp.String())
	}
	src, err := os.ReadFile("registry_types.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "+kubebuilder:validation:Pattern=`"+ImageReferencePattern+"`") {
		t.Fatal("spec.image's Pattern marker does not use ImageReferencePattern")
	}
	re := regexp.MustCompile(ImageReferencePattern)
	for s, want := range map[string]bool{
		"dockyard:dev": true, "ghcr.io/dockyard-dev/dockyard:v0.2.0": true, "registry:5000/team/app@sha256:" + strings.Repeat("a", 64): true,
		"localhost/x": true, "registry.io/Upper": false, "a b": false, "x:tag:tag": false, "": false, "http://ghcr.io/x": false,
	} {
		if got := re.MatchString(s); got != want {
			t.Errorf("pattern on %q = %v, want %v", s, got, want)
		}
	}
}
