package scan

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestParseTrivy(t *testing.T) {
	// Trivy's JSON (schema 2), cut down to two targets; the same vulnerability of the same
	// package twice in one target is one finding, and an unknown severity is UNKNOWN.
	const report = `{"SchemaVersion":2,"ArtifactName":"r/app@sha256:ab","Metadata":{"OS":{"Family":"alpine","Name":"3.20.3"}},
	"Results":[
	 {"Target":"r/app (alpine 3.20.3)","Class":"os-pkgs","Vulnerabilities":[
	   {"VulnerabilityID":"CVE-2099-0002","PkgName":"zlib","InstalledVersion":"1.3.1-r0","Severity":"HIGH","Status":"affected"},
	   {"VulnerabilityID":"CVE-2099-0001","PkgName":"musl","InstalledVersion":"1.2.4-r2","FixedVersion":"1.2.5-r0","Severity":"CRITICAL","Title":"t"},
	   {"VulnerabilityID":"CVE-2099-0001","PkgName":"musl","InstalledVersion":"1.2.4-r2","FixedVersion":"1.2.5-r0","Severity":"CRITICAL","Title":"t"}]},
	 {"Target":"app/package-lock.json","Class":"lang-pkgs","Vulnerabilities":[
	   {"VulnerabilityID":"CVE-2021-23337","PkgName":"lodash","InstalledVersion":"4.17.20","FixedVersion":"4.17.21","Severity":"whatever"},
	   {"PkgName":"no-id"}]},
	 {"Target":"empty","Class":"lang-pkgs"}]}`
	os, vulns, err := parseTrivy([]byte(report))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vulns {
		got = append(got, v.String()+" @"+v.Target)
	}
	want := []string{
		"CVE-2099-0001 (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0) @r/app (alpine 3.20.3)",
		"CVE-2099-0002 (HIGH, zlib 1.3.1-r0, no fix yet) @r/app (alpine 3.20.3)",
		"CVE-2021-23337 (UNKNOWN, lodash 4.17.20, fixed in 4.17.21) @app/package-lock.json",
	}
	if os != "alpine 3.20.3" || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("parseTrivy = %q,\n%s\nwant alpine 3.20.3,\n%s", os, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	s := (&Report{Vulnerabilities: vulns}).Summary()
	if s != (Summary{Critical: 1, High: 1, Unknown: 1, Fixable: 2}) || s.Total() != 3 {
		t.Errorf("Summary = %+v", s)
	}

	for _, bad := range []string{`{"SchemaVersion":1,"Results":[]}`, `not json`, `{"SchemaVersion":2,"Results":{}}`} {
		if _, _, err := parseTrivy([]byte(bad)); err == nil {
			t.Errorf("parseTrivy(%s) succeeded", bad)
		}
	}
}

func TestParseSeverity(t *testing.T) {
	for in, want := range map[string]Severity{"critical": SeverityCritical, " High ": SeverityHigh, "UNKNOWN": SeverityUnknown} {
		if got, err := ParseSeverity(in); err != nil || got != want {
			t.Errorf("ParseSeverity(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseSeverity("severe"); err == nil {
		t.Error("ParseSeverity(severe) succeeded")
	}
	if SeverityCritical.Rank() <= SeverityHigh.Rank() || SeverityLow.Rank() <= SeverityUnknown.Rank() || Severity("x").Rank() != 0 {
		t.Error("severity ranks are out of order")
	}
}

// TestRunnable: what is scanned (and judged by the compliance gate) is what a container
// runtime runs; a cosign signature or attestation (an image config, only JSON layers),
// an artifact with its own config type, a chart and an index are not.
func TestRunnable(t *testing.T) {
	const (
		imageConfig = `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":2}`
		tarLayer    = `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":2}`
		sigLayer    = `{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","size":2}`
	)
	for _, tc := range []struct {
		name, mediaType, manifest string
		runnable                  bool
	}{
		{"OCI image", "application/vnd.oci.image.manifest.v1+json", `{` + imageConfig + `,"layers":[` + tarLayer + `]}`, true},
		{"Docker image", "application/vnd.docker.distribution.manifest.v2+json",
			`{"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":2},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":2}]}`, true},
		{"image without layers", "application/vnd.oci.image.manifest.v1+json", `{` + imageConfig + `,"layers":[]}`, true},
		{"cosign signature", "application/vnd.oci.image.manifest.v1+json", `{` + imageConfig + `,"layers":[` + sigLayer + `]}`, false},
		// An image that names a subject or an artifact type still runs: no way around the gate.
		{"image with a subject", "application/vnd.oci.image.manifest.v1+json",
			`{` + imageConfig + `,"layers":[` + tarLayer + `],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd","size":2}}`, true},
		{"image with an artifact type", "application/vnd.oci.image.manifest.v1+json",
			`{"artifactType":"application/vnd.example",` + imageConfig + `,"layers":[` + tarLayer + `]}`, true},
		{"encrypted image", "application/vnd.oci.image.manifest.v1+json",
			`{` + imageConfig + `,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":2}]}`, true},
		{"attestation", "application/vnd.oci.image.manifest.v1+json",
			`{` + imageConfig + `,"layers":[{"mediaType":"application/vnd.dsse.envelope.v1+json","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":2}]}`, false},
		{"artifact", "application/vnd.oci.image.manifest.v1+json", `{"artifactType":"application/vnd.example","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":2},"layers":[]}`, false},
		{"helm chart", "application/vnd.oci.image.manifest.v1+json", `{"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":2},"layers":[]}`, false},
		{"index", "application/vnd.oci.image.index.v1+json", `{"manifests":[]}`, false},
		{"garbage", "application/vnd.oci.image.manifest.v1+json", `{`, false},
	} {
		err := Runnable(types.MediaType(tc.mediaType), []byte(tc.manifest))
		if (err == nil) != tc.runnable || (err != nil && !errors.Is(err, ErrNotImage)) {
			t.Errorf("%s: %v, want runnable=%v", tc.name, err, tc.runnable)
		}
	}
}
