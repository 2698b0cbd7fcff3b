package admission

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func leafOf(t *testing.T, sec *corev1.Secret) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(sec.Data[corev1.TLSCertKey])
	if b == nil {
		t.Fatal("no serving certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCertsRenewal: a new Secret gets a CA and a serving certificate for the hosts that
// the bundle trusts; nothing changes while both are fresh; the serving certificate is
// reissued by the same CA (so the caBundle the API server holds keeps working) when a
// third of its life is left or the hosts change; a CA due for renewal is replaced, with
// the old one kept in the bundle beside it and the serving certificate it signed kept.
func TestCertsRenewal(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	c := &Certs{Hosts: []string{"dockyard-webhook.dockyard-system.svc", "127.0.0.1"}, Now: func() time.Time { return now }}
	sec := &corev1.Secret{}
	if changed, err := c.renew(sec); err != nil || !changed {
		t.Fatalf("first renew: changed=%v err=%v", changed, err)
	}
	leaf := leafOf(t, sec)
	if !trustedBy(leaf, sec.Data[keyCABundle], now) || !coversHosts(leaf, c.Hosts) {
		t.Fatal("the serving certificate is not trusted by the bundle for its hosts")
	}
	if _, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]); err != nil {
		t.Fatal(err)
	}
	ca := bytes.Clone(sec.Data[keyCACert])

	now = now.Add(200 * 24 * time.Hour)
	if changed, _ := c.renew(sec); changed {
		t.Fatal("renewed a fresh certificate")
	}
	now = now.Add(50 * 24 * time.Hour) // 250 days: less than a third of a year left
	if changed, _ := c.renew(sec); !changed {
		t.Fatal("did not renew a certificate with a third of its life left")
	}
	if !bytes.Equal(sec.Data[keyCACert], ca) || leafOf(t, sec).SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("a serving renewal must keep the CA and issue a new certificate")
	}
	c.Hosts = append(c.Hosts, "dockyard-webhook.dockyard-system.svc.cluster.local")
	if changed, _ := c.renew(sec); !changed || !coversHosts(leafOf(t, sec), c.Hosts) {
		t.Fatal("a new host name did not reissue the certificate")
	}

	leaf = leafOf(t, sec)
	now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC).Add(caLifetime - renewCABefore + time.Hour)
	// (the serving certificate is long expired by then: renewed too, by the new CA)
	if changed, _ := c.renew(sec); !changed {
		t.Fatal("did not renew a CA with less than a year left")
	}
	if bytes.Equal(sec.Data[keyCACert], ca) || !bytes.Contains(sec.Data[keyCABundle], ca) {
		t.Fatal("a CA renewal must replace the CA and keep the old one in the bundle")
	}
	if !trustedBy(leafOf(t, sec), sec.Data[keyCABundle], now) || leafOf(t, sec).SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("the expired serving certificate was not reissued under the bundle")
	}
}

// TestCertsKeepServingAcrossCARotation: when only the CA is due, the serving certificate
// the old CA signed stays (the API server may still hold the old bundle).
func TestCertsKeepServingAcrossCARotation(t *testing.T) {
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	now := start
	c := &Certs{Hosts: []string{"h.example"}, Now: func() time.Time { return now }}
	sec := &corev1.Secret{}
	if _, err := c.renew(sec); err != nil {
		t.Fatal(err)
	}
	// A CA that is due while the serving certificate is fresh: rewrite the CA's expiry by
	// issuing the pair at a time that makes the CA due first.
	now = start.Add(caLifetime - renewCABefore - 100*24*time.Hour)
	delete(sec.Data, corev1.TLSCertKey)
	if _, err := c.renew(sec); err != nil {
		t.Fatal(err)
	}
	leaf := leafOf(t, sec)
	now = now.Add(101 * 24 * time.Hour)
	if changed, _ := c.renew(sec); !changed {
		t.Fatal("the CA was not renewed")
	}
	if leafOf(t, sec).SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatal("the serving certificate changed with the CA")
	}
	if !trustedBy(leaf, sec.Data[keyCABundle], now) {
		t.Fatal("the bundle no longer trusts the certificate being served")
	}
}
