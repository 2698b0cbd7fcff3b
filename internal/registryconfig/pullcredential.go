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

// PullCredentialClaims are the claims of a pull or a replication credential.
type PullCredentialClaims struct {
	jwt.RegisteredClaims
	// Repositories are the patterns it may act on.
	Repositories []string `json:"repos"`
	// Actions a replication credential grants on them (pull, push, delete); a pull
	// credential has none and may only pull.
	Actions []string `json:"acts,omitempty"`
}

// A replication credential is what the operator's replicator presents to a Dockyard
// Registry it copies from or to: like a pull credential (a JWT signed with the Registry's
// token keys, repository patterns), with audience Service#replication, subject
// replication:<namespace>/<rule>, and the actions the rule needs. It lives minutes; the
// operator signs a new one for every run.

// ReplicationCredentialUserPrefix starts the user name a replication credential stands for.
const ReplicationCredentialUserPrefix = "replication:"

// ReplicationCredentialAudience is the aud claim of replication credentials.
func ReplicationCredentialAudience(service string) string { return service + "#replication" }

// SignReplicationCredential signs a replication credential for the rule namespace/name
// granting actions on repositories, valid from now for ttl.
func SignReplicationCredential(keys TokenKeys, issuer, service, rule string, repositories, actions []string, now time.Time, ttl time.Duration) (string, error) {
	if len(repositories) == 0 || len(actions) == 0 {
		return "", errors.New("a replication credential needs repositories and actions")
	}
	tok, _, err := signCredential(keys, PullCredentialClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: ReplicationCredentialUserPrefix + rule,
			Audience: jwt.ClaimStrings{ReplicationCredentialAudience(service)},
		},
		Repositories: repositories, Actions: actions,
	}, now, ttl)
	return tok, err
}

// A scanner credential is the identity of a Registry's vulnerability scanner: a
// replication credential (same audience, same checks) with subject
// scanner:<namespace>/<registry>, granting pull and push (to store reports) on every
// repository, and nothing else: no delete (a scanner parses hostile images; if one were
// taken over it must not destroy anything), and the registry lets it write manifests by
// digest only, never a tag. Older reports of an image scanned again stay (readers take
// the newest). The operator keeps it in the scanner's credentials Secret and renews it
// well before it expires.

// ScannerCredentialUserPrefix starts the user name a scanner credential stands for.
const ScannerCredentialUserPrefix = "scanner:"

// ScannerCredentialActions are what the scanner may do on every repository.
var ScannerCredentialActions = []string{"pull", "push"}

// SignScannerCredential signs the scanner credential of Registry namespace/name, valid
// from now for ttl.
func SignScannerCredential(keys TokenKeys, issuer, service, registry string, now time.Time, ttl time.Duration) (string, string, error) {
	return signCredential(keys, PullCredentialClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: ScannerCredentialUserPrefix + registry,
			Audience: jwt.ClaimStrings{ReplicationCredentialAudience(service)},
		},
		Repositories: []string{"**"}, Actions: ScannerCredentialActions,
	}, now, ttl)
}

// SignPullCredential signs a pull credential for namespace granting pull on repositories,
// valid from now for ttl, with the key replicas sign with at now. It returns the token and
// the ID of the key that signed it (a credential signed with a retiring key is reissued).
func SignPullCredential(keys TokenKeys, issuer, service, namespace string, repositories []string, now time.Time, ttl time.Duration) (string, string, error) {
	return signCredential(keys, PullCredentialClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: PullCredentialUserPrefix + namespace,
			Audience: jwt.ClaimStrings{PullCredentialAudience(service)},
		},
		Repositories: repositories,
	}, now, ttl)
}

// signCredential completes claims (times, ID) and signs them with the key replicas sign
// with at now.
func signCredential(keys TokenKeys, claims PullCredentialClaims, now time.Time, ttl time.Duration) (string, string, error) {
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
	claims.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	claims.NotBefore = jwt.NewNumericDate(now.Add(-time.Minute))
	claims.IssuedAt = jwt.NewNumericDate(now)
	claims.ID = base64.RawURLEncoding.EncodeToString(jti)
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = k.ID
	signed, err := t.SignedString(ec)
	if err != nil {
		return "", "", fmt.Errorf("sign credential: %w", err)
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
