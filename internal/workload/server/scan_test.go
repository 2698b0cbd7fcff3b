package server_test

import (
	"context"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/compliance"
	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// scanKey signs the reports the tests store; scanKeys check them.
var scanKey, scanKeys = trivyfix.NewKey()

// scanFixture is the real trivy with a database written by the test, trusting reg's CA.
func scanFixture(t testing.TB, reg *testRegistry, dbUpdated time.Time) scan.Trivy {
	t.Helper()
	bin := trivyfix.Binary(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	if err := trivyfix.WriteDB(cache, dbUpdated, trivyfix.Fixtures); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return scan.Trivy{Binary: bin, CacheDir: cache, Env: []string{"SSL_CERT_FILE=" + caFile, "HOME=" + dir}, Timeout: 2 * time.Minute}
}

// mirrorDB writes the fixture database, built at updated, into the registry as Trivy's
// database artifact under ref (as an air-gapped site mirrors it) and returns its tag.
func mirrorDB(t testing.TB, reg *testRegistry, ref string, updated time.Time) name.Tag {
	t.Helper()
	return mirrorDBWith(t, reg, ref, updated, trivyfix.Fixtures)
}

// mirrorDBWith is mirrorDB with a database of these advisories.
func mirrorDBWith(t testing.TB, reg *testRegistry, ref string, updated time.Time, advisories []trivyfix.Advisory) name.Tag {
	t.Helper()
	dir := t.TempDir()
	if err := trivyfix.WriteDB(dir, updated, advisories); err != nil {
		t.Fatal(err)
	}
	art, err := trivyfix.DBArtifact(dir)
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, reg.host+"/"+ref)
	if err := remote.Write(tag, art, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	return tag
}

// pushAlpine pushes a made-up Alpine 3.20.3 image with packages to ref and returns it by digest.
func pushAlpine(t testing.TB, reg *testRegistry, ref string, pkgs []trivyfix.Package) name.Digest {
	t.Helper()
	img, err := trivyfix.AlpineImage("3.20.3", pkgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, reg.host+"/"+ref)
	if err := remote.Write(tag, img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(d.String())
}

// TestScanAttachAndDecide is the scanning path end to end with real parts: the real trivy
// scans images in a running registry (pulling as a Viewer), the report is stored as an OCI
// referrer of the image, read back through the referrers API, and the policy decides.
func TestScanAttachAndDecide(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	dbUpdated := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	trivy := scanFixture(t, reg, dbUpdated)
	ctx := context.Background()
	viewer := &scan.Credentials{Username: "bob", Password: "bob-pw"}

	vuln := pushAlpine(t, reg, "team-a/app:vulnerable", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}, {Name: "zlib", Version: "1.3.1-r0"}})
	clean := pushAlpine(t, reg, "team-a/app:clean", []trivyfix.Package{{Name: "musl", Version: "1.2.5-r0"}})

	r, err := trivy.Scan(ctx, vuln.String(), viewer)
	if err != nil {
		t.Fatal(err)
	}
	want := []scan.Vulnerability{
		{ID: "CVE-2099-0001", Severity: scan.SeverityCritical, Package: "musl", InstalledVersion: "1.2.4-r2", FixedVersion: "1.2.5-r0"},
		{ID: "CVE-2099-0002", Severity: scan.SeverityHigh, Package: "zlib", InstalledVersion: "1.3.1-r0"},
	}
	if len(r.Vulnerabilities) != len(want) {
		t.Fatalf("trivy found %+v, want %+v", r.Vulnerabilities, want)
	}
	for i, w := range want {
		g := r.Vulnerabilities[i]
		if g.ID != w.ID || g.Severity != w.Severity || g.Package != w.Package || g.InstalledVersion != w.InstalledVersion ||
			g.FixedVersion != w.FixedVersion || !strings.HasPrefix(g.Title, w.Package+": made-up") {
			t.Errorf("vulnerability %d = %+v, want %+v", i, g, w)
		}
	}
	if r.Subject != vuln.DigestStr() || r.OS != "alpine 3.20.3" || r.Scanner.Name != "trivy" || r.Scanner.Version == "" ||
		r.Scanner.DBUpdatedAt == nil || !r.Scanner.DBUpdatedAt.Equal(dbUpdated) {
		t.Errorf("report = subject %s, os %q, scanner %+v; want %s, alpine 3.20.3, trivy with database of %s",
			r.Subject, r.OS, r.Scanner, vuln.DigestStr(), dbUpdated)
	}

	cr, err := trivy.Scan(ctx, clean.String(), viewer)
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Vulnerabilities) != 0 || cr.OS != "alpine 3.20.3" {
		t.Errorf("clean image: %+v in %q, want none in alpine 3.20.3", cr.Vulnerabilities, cr.OS)
	}

	// Reports are stored as referrers, by a Manager; a Viewer reads them.
	manager, reader := reg.opts("alice", "alice-pw"), reg.opts("bob", "bob-pw")
	if _, err := scan.Latest(vuln, scanKeys, reader...); !errors.Is(err, scan.ErrNoReport) {
		t.Fatalf("Latest before any report = %v, want ErrNoReport", err)
	}
	for _, x := range []struct {
		d name.Digest
		r *scan.Report
	}{{vuln, r}, {clean, cr}} {
		desc, err := remote.Head(x.d, reader...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := scan.Attach(x.d.Context(), *desc, x.r, scanKey, manager...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := scan.Attach(vuln.Context(), mustHead(t, clean, reader), r, scanKey, manager...); err == nil {
		t.Error("Attach stored a report under another image")
	}
	stored, err := scan.Latest(vuln, scanKeys, reader...)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Report.Vulnerabilities) != 2 || stored.Report.Vulnerabilities[0].ID != "CVE-2099-0001" || !stored.Created.Equal(r.ScannedAt) {
		t.Errorf("stored report = %+v created %s, want the scan's two vulnerabilities of %s", stored.Report, stored.Created, r.ScannedAt)
	}
	// The summary is on the referrers list itself (what `oras discover` shows).
	idx, err := remote.Referrers(vuln, reader...)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != scan.ArtifactType ||
		im.Manifests[0].Annotations[scan.AnnotationCritical] != "1" || im.Manifests[0].Annotations[scan.AnnotationHigh] != "1" ||
		im.Manifests[0].Annotations[scan.AnnotationFixable] != "1" {
		t.Errorf("referrers of the vulnerable image = %+v", im.Manifests)
	}

	// A rescan (a newer database, say) adds a newer report; the newest one counts.
	later := *r
	later.ScannedAt = r.ScannedAt.Add(time.Minute)
	later.Vulnerabilities = r.Vulnerabilities[:1]
	if _, err := scan.Attach(vuln.Context(), mustHead(t, vuln, reader), &later, scanKey, manager...); err != nil {
		t.Fatal(err)
	}
	if stored, err = scan.Latest(vuln, scanKeys, reader...); err != nil || len(stored.Report.Vulnerabilities) != 1 {
		t.Fatalf("Latest after a rescan = %+v, %v; want the rescan's one vulnerability", stored, err)
	}

	// The policy's decision, and the words a person gets.
	policy := compliance.Policy{Severity: scan.SeverityHigh, BlockUnscanned: true}
	verdict := compliance.Evaluate(policy, "team-a/app", stored.Report, time.Now())
	if verdict.Allowed || !strings.Contains(verdict.Message(vuln.String(), policy), "CVE-2099-0001 (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0)") {
		t.Errorf("vulnerable image: allowed=%v, message %q", verdict.Allowed, verdict.Message(vuln.String(), policy))
	}
	cleanStored, err := scan.Latest(clean, scanKeys, reader...)
	if err != nil {
		t.Fatal(err)
	}
	if v := compliance.Evaluate(policy, "team-a/app", cleanStored.Report, time.Now()); !v.Allowed {
		t.Errorf("clean image refused: %s", v.Message(clean.String(), policy))
	}
}

// TestScanFailures: what goes wrong is said plainly, and never with the password in it.
func TestScanFailures(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	trivy := scanFixture(t, reg, time.Now())
	ctx := context.Background()
	img := pushAlpine(t, reg, "team-a/app:v1", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}})

	_, err := trivy.Scan(ctx, img.String(), &scan.Credentials{Username: "bob", Password: "not-bobs-password"})
	if err == nil || strings.Contains(err.Error(), "not-bobs-password") {
		t.Errorf("scan with a wrong password: %v", err)
	}
	if _, err := trivy.Scan(ctx, reg.host+"/team-a/app:v1", nil); err == nil || !strings.Contains(err.Error(), "digest is required") {
		t.Errorf("scan by tag: %v", err)
	}
	noDB := trivy
	noDB.CacheDir = t.TempDir()
	if _, err := noDB.Scan(ctx, img.String(), nil); err == nil || !strings.Contains(err.Error(), "no vulnerability database") {
		t.Errorf("scan without a database: %v", err)
	}
}

