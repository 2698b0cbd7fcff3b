package access

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// BenchmarkCredentialCheck measures the authentication step alone (no HTTP, no storage) of
// a request that repeats its credentials, as every request after the first does: Basic
// with an htpasswd user (bcrypt remembered as an HMAC) and a registry token (verified once,
// then a hash lookup).
func BenchmarkCredentialCheck(b *testing.B) {
	dir := b.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	users := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(users, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	key, _ := registryconfig.NewTokenKey(time.Now().Add(-time.Minute))
	keys, _ := json.Marshal(registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}})
	keysFile := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(keysFile, keys, 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := registryconfig.Auth{HtpasswdFile: users, Token: &registryconfig.Token{KeysFile: keysFile, Issuer: "i", Service: "s",
		TTL: registryconfig.Duration{Duration: 5 * time.Minute}, Challenge: registryconfig.ChallengeBearer}}
	c, err := NewController(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	tok, _, _, err := c.tokens.issue(Identity{User: "alice", Provider: ProviderHtpasswd},
		[]tokenAccess{{Type: "repository", Name: "a/b", Actions: []string{"pull"}}}, 0)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, header string }{
		{"htpasswd-basic", "Basic " + basicValue("alice", "pw")},
		{"bearer-token", "Bearer " + tok},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodHead, "/v2/a/b/blobs/sha256:x", nil)
			r.Header.Set("Authorization", tc.header)
			if _, err := c.checkCredentials(r); err != nil { // first check: bcrypt / signature
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.checkCredentials(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func basicValue(user, pass string) string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")[len("Basic "):]
}
