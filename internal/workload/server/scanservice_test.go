package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// TestScanService is the scanner workload over HTTP: the operator posts pushes with its
// token, the service refuses anyone else and malformed jobs, downloads its database from
// the registry's own mirror, scans, and reports counts in its status and metrics.
func TestScanService(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	alice := reg.opts("alice", "alice-pw")
	viewer := &scan.Credentials{Username: "bob", Password: "bob-pw"}

	// The database, mirrored into the registry.
	dbUpdated := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	dbRef := mirrorDB(t, reg, "team-a/trivy-db:2", dbUpdated)
	trivy := scanFixture(t, reg, dbUpdated)
	trivy.CacheDir, trivy.DBRepository = t.TempDir(), dbRef.String()

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("operator-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc := &scan.Service{Trivy: trivy, DBCredentials: viewer, TokenFile: tokenFile, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Queue: &scan.Queue{Registry: reg.host, Scanner: trivy, Key: scanKey, Pull: viewer, Remote: alice, Size: 10}}
	metrics := prometheus.NewPedanticRegistry()
	metrics.MustRegister(svc.Collectors()...)
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { svc.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	vuln := pushAlpine(t, reg, "team-a/app:vulnerable", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}})
	clean := pushAlpine(t, reg, "team-a/app:clean", []trivyfix.Package{{Name: "musl", Version: "1.2.5-r0"}})
	post := func(token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+scan.ScanPath, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	job := func(repo, digest, cause string) string {
		b, _ := json.Marshal(scan.JobRequest{Jobs: []scan.JobSpec{{Repository: repo, Digest: digest, Cause: cause}}})
		return string(b)
	}
	for _, tc := range []struct {
		name, token, body string
		code              int
	}{
		{"no token", "", job("team-a/app", vuln.DigestStr(), "push"), http.StatusUnauthorized},
		{"another token", "operator-token-2", job("team-a/app", vuln.DigestStr(), "push"), http.StatusUnauthorized},
		{"a digest that is not one", "operator-token", job("team-a/app", "sha256:../../etc", "push"), http.StatusBadRequest},
		{"a repository that is not one", "operator-token", job("team-a/../x", vuln.DigestStr(), "push"), http.StatusBadRequest},
		{"an unknown cause", "operator-token", job("team-a/app", vuln.DigestStr(), "because"), http.StatusBadRequest},
		{"an unknown field", "operator-token", `{"jobs":[],"extra":1}`, http.StatusBadRequest},
	} {
		if code, body := post(tc.token, tc.body); code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
	}
	if st := svc.Status(); st.Queue != 0 {
		t.Fatalf("refused requests queued %d jobs", st.Queue)
	}
	body, _ := json.Marshal(scan.JobRequest{Jobs: []scan.JobSpec{
		{Repository: "team-a/app", Digest: vuln.DigestStr(), Cause: "push"},
		{Repository: "team-a/app", Digest: clean.DigestStr(), Cause: "push"},
	}})
	if code, resp := post("operator-token", string(body)); code != http.StatusAccepted || !strings.Contains(resp, `"accepted":2`) {
		t.Fatalf("posting two pushes: %d %s", code, resp)
	}
	deadline := time.Now().Add(90 * time.Second)
	var st scan.Status
	for st = svc.Status(); st.Scanned < 2 && st.Failed == 0 && time.Now().Before(deadline); st = svc.Status() {
		time.Sleep(100 * time.Millisecond)
	}
	if st.Scanned != 2 || st.Failed != 0 || st.Vulnerable[scan.SeverityCritical] != 1 || st.Queue != 0 || st.LastScanTime == nil ||
		st.DBUpdatedAt == nil || !st.DBUpdatedAt.Equal(dbUpdated) || !strings.HasPrefix(st.Scanner, "trivy ") {
		t.Fatalf("status = %+v; want 2 scanned, 1 with a critical vulnerability, database of %s", st, dbUpdated)
	}
	// The status endpoint says the same to the operator, and nothing to anyone else (it
	// names every tenant's repositories).
	resp, err := http.Get(srv.URL + scan.StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET status without the token: %s", resp.Status)
	}
	sreq, _ := http.NewRequest(http.MethodGet, srv.URL+scan.StatusPath, nil)
	sreq.Header.Set("Authorization", "Bearer operator-token")
	if resp, err = http.DefaultClient.Do(sreq); err != nil {
		t.Fatal(err)
	}
	var got scan.Status
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Scanned != 2 {
		t.Errorf("GET status: %+v, %v", got, err)
	}
	_ = resp.Body.Close()
	if err := testutil.GatherAndCompare(metrics, bytes.NewBufferString(`
# HELP dockyard_scan_jobs_total Scan jobs finished, by outcome (scanned, skipped, failed).
# TYPE dockyard_scan_jobs_total counter
dockyard_scan_jobs_total{outcome="failed"} 0
dockyard_scan_jobs_total{outcome="scanned"} 2
dockyard_scan_jobs_total{outcome="skipped"} 0
# HELP dockyard_scan_queue_length Images waiting to be scanned or being scanned.
# TYPE dockyard_scan_queue_length gauge
dockyard_scan_queue_length 0
`), "dockyard_scan_jobs_total", "dockyard_scan_queue_length"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(svc.Collectors()[3]); got != float64(dbUpdated.Unix()) {
		t.Errorf("dockyard_scan_db_updated_timestamp_seconds = %v, want %d", got, dbUpdated.Unix())
	}
}
