// Package scan scans images for known vulnerabilities and keeps the results with the
// image. The scanner is Trivy, run as a program (its JSON output is read with the small
// types here, not with Trivy's module); a result becomes a Report, stored in the registry
// as an OCI referrer of the scanned manifest (ArtifactType), so it travels with
// replication and backups and `oras discover` lists it.
package scan

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Severity of a vulnerability, as scanners grade it.
type Severity string

// Severities, lowest first.
const (
	SeverityUnknown  Severity = "UNKNOWN"
	SeverityLow      Severity = "LOW"
	SeverityMedium   Severity = "MEDIUM"
	SeverityHigh     Severity = "HIGH"
	SeverityCritical Severity = "CRITICAL"
)

// Severities lists every severity, lowest first.
var Severities = []Severity{SeverityUnknown, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}

// Rank orders severities: UNKNOWN 0 … CRITICAL 4; anything else is UNKNOWN's rank.
func (s Severity) Rank() int {
	if i := slices.Index(Severities, s); i >= 0 {
		return i
	}
	return 0
}

// ParseSeverity accepts a severity in any case.
func ParseSeverity(s string) (Severity, error) {
	sev := Severity(strings.ToUpper(strings.TrimSpace(s)))
	if !slices.Contains(Severities, sev) {
		return "", fmt.Errorf("unknown severity %q (want one of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL)", s)
	}
	return sev, nil
}

// Report is what a scan found in one image manifest.
type Report struct {
	// Subject is the digest of the manifest scanned.
	Subject string `json:"subject"`
	// Scanner names the scanner and its version.
	Scanner Scanner `json:"scanner"`
	// ScannedAt is when the scan ran.
	ScannedAt time.Time `json:"scannedAt"`
	// OS is the operating system found ("alpine 3.20.3"); empty when none was.
	OS string `json:"os,omitempty"`
	// Vulnerabilities found, most severe first.
	Vulnerabilities []Vulnerability `json:"vulnerabilities"`
}

// Scanner identifies a scanner and the database it used.
type Scanner struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// DBUpdatedAt is when the vulnerability database was built.
	DBUpdatedAt *time.Time `json:"dbUpdatedAt,omitempty"`
}

// Vulnerability is one vulnerability of one installed package.
type Vulnerability struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	// Package is the package's name; InstalledVersion the version in the image.
	Package          string `json:"package"`
	InstalledVersion string `json:"installedVersion"`
	// FixedVersion is the first fixed version; empty when there is no fix yet.
	FixedVersion string `json:"fixedVersion,omitempty"`
	// Target is where the package was found ("alpine 3.20.3", "app/package-lock.json").
	Target string `json:"target,omitempty"`
	Title  string `json:"title,omitempty"`
	URL    string `json:"url,omitempty"`
}

// Fixable is true when a fixed version exists.
func (v Vulnerability) Fixable() bool { return v.FixedVersion != "" }

// String is "CVE-… (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0)".
func (v Vulnerability) String() string {
	fix := "no fix yet"
	if v.Fixable() {
		fix = "fixed in " + v.FixedVersion
	}
	return fmt.Sprintf("%s (%s, %s %s, %s)", v.ID, v.Severity, v.Package, v.InstalledVersion, fix)
}

// Summary counts a report's vulnerabilities by severity.
type Summary struct {
	Critical int `json:"critical"`
	High     int `json:"high"`
	Medium   int `json:"medium"`
	Low      int `json:"low"`
	Unknown  int `json:"unknown"`
	// Fixable is how many of them have a fixed version.
	Fixable int `json:"fixable"`
}

// Total is the number of vulnerabilities.
func (s Summary) Total() int { return s.Critical + s.High + s.Medium + s.Low + s.Unknown }