func mustHead(t *testing.T, d name.Digest, opts []remote.Option) ggcrv1.Descriptor {
	t.Helper()
	desc, err := remote.Head(d, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return *desc
}

// TestScanWithDatabaseFromTheRegistry is the air-gapped setup: the vulnerability database
// is an OCI artifact mirrored into the Registry itself, and the scanner downloads it from
// there (as a Viewer) instead of from the internet.
func TestScanWithDatabaseFromTheRegistry(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	dbUpdated := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Second)
	dbRef := mirrorDB(t, reg, "team-a/trivy-db:2", dbUpdated)

	trivy := scanFixture(t, reg, dbUpdated)
	trivy.CacheDir = t.TempDir() // empty: no database until it is downloaded
	trivy.DBRepository = dbRef.String()
	ctx := context.Background()
	viewer := &scan.Credentials{Username: "bob", Password: "bob-pw"}
	if info, err := trivy.Version(ctx); err != nil || !info.DBUpdatedAt.IsZero() {
		t.Fatalf("before the download: %+v, %v; want no database", info, err)
	}
	if err := trivy.UpdateDB(ctx, viewer); err != nil {
		t.Fatal(err)
	}
	info, err := trivy.Version(ctx)
	if err != nil || !info.DBUpdatedAt.Equal(dbUpdated) {
		t.Fatalf("after the download: %+v, %v; want the mirrored database of %s", info, err, dbUpdated)
	}
	img := pushAlpine(t, reg, "team-a/app:v1", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}})
	r, err := trivy.Scan(ctx, img.String(), viewer)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Vulnerabilities) != 1 || r.Vulnerabilities[0].ID != "CVE-2099-0001" || !r.Scanner.DBUpdatedAt.Equal(dbUpdated) {
		t.Errorf("scan with the mirrored database = %+v (db %v)", r.Vulnerabilities, r.Scanner.DBUpdatedAt)
	}

	// A repository the scanner may not read is an error that says so, not an empty result.
	denied := trivy
	denied.CacheDir = t.TempDir()
	denied.DBRepository = reg.host + "/team-b/trivy-db:2"
	if err := denied.UpdateDB(ctx, viewer); err == nil {
		t.Error("downloading the database from a repository bob may not read succeeded")
	}
}

