package scan

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A failing trivy's log is kept for the error, with the password cut out. The real trivy
// does not print it; this stand-in does, to prove the error would not carry it if it did.
func TestRunRedactsThePassword(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "trivy")
	script := "#!/bin/sh\necho \"cannot log in as $TRIVY_USERNAME with $TRIVY_PASSWORD\" >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Trivy{Binary: bin, CacheDir: t.TempDir()}.run(context.Background(), &Credentials{Username: "bob", Password: "s3cret-pw"}, "version")
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") || !strings.Contains(err.Error(), "cannot log in as bob with ***") {
		t.Errorf("error = %v", err)
	}
}

func TestDecodeReportBounds(t *testing.T) {
	long := strings.Repeat("x", 10000)
	r, err := decodeReport([]byte(`{"subject":"sha256:ab","os":"alpine","unknown":{"a":[1,2]},"vulnerabilities":[
		{"id":"` + long + `","severity":"SEVERE","package":"p","installedVersion":"1","title":"` + long + `"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	v := r.Vulnerabilities[0]
	if len(v.ID) > 132 || len(v.Title) > 204 || v.Severity != SeverityUnknown || r.Subject != "sha256:ab" {
		t.Errorf("decoded %d-byte ID, %d-byte title, severity %q", len(v.ID), len(v.Title), v.Severity)
	}
	many := `{"vulnerabilities":[` + strings.Repeat(`{},`, MaxVulnerabilities) + `{}]}`
	if _, err := decodeReport([]byte(many)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("decoding %d vulnerabilities: %v", MaxVulnerabilities+1, err)
	}
	for _, bad := range []string{`[]`, `{"vulnerabilities":{}}`, `{"subject":1}`, `{"vulnerabilities":[1]}`} {
		if _, err := decodeReport([]byte(bad)); err == nil {
			t.Errorf("decodeReport(%s) succeeded", bad)
		}
	}
}

func TestBackoffIsBounded(t *testing.T) {
	q := &Queue{Backoff: 50e6, MaxBackoff: 400e6}
	for n, want := range map[int]int64{1: 50e6, 2: 100e6, 4: 400e6, 5: 400e6, 70: 400e6, 1 << 30: 400e6} {
		if got := q.backoff(n); int64(got) != want {
			t.Errorf("backoff(%d) = %s, want %dns", n, got, want)
		}
	}
}
