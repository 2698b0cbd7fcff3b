// Package compliance decides whether an image may run: its newest vulnerability report
// (package scan) against a policy of severities, fixability and exemptions, and its
// signatures against the policy's keys. The decision is pure (the Checker only fetches
// what it needs), so the admission webhook, the registry and the status all give the same
// answer with the same words.
package compliance

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"time"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
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
	// Signatures, when it has keys, requires a cosign signature by one of them.
	Signatures *Keys
	// Exemption tells a person how to get one, at the end of a refusal's message.
	ExemptionHint string
}

// Exemption accepts one vulnerability (by ID) until Expires, for a recorded reason.
type Exemption struct {
	ID     string
	Reason string
	// Expires ends the exemption; zero never does.
	Expires time.Time
	// Repositories limits it to these repositories (exact, or a prefix ending in /**);
	// empty: every repository.
	Repositories []string
}

// appliesTo reports whether the exemption covers repository repo.
func (e Exemption) appliesTo(repo string) bool {
	if len(e.Repositories) == 0 {
		return true
	}
	for _, r := range e.Repositories {
		if prefix, ok := strings.CutSuffix(r, "/**"); ok {
			if strings.HasPrefix(repo, prefix+"/") {
				return true
			}
		} else if r == repo {
			return true
		}
	}
	return false
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
	// Unsigned: the policy requires a signature by one of its keys and there is none.
	Unsigned Reason = "Unsigned"
)

// Verdict is the decision about one image.
type Verdict struct {
	Allowed bool
	Reason  Reason
	// Blocking are the vulnerabilities that make the image non-compliant.
	Blocking []scan.Vulnerability
	// Exempted are vulnerabilities that would block but are exempted, with the exemption.
	Exempted []Exempted
	// Unsigned is set when the policy requires a signature and none of its keys signed
	// the image (whatever Reason says about vulnerabilities).
	Unsigned bool
}

// Exempted is a blocking vulnerability let through by an exemption.
type Exempted struct {
	Vulnerability scan.Vulnerability
	Exemption     Exemption
}

// Evaluate decides about the vulnerabilities of an image of repository repo whose newest
// report is r (nil: not scanned) at now. Signatures are the Checker's part.
func Evaluate(p Policy, repo string, r *scan.Report, now time.Time) Verdict {
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
		if e, ok := p.exemption(vuln.ID, repo, now); ok {
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

// exemption returns the live exemption of id in repo, if any.
func (p Policy) exemption(id, repo string, now time.Time) (Exemption, bool) {
	for _, e := range p.Exemptions {
		if strings.EqualFold(e.ID, id) && (e.Expires.IsZero() || now.Before(e.Expires)) && e.appliesTo(repo) {
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
	if v.Allowed {
		return ""
	}
	var parts []string
	switch v.Reason {
	case NotScanned:
		parts = append(parts, fmt.Sprintf("image %s has not been scanned yet, and the policy refuses unscanned images: "+
			"wait for its scan (usually a minute after the push)", image))
	case Vulnerable:
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
		hint := p.ExemptionHint
		if hint == "" {
			hint = "the registry's scanning policy"
		}
		b.WriteString("; rebuild it with the fixed packages, or add an exemption (id, reason, expires) to " + hint)
		parts = append(parts, b.String())
	}
	if v.Unsigned {
		n := 0
		if p.Signatures != nil {
			n = len(p.Signatures.Keys)
		}
		parts = append(parts, fmt.Sprintf("image %s is not signed by any of the %d keys the policy trusts: "+
			"sign it with `cosign sign --key <key> %s` (a key whose public half is in the policy)", image, n, image))
	}
	return strings.Join(parts, "; ")
}

// FromConfig converts a policy as the operator hands it to its judges (the admission
// webhook and the registry) and returns it with the scanner's public keys (none when
// the policy carries none: then no image counts as scanned).
func FromConfig(c registryconfig.CompliancePolicy) (Policy, []ed25519.PublicKey, error) {
	out := Policy{FixableOnly: c.FixableOnly, BlockUnscanned: c.BlockUnscanned, ExemptionHint: c.ExemptionHint}
	if c.Severity != "" {
		sev, err := scan.ParseSeverity(c.Severity)
		if err != nil {
			return out, nil, fmt.Errorf("severity: %w", err)
		}
		out.Severity = sev
	}
	for _, e := range c.Exemptions {
		out.Exemptions = append(out.Exemptions, Exemption{ID: e.ID, Reason: e.Reason, Expires: e.Expires,
			Repositories: e.Repositories})
	}
	if len(c.SignatureKeys) > 0 {
		keys, err := ParseKeys(c.SignatureKeys)
		if err != nil {
			return out, nil, fmt.Errorf("signatures.publicKeys: %w", err)
		}
		out.Signatures = keys
	}
	var scanKeys []ed25519.PublicKey
	if c.ScannerKeys != "" {
		keys, err := scan.ParsePublicKeys([]byte(c.ScannerKeys))
		if err != nil {
			return out, nil, fmt.Errorf("the scanner's public key: %w", err)
		}
		scanKeys = keys
	}
	return out, scanKeys, nil
}
