package compliance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func pemOf(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestParseKeys accepts the keys cosign makes and refuses weak or unknown ones, naming
// which entry is wrong; the set's ID changes with its keys.
func TestParseKeys(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	good := []string{pemOf(t, &p256.PublicKey), pemOf(t, edPub), pemOf(t, &rsa2048.PublicKey)}
	k, err := ParseKeys(good)
	if err != nil || len(k.Keys) != 3 || k.ID == "" {
		t.Fatalf("ParseKeys(good) = %+v, %v", k, err)
	}
	k2, _ := ParseKeys(good[:2])
	if k2.ID == k.ID {
		t.Error("two key sets share an ID")
	}
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{[]string{good[0], pemOf(t, &p224.PublicKey)}, "public key 2: ECDSA curve P-224"},
		{[]string{pemOf(t, &rsa1024.PublicKey)}, "public key 1: RSA key of 1024 bits"},
		{[]string{"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}, "public key 1:"},
		{nil, "no public key"},
	} {
		if _, err := ParseKeys(tc.keys); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKeys: %v; want an error containing %q", err, tc.want)
		}
	}
}
