package registryconfig

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A pull credential is what the operator writes into the pull Secrets of selected
// namespaces: a JWT signed with the Registry's token keys (so every replica can verify it
// without new state), audience Service#pull, granting pull on repository patterns only.
// Clients present it as the password of Basic credentials (the user name is not used), as
// the kubelet does with an imagePullSecret.

// PullCredentialUserPrefix starts the user name a pull credential stands for:
// pull-secret:<namespace>.
const PullCredentialUserPrefix = "pull-secret:"

// PullCredentialAudience is the aud claim of pull credentials: never accepted as an access
// token, nor an access token as a pull credential.
func PullCredentialAudience(service string) string { return service + "#pull" }

// PullCredentialClaims are the claims of a pull credential.
type PullCredentialClaims struct {
	jwt.RegisteredClaims
	// Repositories are the patterns it may pull.
	Repositories []string `json:"repos"`
}

// SignPullCredential signs a pull credential for namespace granting pull on repositories,
// valid from now for ttl, with the key replicas sign with at now. It returns the token and
// the ID of the key that signed it (a credential signed with a retiring key is reissued).
func SignPullCredential(keys TokenKeys, issuer, service, namespace string, repositories []string, now time.Time, ttl time.Duration) (string, string, error) {
	k, err := SigningKey(keys, now)
	if err != nil {
		return "", "", err
	}
	block, _ := pem.Decode([]byte(k.PrivateKey))
	if block == nil {
		return "", "", fmt.Errorf("token key %s: no PEM block", k.ID)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return "", "", fmt.Errorf("token key %s: %w", k.ID, err)
	}
	ec, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return "", "", fmt.Errorf("token key %s: not an ECDSA key", k.ID)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", "", err
	}
	claims := PullCredentialClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   PullCredentialUserPrefix + namespace,
			Audience:  jwt.ClaimStrings{PullCredentialAudience(service)},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
		Repositories: repositories,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = k.ID
	signed, err := t.SignedString(ec)
	if err != nil {
		return "", "", fmt.Errorf("sign pull credential: %w", err)
	}
	return signed, k.ID, nil
}

// SigningKey is the key replicas sign with at now: the newest whose SignFrom has passed
// (the oldest when none has).
func SigningKey(keys TokenKeys, now time.Time) (TokenKey, error) {
	if len(keys.Keys) == 0 {
		return TokenKey{}, errors.New("no token keys")
	}
	sorted := slices.Clone(keys.Keys)
	slices.SortStableFunc(sorted, func(a, b TokenKey) int { return a.SignFrom.Compare(b.SignFrom) })
	pick := sorted[0]
	for _, k := range sorted {
		if !k.SignFrom.After(now) {
			pick = k
		}
	}
	return pick, nil
}
