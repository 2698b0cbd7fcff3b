package server_test

import (
	"context"
	"encoding/pem"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/compliance"
	"github.com/dockyard-dev/dockyard/internal/scan"
	"github.com/dockyard-dev/dockyard/internal/testfixture/cosign"
)

// BenchmarkComplianceCheck measures the decision the admission webhook makes per image,
// with a warm cache (the report and the signature verdict cached, as for every Pod after
// the first of a rollout): the tag is still resolved to its digest on every call, one
// round trip to the real registry over TLS with token auth. Reported: p50/p99 per decision.
// Sub-benchmarks: a policy on the report only, and one that also requires a cosign signature.
func BenchmarkComplianceCheck(b *testing.B) {
	_, auth := authFixture(b, testUsers)
	reg := startRegistry(b, auth, nil)
	trivy := scanFixture(b, reg, time.Now())
	repo, _ := name.NewRepository(reg.host + "/team-a/app")
	img := mustAlpine(b, "1.2.5-r0")
	if err := remote.Write(repo.Tag("v1"), img, reg.opts("alice", "alice-pw")...); err != nil {
		b.Fatal(err)
	}
	d, _ := img.Digest()
	digest := repo.Digest(d.String())
	r, err := trivy.Scan(context.Background(), digest.String(), &scan.Credentials{Username: "bob", Password: "bob-pw"})
	if err != nil {
		b.Fatal(err)
	}
	desc, err := remote.Head(digest, reg.opts("alice", "alice-pw")...)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := scan.Attach(repo, *desc, r, scanKey, reg.opts("alice", "alice-pw")...); err != nil {
		b.Fatal(err)
	}
	signer := cosign.New(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.ca.cert.Raw}))
	signer.Login(b, reg.host, "alice", "alice-pw")
	if err := signer.Sign(digest.String()); err != nil {
		b.Fatal(err)
	}
	keys, err := compliance.ParseKeys([]string{signer.PublicKeyPEM(b)})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		policy compliance.Policy
	}{
		{"report", compliance.Policy{Severity: scan.SeverityHigh}},
		{"report+signature", compliance.Policy{Severity: scan.SeverityHigh, Signatures: keys}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			checker := &compliance.Checker{Remote: reg.opts("bob", "bob-pw"), Keys: scanKeys, TTL: time.Hour}
			if d, err := checker.Check(context.Background(), repo.Tag("v1"), bc.policy); err != nil || !d.Allowed {
				b.Fatalf("warm-up: %+v, %v", d, err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				d, err := checker.Check(context.Background(), repo.Tag("v1"), bc.policy)
				if err != nil || !d.Allowed {
					b.Fatalf("%+v, %v", d, err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}