// TestForgedReportsAreIgnored: anyone who may push to a repository can push an artifact
// with the report's type; only reports the scanner's key signed, dated no later than now,
// count, so a forged "no vulnerabilities" report cannot make an image pass.
func TestForgedReportsAreIgnored(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	trivy := scanFixture(t, reg, time.Now())
	alice := reg.opts("alice", "alice-pw")
	img := pushAlpine(t, reg, "team-a/app:v1", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}})
	desc := mustHead(t, img, alice)
	genuine, err := trivy.Scan(context.Background(), img.String(), &scan.Credentials{Username: "bob", Password: "bob-pw"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scan.Attach(img.Context(), desc, genuine, scanKey, alice...); err != nil {
		t.Fatal(err)
	}
	clean := *genuine
	clean.Vulnerabilities = nil
	clean.ScannedAt = genuine.ScannedAt.Add(time.Hour)
	otherKey, _ := trivyfix.NewKey()
	if _, err := scan.Attach(img.Context(), desc, &clean, otherKey, alice...); err != nil {
		t.Fatal(err)
	}
	future := clean
	future.ScannedAt = time.Now().Add(365 * 24 * time.Hour)
	if _, err := scan.Attach(img.Context(), desc, &future, scanKey, alice...); err != nil {
		t.Fatal(err)
	}
	list, err := scan.Reports(img, scanKeys, alice...)
	if err != nil || len(list) != 1 {
		t.Fatalf("trusted reports = %+v, %v; want only the genuine one", list, err)
	}
	st, err := scan.Latest(img, scanKeys, alice...)
	if err != nil || len(st.Report.Vulnerabilities) != 1 {
		t.Fatalf("Latest = %+v, %v; want the genuine report with its vulnerability", st, err)
	}
	if _, err := scan.Latest(img, nil, alice...); err == nil {
		t.Error("Latest without keys trusted something")
	}
}

// TestScanImageWithJavaArchives: without a Java database, trivy would fail on every image
// holding a JAR; such images are scanned for everything else.
func TestScanImageWithJavaArchives(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	trivy := scanFixture(t, reg, time.Now())
	img, err := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}},
		map[string]string{"app/lib/app.jar": "PK\x03\x04 not really a jar", "app/server.war": "PK\x03\x04"})
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, reg.host+"/team-a/java:v1")
	if err := remote.Write(tag, img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	r, err := trivy.Scan(context.Background(), tag.Context().Digest(d.String()).String(), &scan.Credentials{Username: "bob", Password: "bob-pw"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Vulnerabilities) != 1 || r.Vulnerabilities[0].ID != "CVE-2099-0001" {
		t.Errorf("vulnerabilities = %+v, want musl's CVE-2099-0001", r.Vulnerabilities)
	}
}
