// Package cosign runs the real cosign binary (built by hack/build-scantools.sh into the tool
// cache; `make test` passes it as DOCKYARD_COSIGN) to sign and verify images offline: a
// local key pair, no transparency log, no network. Without the binary, tests are skipped,
// unless DOCKYARD_REQUIRE_CLIENTS is set, where they fail.
package cosign

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

// TB is what the fixture needs of a test.
type TB = testfixture.TB

// Binary returns cosign's path, or skips (fails under DOCKYARD_REQUIRE_CLIENTS) without it.
func Binary(t TB) string {
	t.Helper()
	if p := os.Getenv("DOCKYARD_COSIGN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testfixture.Missing(t, "cosign is not built (DOCKYARD_COSIGN=$(hack/build-scantools.sh cosign); make test does it)")
	return ""
}

// Signer is a key pair in a private home directory, trusting caPEM for registries.
type Signer struct {
	bin, home, caFile string
	// Key and PublicKey are the key files.
	Key, PublicKey string
}

const password = "dockyard-test"

// New generates a key pair. Registries are reached over TLS trusting caPEM.
func New(t TB, caPEM []byte) *Signer {
	t.Helper()
	s := &Signer{bin: Binary(t), home: t.TempDir()}
	s.caFile = filepath.Join(s.home, "ca.crt")
	if err := os.WriteFile(s.caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.run("generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v", err)
	}
	s.Key, s.PublicKey = filepath.Join(s.home, "cosign.key"), filepath.Join(s.home, "cosign.pub")
	return s
}

// Login stores credentials for host (host:port) where cosign finds them
// ($HOME/.docker/config.json).
func (s *Signer) Login(t TB, host, user, password string) {
	t.Helper()
	cfg, err := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.home, ".docker")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
}

// PublicKeyPEM is the public key file's content.
func (s *Signer) PublicKeyPEM(t TB) string {
	t.Helper()
	b, err := os.ReadFile(s.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Sign signs ref (repository@digest) and pushes the signature (cosign's sha256-<hex>.sig
// tag) to the registry; extra are more flags for cosign sign.
func (s *Signer) Sign(ref string, extra ...string) error {
	_, err := s.run(append(append([]string{"sign", "--key", s.Key, "--tlog-upload=false", "--yes"}, extra...), ref)...)
	return err
}

// Verify checks ref's signature against the public key.
func (s *Signer) Verify(ref string) error {
	_, err := s.run("verify", "--key", s.PublicKey, "--insecure-ignore-tlog=true", ref)
	return err
}

func (s *Signer) run(args ...string) (string, error) {
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.home
	cmd.Env = []string{"HOME=" + s.home, "COSIGN_PASSWORD=" + password, "SSL_CERT_FILE=" + s.caFile, "PATH=" + os.Getenv("PATH"),
		"TUF_ROOT=" + filepath.Join(s.home, ".sigstore", "root")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("cosign %s: %w\n%s", args[0], err, out.String())
	}
	return out.String(), nil
}
