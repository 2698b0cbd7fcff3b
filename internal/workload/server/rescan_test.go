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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dockyard-dev/dockyard/internal/compliance"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// getPulls asks the registry for the pull record of repo as user (a password, or a
// scanner credential), the way the scanner does.
func getPulls(t *testing.T, reg *testRegistry, auth authn.Authenticator, repo, query string) (int, scan.PullList, string) {
	t.Helper()
	r, err := name.NewRepository(reg.host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transport.NewWithContext(context.Background(), r.Registry, auth, reg.transport, []string{r.Scope(transport.PushScope)})
	if err != nil {
		return 0, scan.PullList{}, err.Error()
	}
	resp, err := (&http.Client{Transport: tr}).Get("https://" + reg.host + "/v2/" + repo + scan.PullsSuffix + query)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var list scan.PullList
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("pull record of %s: %v: %s", repo, err, body)
		}
	}
	return resp.StatusCode, list, string(body)
}

// ageDownloadedDB makes trivy's database in cacheDir look downloaded two hours ago: trivy
// downloads a database at most once an hour, which a test cannot wait for.
func ageDownloadedDB(t *testing.T, cacheDir string) {
	t.Helper()
	f := filepath.Join(cacheDir, "db", "metadata.json")
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	meta["DownloadedAt"] = time.Now().Add(-2 * time.Hour).UTC()
	meta["NextUpdate"] = time.Now().Add(-time.Hour).UTC()
	if data, err = json.Marshal(meta); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, f, data) // trivy reads it every second meanwhile
}

