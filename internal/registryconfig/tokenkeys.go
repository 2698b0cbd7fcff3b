package registryconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"time"
)

// NewTokenKey generates an ECDSA P-256 token signing key that replicas start signing with
// at signFrom.
func NewTokenKey(signFrom time.Time) (TokenKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TokenKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return TokenKey{}, err
	}
	id := make([]byte, 9)
	if _, err := rand.Read(id); err != nil {
		return TokenKey{}, err
	}
	return TokenKey{
		ID:         base64.RawURLEncoding.EncodeToString(id),
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		SignFrom:   signFrom.UTC().Truncate(time.Second),
	}, nil
}
