// Package compliance decides whether an image may run: its newest vulnerability report
// (package scan) against a policy of severities, fixability and exemptions. The decision
// is pure, so the admission webhook, the registry and the status all give the same answer
// with the same words.
package compliance

import (
	"fmt"
	"strings"
	"time"

	"github.com/dockyard-dev/dockyard/internal/scan"
)

// Policy is what makes an image non-compliant.
type Policy struct {
	// Severity blocks an image with a vulnerability at or above it; empty blocks on no
	// severity.
	Severity scan.Severity
	// FixableOnly counts only vulnerabilities that have a fixed version.
	FixableOnly bool
	// Exemptions are vulnerabilities accepted until they expire.
	Exemptions []Exemption
	// BlockUnscanned makes an image without a report non-compliant; otherwise it is let
	// through until it is scanned.
	BlockUnscanned bool
}

// Exemption accepts one vulnerability (by ID) until Expires, for a recorded reason.
type Exemption struct {
	ID     string
	Reason string
	// Expires ends the exemption; zero never does.
	Expires time.Time
}

// Reason is why a verdict is what it is.
type Reason string

// Reasons.
const (
	// Compliant: nothing the policy blocks on was found.
	Compliant Reason = "Compliant"
	// Vulnerable: a vulnerability the policy blocks on was found and is not exempted.
	Vulnerable Reason = "Vulnerable"
	// NotScanned: there is no report yet and the policy blocks unscanned images.
	NotScanned Reason = "NotScanned"
	// NotScannedAllowed: there is no report yet, and the policy lets it through.
	NotScannedAllowed Reason = "NotScannedAllowed"
)

// Verdict is the decision about one image.
type Verdict struct {
	Allowed bool
	Reason  Reason
	// Blocking are the vulnerabilities that make the image non-compliant.
	Blocking []scan.Vulnerability
	// Exempted are vulnerabilities that would block but are exempted, with the exemption.
	Exempted []Exempted
}

// Exempted is a blocking vulnerability let through by an exemption.
type Exempted struct {
	Vulnerability scan.Vulnerability
	Exemption     Exemption
}

// Evaluate decides about the image whose newest report is r (nil: not scanned) at now.
func Evaluate(p Policy, r *scan.Report, now time.Time) Verdict {
	if r == nil {
		if p.BlockUnscanned {
			return Verdict{Reason: NotScanned}
		}
		return Verdict{Allowed: true, Reason: NotScannedAllowed}
	}
	v := Verdict{Allowed: true, Reason: Compliant}
	if p.Severity == "" {
		return v
	}
	for _, vuln := range r.Vulnerabilities {
		if vuln.Severity.Rank() < p.Severity.Rank() || (p.FixableOnly && !vuln.Fixable()) {
			continue
		}
		if e, ok := p.exemption(vuln.ID, now); ok {
			v.Exempted = append(v.Exempted, Exempted{Vulnerability: vuln, Exemption: e})
			continue
		}
		v.Blocking = append(v.Blocking, vuln)
	}
	if len(v.Blocking) > 0 {
		v.Allowed, v.Reason = false, Vulnerable
	}
	return v
}

// exemption returns the live exemption of id, if any.
func (p Policy) exemption(id string, now time.Time) (Exemption, bool) {
	for _, e := range p.Exemptions {
		if strings.EqualFold(e.ID, id) && (e.Expires.IsZero() || now.Before(e.Expires)) {
			return e, true
		}
	}
	return Exemption{}, false
}

// maxListed bounds the vulnerabilities a message names.
const maxListed = 5

// Message explains the verdict about image to a person: what was found and how to get
// past it. It is empty for an allowed image.
func (v Verdict) Message(image string, p Policy) string {
	switch {
	case v.Allowed:
		return ""
	case v.Reason == NotScanned:
		return fmt.Sprintf("image %s has not been scanned yet, and the policy refuses unscanned images; "+
			"wait for its scan, or ask the registry's owner to scan it now", image)
	}
	var b strings.Builder
	what := "vulnerabilities"
	if p.FixableOnly {
		what = "fixable vulnerabilities"
	}
	fmt.Fprintf(&b, "image %s has %d %s at or above %s:", image, len(v.Blocking), what, p.Severity)
	for i, vuln := range v.Blocking {
		if i == maxListed {
			fmt.Fprintf(&b, " and %d more", len(v.Blocking)-maxListed)
			break
		}
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s %s", sep, vuln)
	}
	b.WriteString("; rebuild it with the fixed packages, or add an exemption (ID, reason, expiry) to the registry's scanning policy")
	return b.String()
}
