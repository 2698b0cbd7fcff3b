package server_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/dockyard-dev/dockyard/internal/compliance"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/scan"
	"github.com/dockyard-dev/dockyard/internal/testfixture/cosign"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// TestComplianceChecker is the decision admission makes, against a real registry holding
// reports the real trivy wrote: tags resolve to digests, an index is as compliant as its
// worst image, an unscanned image follows the policy, and a cached answer expires.
func TestComplianceChecker(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	trivy := scanFixture(t, reg, time.Now())
	alice, bob := reg.opts("alice", "alice-pw"), reg.opts("bob", "bob-pw")
	ctx := context.Background()
	viewerCred := &scan.Credentials{Username: "bob", Password: "bob-pw"}

	vulnImg, _ := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}}, nil)
	cleanImg, _ := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: "1.2.5-r0"}}, nil)
	repo, _ := name.NewRepository(reg.host + "/team-a/app")
	push := func(tag string, img ggcrv1.Image) name.Digest { t.Helper(); return pushTo(t, repo, tag, img, alice) }
	vuln, clean := push("vulnerable", vulnImg), push("clean", cleanImg)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: cleanImg, Descriptor: ggcrv1.Descriptor{Platform: &ggcrv1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: vulnImg, Descriptor: ggcrv1.Descriptor{Platform: &ggcrv1.Platform{OS: "linux", Architecture: "arm64"}}})
	if err := remote.WriteIndex(repo.Tag("multi"), idx, alice...); err != nil {
		t.Fatal(err)
	}
	unscanned := push("unscanned", mustAlpine(t, "1.2.6-r0"))

	for _, d := range []name.Digest{vuln, clean} {
		r, err := trivy.Scan(ctx, d.String(), viewerCred)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(d, alice...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := scan.Attach(repo, *desc, r, scanKey, alice...); err != nil {
			t.Fatal(err)
		}
	}

	now := time.Now()
	checker := &compliance.Checker{Remote: bob, Keys: scanKeys, TTL: time.Minute, Now: func() time.Time { return now }}
	high := compliance.Policy{Severity: scan.SeverityHigh}
	strict := compliance.Policy{Severity: scan.SeverityHigh, BlockUnscanned: true}
	for _, tc := range []struct {
		ref     string
		policy  compliance.Policy
		allowed bool
		reason  compliance.Reason
		message string
	}{
		{"team-a/app:clean", high, true, compliance.Compliant, ""},
		{"team-a/app:vulnerable", high, false, compliance.Vulnerable, "team-a/app:vulnerable has 1 vulnerabilities at or above HIGH: CVE-2099-0001 (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0)"},
		{"team-a/app@" + vuln.DigestStr(), high, false, compliance.Vulnerable, "CVE-2099-0001"},
		{"team-a/app:multi", high, false, compliance.Vulnerable, "CVE-2099-0001"},
		{"team-a/app:unscanned", high, true, compliance.NotScannedAllowed, ""},
		{"team-a/app:unscanned", strict, false, compliance.NotScanned, "has not been scanned yet"},
		{"team-a/app:vulnerable", compliance.Policy{Severity: scan.SeverityHigh, Exemptions: []compliance.Exemption{
			{ID: "CVE-2099-0001", Reason: "patched in place, ticket SEC-1", Expires: now.Add(24 * time.Hour)}}}, true, compliance.Compliant, ""},
	} {
		ref, err := name.ParseReference(reg.host + "/" + tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		d, err := checker.Check(ctx, ref, tc.policy)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		if d.Allowed != tc.allowed || d.Reason != tc.reason || !strings.Contains(d.Message, tc.message) || (tc.allowed && d.Message != "") {
			t.Errorf("%s: allowed=%v %s %q; want %v %s containing %q", tc.ref, d.Allowed, d.Reason, d.Message, tc.allowed, tc.reason, tc.message)
		}
	}

	// Scanning the unscanned image changes the answer once the cached one expires.
	r, err := trivy.Scan(ctx, unscanned.String(), viewerCred)
	if err != nil {
		t.Fatal(err)
	}
	desc, _ := remote.Head(unscanned, alice...)
	if _, err := scan.Attach(repo, *desc, r, scanKey, alice...); err != nil {
		t.Fatal(err)
	}
	ref := repo.Tag("unscanned")
	now = now.Add(time.Second)
	if d, _ := checker.Check(ctx, ref, strict); d.Reason != compliance.NotScanned {
		t.Errorf("a second later: %s, want the cached NotScanned", d.Reason)
	}
	// "No report yet" is reused for 2 s, not the whole TTL: the verdict follows the scan.
	now = now.Add(2 * time.Second)
	if d, err := checker.Check(ctx, ref, strict); err != nil || d.Reason != compliance.Compliant {
		t.Errorf("3 s later: %s, %v; want Compliant", d.Reason, err)
	}
	// A report is reused for the TTL: a newer one is read only after it.
	r2 := *r
	r2.ScannedAt = time.Now().UTC().Add(time.Second)
	r2.Vulnerabilities = []scan.Vulnerability{{ID: "CVE-2099-0002", Severity: scan.SeverityCritical, Package: "musl",
		InstalledVersion: "1.2.6-r0"}}
	if _, err := scan.Attach(repo, *desc, &r2, scanKey, alice...); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Second)
	if d, _ := checker.Check(ctx, ref, strict); d.Reason != compliance.Compliant {
		t.Errorf("within the TTL: %s, want the cached Compliant", d.Reason)
	}
	now = now.Add(time.Minute)
	if d, err := checker.Check(ctx, ref, strict); err != nil || d.Reason != compliance.Vulnerable {
		t.Errorf("after the TTL: %s, %v; want the newer report's Vulnerable", d.Reason, err)
	}
	// An image that does not exist is an error, not a verdict.
	if _, err := checker.Check(ctx, repo.Tag("missing"), strict); err == nil {
		t.Error("checking a missing image succeeded")
	}
}

