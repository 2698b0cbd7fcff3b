package compliance

import (
	"strings"
	"testing"
	"time"

	"github.com/dockyard-dev/dockyard/internal/scan"
)

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	critical := scan.Vulnerability{ID: "CVE-2099-0001", Severity: scan.SeverityCritical, Package: "musl", InstalledVersion: "1.2.4-r2", FixedVersion: "1.2.5-r0"}
	highUnfixed := scan.Vulnerability{ID: "CVE-2099-0002", Severity: scan.SeverityHigh, Package: "zlib", InstalledVersion: "1.3.1-r0"}
	medium := scan.Vulnerability{ID: "CVE-2099-0003", Severity: scan.SeverityMedium, Package: "zlib", InstalledVersion: "1.3.1-r0", FixedVersion: "1.3.2-r0"}
	report := &scan.Report{Vulnerabilities: []scan.Vulnerability{critical, highUnfixed, medium}}
	ids := func(vs []scan.Vulnerability) string {
		var s []string
		for _, v := range vs {
			s = append(s, v.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name     string
		policy   Policy
		report   *scan.Report
		allowed  bool
		reason   Reason
		blocking string
		exempted int
	}{
		{name: "no severity blocks nothing", policy: Policy{}, report: report, allowed: true, reason: Compliant},
		{name: "at or above HIGH", policy: Policy{Severity: scan.SeverityHigh}, report: report, reason: Vulnerable,
			blocking: "CVE-2099-0001,CVE-2099-0002"},
		{name: "at or above CRITICAL", policy: Policy{Severity: scan.SeverityCritical}, report: report, reason: Vulnerable,
			blocking: "CVE-2099-0001"},
		{name: "fixable only skips the unfixed one", policy: Policy{Severity: scan.SeverityMedium, FixableOnly: true}, report: report,
			reason: Vulnerable, blocking: "CVE-2099-0001,CVE-2099-0003"},
		{name: "clean image", policy: Policy{Severity: scan.SeverityLow, BlockUnscanned: true}, report: &scan.Report{}, allowed: true, reason: Compliant},
		{name: "exemption lets one through", policy: Policy{Severity: scan.SeverityHigh, Exemptions: []Exemption{
			{ID: "cve-2099-0002", Reason: "no fix upstream", Expires: now.Add(time.Hour)}}}, report: report, reason: Vulnerable,
			blocking: "CVE-2099-0001", exempted: 1},
		{name: "exemptions of every blocking one allow", policy: Policy{Severity: scan.SeverityHigh, Exemptions: []Exemption{
			{ID: "CVE-2099-0001", Reason: "patched in place"}, {ID: "CVE-2099-0002", Reason: "no fix", Expires: now.Add(time.Minute)}}},
			report: report, allowed: true, reason: Compliant, exempted: 2},
		{name: "an expired exemption does not count", policy: Policy{Severity: scan.SeverityCritical, Exemptions: []Exemption{
			{ID: "CVE-2099-0001", Reason: "was patched", Expires: now}}}, report: report, reason: Vulnerable, blocking: "CVE-2099-0001"},
		{name: "an exemption for the repository applies", policy: Policy{Severity: scan.SeverityCritical, Exemptions: []Exemption{
			{ID: "CVE-2099-0001", Reason: "r", Repositories: []string{"team-b/app", "team-a/app"}}}}, report: report, allowed: true,
			reason: Compliant, exempted: 1},
		{name: "an exemption for a prefix applies below it", policy: Policy{Severity: scan.SeverityCritical, Exemptions: []Exemption{
			{ID: "CVE-2099-0001", Reason: "r", Repositories: []string{"team-a/**"}}}}, report: report, allowed: true,
			reason: Compliant, exempted: 1},
		{name: "an exemption for other repositories does not", policy: Policy{Severity: scan.SeverityCritical, Exemptions: []Exemption{
			{ID: "CVE-2099-0001", Reason: "r", Repositories: []string{"team-a/app/sub", "team-a", "team-ab/**"}}}}, report: report,
			reason: Vulnerable, blocking: "CVE-2099-0001"},
		{name: "unscanned blocked", policy: Policy{Severity: scan.SeverityHigh, BlockUnscanned: true}, reason: NotScanned},
		{name: "unscanned let through", policy: Policy{Severity: scan.SeverityHigh}, allowed: true, reason: NotScannedAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Evaluate(tc.policy, "team-a/app", tc.report, now)
			if v.Allowed != tc.allowed || v.Reason != tc.reason || ids(v.Blocking) != tc.blocking || len(v.Exempted) != tc.exempted {
				t.Errorf("Evaluate = allowed %v, %s, blocking %q, %d exempted; want %v, %s, %q, %d",
					v.Allowed, v.Reason, ids(v.Blocking), len(v.Exempted), tc.allowed, tc.reason, tc.blocking, tc.exempted)
			}
			if msg := v.Message("reg.example/app@sha256:ab", tc.policy); (msg == "") != v.Allowed {
				t.Errorf("Message = %q for allowed=%v", msg, v.Allowed)
			}
		})
	}
}

func TestMessageNamesTheImageTheVulnerabilitiesAndTheWayOut(t *testing.T) {
	p := Policy{Severity: scan.SeverityHigh}
	var vulns []scan.Vulnerability
	for i := range 7 {
		vulns = append(vulns, scan.Vulnerability{ID: "CVE-2099-000" + string(rune('1'+i)), Severity: scan.SeverityCritical,
			Package: "musl", InstalledVersion: "1.2.4-r2", FixedVersion: "1.2.5-r0"})
	}
	v := Evaluate(p, "app", &scan.Report{Vulnerabilities: vulns}, time.Now())
	msg := v.Message("registry.team-a.svc:5000/app@sha256:ab", p)
	for _, want := range []string{
		"image registry.team-a.svc:5000/app@sha256:ab has 7 vulnerabilities at or above HIGH:",
		"CVE-2099-0001 (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0)",
		"CVE-2099-0005", "and 2 more", "add an exemption",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "CVE-2099-0006") {
		t.Errorf("message %q lists more than 5", msg)
	}
	unscanned := Evaluate(Policy{BlockUnscanned: true}, "app", nil, time.Now()).Message("r/app@sha256:ab", Policy{BlockUnscanned: true})
	if !strings.Contains(unscanned, "has not been scanned yet") {
		t.Errorf("unscanned message = %q", unscanned)
	}
}