// Summary counts the report's vulnerabilities.
func (r *Report) Summary() Summary {
	var s Summary
	for _, v := range r.Vulnerabilities {
		switch v.Severity {
		case SeverityCritical:
			s.Critical++
		case SeverityHigh:
			s.High++
		case SeverityMedium:
			s.Medium++
		case SeverityLow:
			s.Low++
		default:
			s.Unknown++
		}
		if v.Fixable() {
			s.Fixable++
		}
	}
	return s
}

// sortVulnerabilities orders most severe first, then by ID, package and version, and
// drops repeats (the same package found twice in one target).
func sortVulnerabilities(vs []Vulnerability) []Vulnerability {
	slices.SortFunc(vs, func(a, b Vulnerability) int {
		return cmp.Or(b.Severity.Rank()-a.Severity.Rank(), cmp.Compare(a.ID, b.ID), cmp.Compare(a.Package, b.Package),
			cmp.Compare(a.InstalledVersion, b.InstalledVersion), cmp.Compare(a.Target, b.Target))
	})
	return slices.CompactFunc(vs, func(a, b Vulnerability) bool {
		return a.ID == b.ID && a.Package == b.Package && a.InstalledVersion == b.InstalledVersion && a.Target == b.Target
	})
}

// Limits on what is read: a report is hostile input until parsed.
const (
	// MaxReportBytes bounds Trivy's JSON output.
	MaxReportBytes = 32 << 20
	// MaxStoredReportBytes bounds a stored report, read back on admission.
	MaxStoredReportBytes = 8 << 20
	// MaxVulnerabilities bounds the vulnerabilities kept in one report.
	MaxVulnerabilities = 20000
)

// trivyReport is the part of Trivy's JSON report (schema 2) used here.
type trivyReport struct {
	SchemaVersion int `json:"SchemaVersion"`
	Metadata      struct {
		OS *struct {
			Family string `json:"Family"`
			Name   string `json:"Name"`
		} `json:"OS"`
	} `json:"Metadata"`
	Results []struct {
		Target          string `json:"Target"`
		Vulnerabilities []struct {
			VulnerabilityID  string `json:"VulnerabilityID"`
			PkgName          string `json:"PkgName"`
			InstalledVersion string `json:"InstalledVersion"`
			FixedVersion     string `json:"FixedVersion"`
			Severity         string `json:"Severity"`
			Title            string `json:"Title"`
			PrimaryURL       string `json:"PrimaryURL"`
		} `json:"Vulnerabilities"`
	} `json:"Results"`
}

// parseTrivy turns Trivy's JSON report into the vulnerabilities and OS of a Report.
func parseTrivy(data []byte) (os string, vulns []Vulnerability, err error) {
	var tr trivyReport
	if err := json.Unmarshal(data, &tr); err != nil {
		return "", nil, fmt.Errorf("read trivy's report: %w", err)
	}
	if tr.SchemaVersion != 2 {
		return "", nil, fmt.Errorf("trivy's report has schema version %d; this Dockyard reads version 2", tr.SchemaVersion)
	}
	if tr.Metadata.OS != nil {
		os = strings.TrimSpace(tr.Metadata.OS.Family + " " + tr.Metadata.OS.Name)
	}
	vulns = []Vulnerability{}
	for _, res := range tr.Results {
		for _, v := range res.Vulnerabilities {
			if v.VulnerabilityID == "" {
				continue
			}
			sev, err := ParseSeverity(v.Severity)
			if err != nil {
				sev = SeverityUnknown
			}
			vulns = append(vulns, Vulnerability{ID: v.VulnerabilityID, Severity: sev, Package: v.PkgName,
				InstalledVersion: v.InstalledVersion, FixedVersion: v.FixedVersion, Target: res.Target,
				Title: truncate(v.Title, 200), URL: truncate(v.PrimaryURL, 500)})
		}
	}
	vulns = sortVulnerabilities(vulns)
	if len(vulns) > MaxVulnerabilities {
		return "", nil, fmt.Errorf("trivy reported %d vulnerabilities, more than the %d a report holds", len(vulns), MaxVulnerabilities)
	}
	return os, vulns, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