// pushTo pushes img to repo:tag and returns it by digest.
func pushTo(t testing.TB, repo name.Repository, tag string, img ggcrv1.Image, opts []remote.Option) name.Digest {
	t.Helper()
	if err := remote.Write(repo.Tag(tag), img, opts...); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo.Digest(d.String())
}

func mustAlpine(t testing.TB, musl string) ggcrv1.Image {
	t.Helper()
	img, err := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: musl}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestComplianceSignatures: the real cosign signs an image with a local key (no
// transparency log) and the checker accepts that key, refuses another key, refuses an
// unsigned image and an image whose signature names another digest, and an index is
// checked by its own signature; a signature copied to another repository (as replication
// does) still counts.
func TestComplianceSignatures(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.ca.cert.Raw})
	signer, other := cosign.New(t, caPEM), cosign.New(t, caPEM)
	signer.Login(t, reg.host, "alice", "alice-pw")
	alice, bob := reg.opts("alice", "alice-pw"), reg.opts("bob", "bob-pw")
	repo, _ := name.NewRepository(reg.host + "/team-a/app")
	push := func(tag string, img ggcrv1.Image) name.Digest { t.Helper(); return pushTo(t, repo, tag, img, alice) }
	signed, unsigned := push("signed", mustAlpine(t, "1.2.5-r0")), push("unsigned", mustAlpine(t, "1.2.6-r0"))
	if err := signer.Sign(signed.String()); err != nil {
		t.Fatal(err)
	}
	// The signature manifest of signed, stored as if it signed unsigned: the payload names
	// the other digest, so it must not count.
	sigTag := func(d name.Digest) name.Tag {
		return repo.Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	}
	sig, err := remote.Image(sigTag(signed), alice...)
	if err != nil {
		t.Fatalf("cosign stored no signature at %s: %v", sigTag(signed), err)
	}
	if err := remote.Write(sigTag(unsigned), sig, alice...); err != nil {
		t.Fatal(err)
	}

	keys, err := compliance.ParseKeys([]string{signer.PublicKeyPEM(t)})
	if err != nil {
		t.Fatal(err)
	}
	otherKeys, err := compliance.ParseKeys([]string{other.PublicKeyPEM(t)})
	if err != nil {
		t.Fatal(err)
	}
	bothKeys, err := compliance.ParseKeys([]string{other.PublicKeyPEM(t), signer.PublicKeyPEM(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref  name.Digest
		keys *compliance.Keys
		want bool
	}{{signed, keys, true}, {signed, otherKeys, false}, {signed, bothKeys, true}, {unsigned, keys, false}} {
		got, err := compliance.SignedBy(tc.ref, tc.keys, bob...)
		if err != nil || got != tc.want {
			t.Errorf("SignedBy(%s, %s) = %v, %v; want %v", tc.ref.DigestStr()[:15], tc.keys.ID, got, err, tc.want)
		}
	}

	checker := &compliance.Checker{Remote: bob, Keys: scanKeys}
	p := compliance.Policy{Signatures: keys}
	d, err := checker.Check(context.Background(), repo.Tag("unsigned"), p)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.Reason != compliance.Unsigned || !strings.Contains(d.Message, "is not signed by any of the 1 keys") {
		t.Errorf("unsigned image: allowed=%v %s %q", d.Allowed, d.Reason, d.Message)
	}
	if d, err := checker.Check(context.Background(), repo.Tag("signed"), p); err != nil || !d.Allowed {
		t.Errorf("signed image: %+v, %v", d, err)
	}

	// Replication copies the image and its signature tag to another repository.
	copyRepo, _ := name.NewRepository(reg.host + "/team-a/mirror/app")
	img, _ := remote.Image(signed, alice...)
	if err := remote.Write(copyRepo.Tag("v1"), img, alice...); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(copyRepo.Tag(strings.Replace(signed.DigestStr(), ":", "-", 1)+".sig"), sig, alice...); err != nil {
		t.Fatal(err)
	}
	if d, err := checker.Check(context.Background(), copyRepo.Tag("v1"), p); err != nil || !d.Allowed {
		t.Errorf("replicated signed image: %+v, %v", d, err)
	}
	// The real cosign agrees with the checker.
	if err := signer.Verify(signed.String()); err != nil {
		t.Errorf("cosign verify of the signed image: %v", err)
	}
	if err := other.Verify(signed.String()); err == nil {
		t.Error("cosign verify with another key succeeded")
	}
}

// TestCompliancePullGate is the registry's own refusal (pullAction: Deny): a Viewer who
// pulls a vulnerable or unscanned image's manifest gets 403 DENIED with the words
// admission uses; a Manager, the operator's pull credential and a Viewer's HEAD or blob
// reads are served, as are artifacts (reports) and compliant images; a caller without
// pull rights learns nothing about the image; an exemption written to the policy file
// applies without a restart, and a broken file keeps the policy in force.
func TestCompliancePullGate(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	key := newKey(t, time.Now().Add(-time.Minute))
	withTokens(t, auth, key)
	pubDER, err := x509.MarshalPKIXPublicKey(scanKeys[0])
	if err != nil {
		t.Fatal(err)
	}
	policy := registryconfig.CompliancePolicy{Severity: "High", BlockUnscanned: true,
		ScannerKeys:   string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
		ExemptionHint: "spec.scanning.policy.exemptions of Registry ns/reg"}
	policyFile := filepath.Join(t.TempDir(), registryconfig.ComplianceFileName)
	writePolicy := func(p registryconfig.CompliancePolicy) {
		t.Helper()
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(policyFile+".tmp", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(policyFile+".tmp", policyFile); err != nil { // as the kubelet swaps ConfigMap files
			t.Fatal(err)
		}
	}
	writePolicy(policy)
	reg := startRegistry(t, auth, func(c *registryconfig.Config) {
		c.Compliance = &registryconfig.Compliance{PolicyFile: policyFile}
	})
	alice, bob, carol := reg.opts("alice", "alice-pw"), reg.opts("bob", "bob-pw"), reg.opts("carol", "carol-pw")
	repo, _ := name.NewRepository(reg.host + "/team-a/app")
	push := func(tag string, img ggcrv1.Image) name.Digest { t.Helper(); return pushTo(t, repo, tag, img, alice) }
	vuln, clean := push("vulnerable", mustAlpine(t, "1.2.4-r2")), push("clean", mustAlpine(t, "1.2.5-r0"))
	push("unscanned", mustAlpine(t, "1.2.6-r0"))
	critical := scan.Vulnerability{ID: "CVE-2099-0001", Severity: scan.SeverityCritical, Package: "musl",
		InstalledVersion: "1.2.4-r2", FixedVersion: "1.2.5-r0"}
	var reportDigest ggcrv1.Hash
	for _, x := range []struct {
		d     name.Digest
		vulns []scan.Vulnerability
	}{{vuln, []scan.Vulnerability{critical}}, {clean, []scan.Vulnerability{}}} {
		r := &scan.Report{Subject: x.d.DigestStr(), Scanner: scan.Scanner{Name: "Trivy", Version: "0.74.0"},
			ScannedAt: time.Now().UTC(), OS: "alpine 3.20.3", Vulnerabilities: x.vulns}
		h, err := scan.Attach(repo, mustHead(t, x.d, alice), r, scanKey, alice...)
		if err != nil {
			t.Fatal(err)
		}
		reportDigest = h
	}
	keys := registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}}
	pullCred, _, err := registryconfig.SignPullCredential(keys, testIssuer, testService, "team-a", []string{"team-a/**"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kubelet := reg.opts("dockyard-pull", pullCred)

	get := func(ref string, opts []remote.Option) error {
		t.Helper()
		_, err := remote.Get(mustRef(t, reg.host+"/"+ref), opts...)
		return err
	}
	// A Viewer is refused the vulnerable image, by tag and by digest, and the unscanned one.
	for _, ref := range []string{"team-a/app:vulnerable", "team-a/app@" + vuln.DigestStr()} {
		err := get(ref, bob)
		wantStatus(t, "Viewer GET "+ref, err, http.StatusForbidden, "DENIED")
		if err == nil || !strings.Contains(err.Error(), "CVE-2099-0001 (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0)") ||
			!strings.Contains(err.Error(), "spec.scanning.policy.exemptions of Registry ns/reg") {
			t.Errorf("Viewer GET %s: the refusal does not name the CVE and where to add an exemption: %v", ref, err)
		}
	}
	err = get("team-a/app:unscanned", bob)
	wantStatus(t, "Viewer GET unscanned", err, http.StatusForbidden, "DENIED")
	if err == nil || !strings.Contains(err.Error(), "has not been scanned yet") {
		t.Errorf("Viewer GET unscanned: %v", err)
	}
	// What is served to the Viewer: a compliant image, HEAD, the vulnerable image's blobs,
	// the report (an artifact) and the referrers list.
	if err := get("team-a/app:clean", bob); err != nil {
		t.Errorf("Viewer GET of a compliant image: %v", err)
	}
	if _, err := remote.Head(repo.Tag("vulnerable"), bob...); err != nil {
		t.Errorf("Viewer HEAD of the vulnerable image: %v", err)
	}
	img, err := remote.Image(vuln, alice...)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	if _, err := remote.Layer(repo.Digest(ld.String()), bob...); err != nil {
		t.Errorf("Viewer GET of a blob: %v", err)
	}
	if err := get("team-a/app@"+reportDigest.String(), bob); err != nil {
		t.Errorf("Viewer GET of a report (an artifact): %v", err)
	}
	if _, err := remote.Referrers(vuln, bob...); err != nil {
		t.Errorf("Viewer referrers list: %v", err)
	}
	// Never refused: a Manager and the operator's pull credential (the kubelet's pulls).
	if err := get("team-a/app:vulnerable", alice); err != nil {
		t.Errorf("Manager GET of the vulnerable image: %v", err)
	}
	if err := get("team-a/app:vulnerable", kubelet); err != nil {
		t.Errorf("pull credential GET of the vulnerable image: %v", err)
	}
	// Callers who may not pull get the usual answer, not a verdict.
	for who, opts := range map[string][]remote.Option{"carol (no rule)": carol, "anonymous": reg.opts("", "")} {
		err := get("team-a/app:vulnerable", opts)
		if code, _ := statusOf(err); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("%s: %v, want 401 or 403", who, err)
		}
		if err != nil && strings.Contains(err.Error(), "CVE-2099-0001") {
			t.Errorf("%s learnt the image's vulnerabilities: %v", who, err)
		}
	}

	if m := scrape(t, reg); !strings.Contains(m, `dockyard_registry_compliance_refused_total{reason="Vulnerable"} 2`) ||
		!strings.Contains(m, `dockyard_registry_compliance_refused_total{reason="NotScanned"} 1`) {
		t.Errorf("refusal metrics, want 2 Vulnerable and 1 NotScanned:\n%s", m)
	}

	// An exemption in the policy file applies without a restart; a broken file changes
	// nothing.
	policy.Exemptions = []registryconfig.ComplianceExemption{{ID: "CVE-2099-0001", Reason: "not reachable, SEC-1",
		Expires: time.Now().Add(24 * time.Hour), Repositories: []string{"team-a/**"}}}
	writePolicy(policy)
	eventually(t, 10*time.Second, "the exemption to apply", func() error { return get("team-a/app:vulnerable", bob) })
	if err := os.WriteFile(policyFile, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // five reload intervals
	if err := get("team-a/app:vulnerable", bob); err != nil {
		t.Errorf("after a broken policy file: %v (the policy in force must stay)", err)
	}
	wantStatus(t, "Viewer GET unscanned after a broken policy file", get("team-a/app:unscanned", bob), http.StatusForbidden, "DENIED")
}

// TestCompliancePullGateShapes: what the gate judges is what a runtime runs. An image
// that names a subject or an artifact type is judged like any image (no way around the
// gate); a cosign signature (image config, only a JSON layer) is served unjudged; and
// with anonymous pulls allowed, a client without credentials is judged too.
func TestCompliancePullGateShapes(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	auth.AnonymousPull = true
	policyFile := filepath.Join(t.TempDir(), registryconfig.ComplianceFileName)
	if err := os.WriteFile(policyFile, []byte(`{"blockUnscanned":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := startRegistry(t, auth, func(c *registryconfig.Config) {
		c.Compliance = &registryconfig.Compliance{PolicyFile: policyFile}
	})
	alice, bob, anonymous := reg.opts("alice", "alice-pw"), reg.opts("bob", "bob-pw"), reg.opts("", "")
	repo, _ := name.NewRepository(reg.host + "/team-a/app")
	plain := mustAlpine(t, "1.2.5-r0")
	pushTo(t, repo, "plain", plain, alice)
	desc, err := remote.Head(repo.Tag("plain"), alice...)
	if err != nil {
		t.Fatal(err)
	}
	withSubject, ok := mutate.Subject(mustAlpine(t, "1.2.4-r2"), *desc).(ggcrv1.Image)
	if !ok {
		t.Fatal("mutate.Subject did not return an image")
	}
	pushTo(t, repo, "with-subject", withSubject, alice)
	sig := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	sig = mutate.ConfigMediaType(sig, types.OCIConfigJSON)
	sig, err = mutate.Append(sig, mutate.Addendum{Layer: static.NewLayer([]byte(`{"critical":{}}`), "application/vnd.dev.cosign.simplesigning.v1+json")})
	if err != nil {
		t.Fatal(err)
	}
	pushTo(t, repo, "sha256-abc.sig", sig, alice)

	get := func(ref string, opts []remote.Option) error {
		t.Helper()
		_, err := remote.Get(mustRef(t, reg.host+"/"+ref), opts...)
		return err
	}
	for who, opts := range map[string][]remote.Option{"Viewer": bob, "anonymous": anonymous} {
		for _, ref := range []string{"team-a/app:plain", "team-a/app:with-subject"} {
			err := get(ref, opts)
			wantStatus(t, who+" GET "+ref, err, http.StatusForbidden, "DENIED")
			if err == nil || !strings.Contains(err.Error(), "has not been scanned yet") {
				t.Errorf("%s GET %s: %v", who, ref, err)
			}
		}
		if err := get("team-a/app:sha256-abc.sig", opts); err != nil {
			t.Errorf("%s GET of a cosign signature: %v", who, err)
		}
	}
}

// TestCompliancePullGateCache: a pull-through cache repository is judged after its fetch
// (the gate sits inside the cache): a Viewer's first pull of an upstream image that has
// no report is refused under unscanned: Deny, a Manager's is served.
func TestCompliancePullGateCache(t *testing.T) {
	_, upAuth := authFixture(t, testUsers)
	up := startRegistry(t, upAuth, nil)
	pushTo(t, mustTag(t, up.host+"/library/app:v1").Context(), "v1", mustAlpine(t, "1.2.5-r0"), up.opts("admin", "admin-pw"))
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"username": "admin", "password": "admin-pw", "ca.crt": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.ca.cert.Raw}))} {
		if err := os.WriteFile(filepath.Join(creds, f), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	policyFile := filepath.Join(dir, registryconfig.ComplianceFileName)
	if err := os.WriteFile(policyFile, []byte(`{"blockUnscanned":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, auth := authFixture(t, testUsers)
	cache := startRegistry(t, auth, func(c *registryconfig.Config) {
		c.Cache = &registryconfig.Cache{Upstreams: []registryconfig.CacheUpstream{{Prefix: "team-a/up", URL: "https://" + up.host,
			CredentialsDir: creds, CAFile: filepath.Join(creds, "ca.crt"), TagTTL: registryconfig.Duration{Duration: time.Minute}}}}
		c.Compliance = &registryconfig.Compliance{PolicyFile: policyFile}
	})
	ref := mustTag(t, cache.host+"/team-a/up/library/app:v1")
	_, err := remote.Get(ref, cache.opts("bob", "bob-pw")...)
	wantStatus(t, "a Viewer's first pull through the cache", err, http.StatusForbidden, "DENIED")
	if err == nil || !strings.Contains(err.Error(), "has not been scanned yet") {
		t.Errorf("a Viewer's first pull through the cache: %v", err)
	}
	if _, err := remote.Image(ref, cache.opts("admin", "admin-pw")...); err != nil {
		t.Errorf("a Manager's pull through the cache: %v", err)
	}
}
