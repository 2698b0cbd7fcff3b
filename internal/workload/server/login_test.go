package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/login"
	"github.com/dockyard-dev/dockyard/internal/testfixture/dex"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

// caBundle writes a PEM bundle with the registry's CA and dex's CA.
func caBundle(t *testing.T, d *dex.Server, regs ...*testRegistry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := d.CAPEM
	for _, reg := range regs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.ca.cert.Raw})...)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDockyardLoginDeviceFlow(t *testing.T) {
	d := dex.Start(t, dexUsers, dex.Options{})
	reg := startRegistry(t, oidcAuth(t, d), nil)
	cfgDir := t.TempDir()
	// An existing docker config: other registries' entries must survive.
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{"auths":{"other.example":{"auth":"eDp5"}},"psFormat":"table"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	// The person: reads the code from the command's output, signs in at dex.
	var stderr syncBuffer
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- login.Run(context.Background(), []string{"--ca-file", caBundle(t, d, reg), "--config", cfgDir, "--timeout", "1m", reg.host},
			strings.NewReader(""), &stdout, &stderr)
	}()
	codeRE := regexp.MustCompile(`enter the code (\S+)`)
	var code string
	for deadline := time.Now().Add(20 * time.Second); code == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := codeRE.FindStringSubmatch(stderr.String()); m != nil {
			code = m[1]
		}
	}
	if code == "" {
		t.Fatalf("no device code shown: %s", stderr.String())
	}
	if err := d.ApproveDevice(code, "alice@example.com", "alice-oidc"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dockyard login: %v\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("dockyard login did not finish")
	}
	if !strings.Contains(stdout.String(), "as alice@example.com") {
		t.Errorf("output %q does not name the user", stdout.String())
	}
	raw, err := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths    map[string]map[string]string `json:"auths"`
		PSFormat string                       `json:"psFormat"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Auths["other.example"]["auth"] != "eDp5" || cfg.PSFormat != "table" || cfg.Auths[reg.host]["identitytoken"] == "" {
		t.Fatalf("config after login: %s", raw)
	}
	if fi, _ := os.Stat(filepath.Join(cfgDir, "config.json")); fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", fi.Mode().Perm())
	}

	// go-containerregistry reads the stored session (identitytoken) and trades it for
	// tokens with the refresh grant: push and pull work without the ID token.
	t.Setenv("DOCKER_CONFIG", cfgDir)
	img, _ := random.Image(4<<10, 1)
	tag := mustTag(t, reg.host+"/team-a/logged-in:v1")
	opts := []remote.Option{remote.WithTransport(reg.transport), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatalf("push with the stored session: %v", err)
	}

	// skopeo (containers/image) with the same file.
	skopeo := requireTool(t, "skopeo")
	certDir := t.TempDir()
	writeAtomic(t, filepath.Join(certDir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.ca.cert.Raw}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, skopeo, "inspect", "--authfile", filepath.Join(cfgDir, "config.json"),
		"--cert-dir", certDir, "docker://"+reg.host+"/team-a/logged-in:v1").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo with the stored session: %v\n%s", err, out)
	}
}

func TestDockyardLoginRefusals(t *testing.T) {
	d := dex.Start(t, dexUsers, dex.Options{})
	auth := oidcAuth(t, d)
	reg := startRegistry(t, auth, nil)
	_, plain := authFixture(t, testUsers)
	withTokens(t, plain, newKey(t, time.Now().Add(-time.Minute)))
	other := startRegistry(t, plain, nil)
	ca := caBundle(t, d, reg, other)
	run := func(args ...string) error {
		return login.Run(context.Background(), append([]string{"--ca-file", ca, "--config", t.TempDir(), "--timeout", "20s"}, args...),
			strings.NewReader(""), io.Discard, io.Discard)
	}
	// The device flow times out when nobody signs in.
	err := login.Run(context.Background(), []string{"--ca-file", ca, "--config", t.TempDir(), "--timeout", "2s", reg.host},
		strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "device flow did not complete") {
		t.Errorf("unanswered device flow: %v", err)
	}
	// A registry without OIDC login says so.
	if err := run(other.host); err == nil || !strings.Contains(err.Error(), "does not offer OIDC login") {
		t.Errorf("registry without OIDC login: %v", err)
	}
	if err := run("--password-stdin", reg.host); err == nil || !strings.Contains(err.Error(), "needs --username") {
		t.Errorf("--password-stdin without --username: %v", err)
	}
	if err := run(); err == nil {
		t.Error("no registry named: no error")
	}
}