// TestRescanAndScanRequests: the two scan triggers besides pushes, with the real trivy,
// a real registry with access control and the scanner's own credential. When a newer
// database arrives, the images pulled lately are scanned again (their report names a CVE
// published since); images nobody pulled keep their report. A scan request queues the
// images it names, whatever reports they have, and says which references it could not
// resolve. The pull record the rescan reads is served to who may push, no one else.
func TestRescanAndScanRequests(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	key := newKey(t, time.Now().Add(-time.Minute))
	withTokens(t, auth, key)
	reg := startRegistry(t, auth, nil)
	alice := reg.opts("alice", "alice-pw")
	keys := registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}}
	credDir := t.TempDir()
	credential, _, err := registryconfig.SignScannerCredential(keys, testIssuer, testService, "ns/main", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeCredential(t, credDir, credential)
	cred := &scan.Credentials{Dir: credDir}

	// Database 1, built 30 hours ago, knows nothing about openssl; database 2 (built an
	// hour ago) adds CVE-2099-0003.
	t1 := time.Now().Add(-30 * time.Hour).UTC().Truncate(time.Second)
	t2 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	newer := append(slices.Clone(trivyfix.Fixtures), trivyfix.Advisory{Release: "3.20", Package: "openssl", ID: "CVE-2099-0003",
		Severity: "CRITICAL", FixedVersion: "3.3.3-r0", Title: "openssl: made-up flaw published after the first scan"})
	dbRef := mirrorDBWith(t, reg, "team-a/trivy-db:2", t1, trivyfix.Fixtures)

	pulled := pushAlpine(t, reg, "team-a/app:pulled", []trivyfix.Package{{Name: "openssl", Version: "3.3.2-r0"}})
	idle := pushAlpine(t, reg, "team-a/app:idle", []trivyfix.Package{{Name: "openssl", Version: "3.3.2-r0"}, {Name: "musl", Version: "1.2.5-r0"}})
	other := pushAlpine(t, reg, "team-a/web:v1", []trivyfix.Package{{Name: "musl", Version: "1.2.5-r0"}})

	trivy := scanFixture(t, reg, t1)
	trivy.CacheDir, trivy.DBRepository = t.TempDir(), dbRef.String()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("operator-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc := &scan.Service{Trivy: trivy, DBCredentials: cred, TokenFile: tokenFile, DBUpdateInterval: time.Second,
		RescanPulledWithin: time.Hour, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Queue: &scan.Queue{Registry: reg.host, Scanner: trivy, Key: scanKey, Pull: cred, NoPrune: true, Size: 10,
			Remote:    []remote.Option{remote.WithAuth(cred.Authenticator()), remote.WithTransport(reg.transport), remote.WithUserAgent(scan.UserAgent)},
			Transport: reg.transport, Auth: cred.Authenticator()}}
	metrics := prometheus.NewPedanticRegistry()
	metrics.MustRegister(svc.Collectors()...)
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { svc.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	post := func(path string, body any) (int, string) {
		t.Helper()
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer operator-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	waitScanned := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for svc.Status().Scanned < n && svc.Status().Failed == 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if st := svc.Status(); st.Scanned != n || st.Failed != 0 {
			t.Fatalf("status = %+v, want %d scanned, none failed", st, n)
		}
	}
	latest := func(d name.Digest) *scan.Report {
		t.Helper()
		st, err := scan.Latest(d, scanKeys, alice...)
		if err != nil {
			t.Fatalf("report of %s: %v", d, err)
		}
		return st.Report
	}
	findings := func(r *scan.Report) []string {
		var ids []string
		for _, v := range r.Vulnerabilities {
			ids = append(ids, v.ID)
		}
		return ids
	}

	// Scanned at their push with database 1: nothing found.
	if code, resp := post(scan.ScanPath, scan.JobRequest{Jobs: []scan.JobSpec{
		{Repository: "team-a/app", Digest: pulled.DigestStr(), Cause: scan.CausePush},
		{Repository: "team-a/app", Digest: idle.DigestStr(), Cause: scan.CausePush},
	}}); code != http.StatusAccepted {
		t.Fatalf("posting pushes: %d %s", code, resp)
	}
	waitScanned(2)
	for _, d := range []name.Digest{pulled, idle} {
		if r := latest(d); len(r.Vulnerabilities) != 0 || r.Scanner.DBUpdatedAt == nil || !r.Scanner.DBUpdatedAt.Equal(t1) {
			t.Fatalf("first report of %s: %v with database %v; want nothing found with %s", d, findings(r), r.Scanner.DBUpdatedAt, t1)
		}
	}

	decide := func(d name.Digest) compliance.Decision {
		t.Helper()
		// As the admission webhook reads: no pull of the image.
		opts := append(slices.Clone(alice), remote.WithUserAgent(scan.AdmissionUserAgent))
		dec, err := (&compliance.Checker{Remote: opts, Keys: scanKeys}).Check(ctx, d, compliance.Policy{Severity: scan.SeverityHigh})
		if err != nil {
			t.Fatalf("check %s: %v", d, err)
		}
		return dec
	}
	if dec := decide(pulled); !dec.Allowed {
		t.Fatalf("before database 2, %s: %+v, want allowed", pulled, dec)
	}

	// A node pulls one of them by tag: the registry records it (after the response).
	if _, err := remote.Get(mustTag(t, reg.host+"/team-a/app:pulled"), alice...); err != nil {
		t.Fatal(err)
	}
	// (The test's own reads of the reports, as alice, count as pulls of the reports.)
	when := func(l scan.PullList, d name.Digest) (time.Time, bool) {
		for _, p := range l.Pulls {
			if p.Digest == d.DigestStr() {
				return p.Pulled, true
			}
		}
		return time.Time{}, false
	}
	var list scan.PullList
	deadline := time.Now().Add(10 * time.Second)
	for _, ok := when(list, pulled); !ok && time.Now().Before(deadline); _, ok = when(list, pulled) {
		time.Sleep(50 * time.Millisecond)
		_, list, _ = getPulls(t, reg, cred.Authenticator(), "team-a/app", "")
	}
	if at, ok := when(list, pulled); !ok || time.Since(at) > time.Minute {
		t.Fatalf("pull record of team-a/app = %+v; want %s pulled just now", list, pulled.DigestStr())
	}
	if _, ok := when(list, idle); ok {
		t.Fatalf("pull record of team-a/app = %+v; %s was only read by the scanner, which is no pull", list, idle.DigestStr())
	}
	// Who may push reads the record; a Viewer, a stranger and nobody do not; a bad since is a bad request.
	for _, tc := range []struct {
		who   string
		auth  authn.Authenticator
		query string
		code  int
	}{
		{"alice (Manager)", &authn.Basic{Username: "alice", Password: "alice-pw"}, "", http.StatusOK},
		{"alice, pulls since tomorrow", &authn.Basic{Username: "alice", Password: "alice-pw"}, "?since=" + time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339), http.StatusOK},
		{"alice, a since that is no time", &authn.Basic{Username: "alice", Password: "alice-pw"}, "?since=yesterday", http.StatusBadRequest},
		{"bob (Viewer)", &authn.Basic{Username: "bob", Password: "bob-pw"}, "", http.StatusForbidden},
		{"carol (no rule)", &authn.Basic{Username: "carol", Password: "carol-pw"}, "", http.StatusForbidden},
		{"anonymous", authn.Anonymous, "", http.StatusUnauthorized},
	} {
		code, l, body := getPulls(t, reg, tc.auth, "team-a/app", tc.query)
		if code != tc.code {
			t.Errorf("pull record as %s: %d %s, want %d", tc.who, code, body, tc.code)
		}
		if strings.Contains(tc.query, "since=2") && len(l.Pulls) != 0 {
			t.Errorf("pulls since tomorrow = %+v, want none", l)
		}
	}

	// Database 2 is mirrored; the scanner takes it at its next update (trivy would wait an
	// hour after its last download: the test makes that hour pass) and rescans what was
	// pulled lately, only that.
	time.Sleep(1100 * time.Millisecond) // reports are dated to the second: the new one must be newer
	mirrorDBWith(t, reg, "team-a/trivy-db:2", t2, newer)
	svcDB := svc.Trivy.CacheDir
	ageDownloadedDB(t, svcDB)
	deadline = time.Now().Add(time.Minute)
	for st := svc.Status(); (st.DBUpdatedAt == nil || !st.DBUpdatedAt.Equal(t2)) && time.Now().Before(deadline); st = svc.Status() {
		time.Sleep(100 * time.Millisecond)
	}
	if st := svc.Status(); st.DBUpdatedAt == nil || !st.DBUpdatedAt.Equal(t2) {
		t.Fatalf("the scanner did not take database 2: %+v", st)
	}
	waitScanned(3)
	if r := latest(pulled); !slices.Equal(findings(r), []string{"CVE-2099-0003"}) || !r.Scanner.DBUpdatedAt.Equal(t2) {
		t.Errorf("report of the pulled image after database 2: %v with %v; want CVE-2099-0003 with %s", findings(r), r.Scanner.DBUpdatedAt, t2)
	}
	// What admission and the registry gate decide follows: the image in use is refused.
	if dec := decide(pulled); dec.Allowed || !strings.Contains(dec.Message, "CVE-2099-0003") {
		t.Errorf("after database 2, %s: %+v, want refused naming CVE-2099-0003", pulled, dec)
	}
	if r := latest(idle); len(r.Vulnerabilities) != 0 || !r.Scanner.DBUpdatedAt.Equal(t1) {
		t.Errorf("report of the image nobody pulled: %v with %v; want the first one kept", findings(r), r.Scanner.DBUpdatedAt)
	}
	// A later pass finds the pulled image current: no scan again and again.
	res, err := svc.Queue.Rescan(ctx, t2, time.Now().Add(-time.Hour))
	if err != nil || res.Pulled != 1 || res.Current != 1 || res.Queued != 0 {
		t.Errorf("second rescan = %+v, %v; want the one pulled image current", res, err)
	}

	// Database 3 finds nothing new in the image pulled before: the scanner (which may not
	// delete older reports) stores no new report for it, so reports do not pile up, one per
	// database, and remembers it is current. team-a/web:v1, pulled now and never scanned
	// (nobody announced its push), gets its first report.
	if _, err := remote.Get(mustTag(t, reg.host+"/team-a/web:v1"), alice...); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for _, l, _ := getPulls(t, reg, cred.Authenticator(), "team-a/web", ""); len(l.Pulls) == 0 && time.Now().Before(deadline); _, l, _ = getPulls(t, reg, cred.Authenticator(), "team-a/web", "") {
		time.Sleep(50 * time.Millisecond)
	}
	stored := func(d name.Digest) int {
		t.Helper()
		list, err := scan.Reports(d, scanKeys, alice...)
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	reportsBefore := stored(pulled)
	t3 := t2.Add(30 * time.Minute)
	mirrorDBWith(t, reg, "team-a/trivy-db:2", t3, newer)
	ageDownloadedDB(t, svcDB)
	deadline = time.Now().Add(2 * time.Minute)
	for st := svc.Status(); (st.Skipped < 1 || st.Scanned < 4) && time.Now().Before(deadline); st = svc.Status() {
		time.Sleep(100 * time.Millisecond)
	}
	if st := svc.Status(); st.Skipped != 1 || st.Scanned != 4 || !st.DBUpdatedAt.Equal(t3) {
		t.Fatalf("after database 3: %+v; want the pulled image rescanned with nothing stored, team-a/web:v1 scanned", st)
	}
	if n := stored(pulled); n != reportsBefore {
		t.Errorf("reports of %s after an unchanged rescan: %d, want %d", pulled, n, reportsBefore)
	}
	if r := latest(other); len(r.Vulnerabilities) != 0 || !r.Scanner.DBUpdatedAt.Equal(t3) {
		t.Errorf("report of team-a/web:v1: %v with %v, want nothing found with %s", findings(r), r.Scanner.DBUpdatedAt, t3)
	}
	if res, err := svc.Queue.Rescan(ctx, t3, time.Now().Add(-time.Hour)); err != nil || res.Current != 2 || res.Queued != 0 {
		t.Errorf("rescan after database 3 = %+v, %v; want both pulled images current", res, err)
	}

	// A scan request: the idle image by tag, team-a/web by repository (every tag); what
	// cannot be resolved is named, the rest is queued all the same.
	code, resp := post(scan.RequestPath, scan.ScanRequest{References: []string{"team-a/app:idle", "team-a/web",
		"team-a/app:gone", "team-a/app@sha256:" + strings.Repeat("0", 64), "Team-A/App:x"}})
	var answer scan.ScanRequestResponse
	if err := json.Unmarshal([]byte(resp), &answer); code != http.StatusOK || err != nil {
		t.Fatalf("scan request: %d %s", code, resp)
	}
	if answer.Queued != 2 || answer.Refused != 0 || len(answer.Errors) != 3 ||
		!strings.Contains(answer.Errors[0], "team-a/app:gone") || !strings.Contains(answer.Errors[0], "not in the registry") ||
		!strings.Contains(answer.Errors[2], "Team-A/App:x: not a repository") {
		t.Errorf("scan request answer = %+v; want 2 queued and the three bad references named", answer)
	}
	waitScanned(6)
	if r := latest(idle); !slices.Equal(findings(r), []string{"CVE-2099-0003"}) {
		t.Errorf("report of the requested image: %v, want CVE-2099-0003", findings(r))
	}
	if r := latest(other); len(r.Vulnerabilities) != 0 || !r.Scanner.DBUpdatedAt.Equal(t3) {
		t.Errorf("report of team-a/web:v1: %v with %v", findings(r), r.Scanner.DBUpdatedAt)
	}
	// Requests are bounded and need the operator's token.
	many := make([]string, scan.MaxRequestReferences+1)
	for i := range many {
		many[i] = "team-a/app:idle"
	}
	if code, resp := post(scan.RequestPath, scan.ScanRequest{References: many}); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a request of %d references: %d %s", len(many), code, resp)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+scan.RequestPath, strings.NewReader(`{"references":["team-a/app:idle"]}`))
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Errorf("a request without the token: %v %v", r, err)
	} else {
		_ = r.Body.Close()
	}
	if err := testutil.GatherAndCompare(metrics, strings.NewReader(`
# HELP dockyard_scan_rescans_queued_total Recently pulled images queued for a new scan because their report predates the current database.
# TYPE dockyard_scan_rescans_queued_total counter
dockyard_scan_rescans_queued_total 3
`), "dockyard_scan_rescans_queued_total"); err != nil {
		t.Error(err)
	}
}
