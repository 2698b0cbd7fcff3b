package server_test

import (
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// requireTool returns the path of a client program the tests drive for real. `make test`
// installs them (hack/test-deps.sh) and sets DOCKYARD_REQUIRE_CLIENTS, so there a missing
// client fails the test instead of skipping it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("DOCKYARD_REQUIRE_CLIENTS") != "" {
			t.Fatalf("%s is required (run hack/test-deps.sh): %v", name, err)
		}
		t.Skipf("%s not installed (hack/test-deps.sh installs it)", name)
	}
	return p
}

// skopeo sends empty Basic credentials (`Authorization: Basic Og==`) when it has none; with
// anonymousPull that must pull like any anonymous client, and still not push.
func TestSkopeoAnonymousPull(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	_, auth := authFixture(t, testUsers)
	auth.AnonymousPull = true
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(2048, 2)
	if err := remote.Write(mustTag(t, reg.host+"/team-b/public:v1"), img, reg.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	certs := filepath.Join(work, "certs")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(certs, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.ca.cert.Raw}))
	authFile := filepath.Join(work, "auth.json")
	if err := os.WriteFile(authFile, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(skopeo, args...)
		cmd.Env = append(os.Environ(), "REGISTRY_AUTH_FILE="+authFile, "HOME="+work, "XDG_RUNTIME_DIR="+work)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	src := "docker://" + reg.host + "/team-b/public:v1"
	if out, err := run("copy", "--src-cert-dir", certs, src, "oci:"+filepath.Join(work, "layout")+":v1"); err != nil {
		t.Fatalf("anonymous skopeo copy: %v\n%s", err, out)
	}
	if out, err := run("inspect", "--cert-dir", certs, src); err != nil || !strings.Contains(out, "sha256:") {
		t.Fatalf("anonymous skopeo inspect: %v\n%s", err, out)
	}
	out, err := run("copy", "--dest-cert-dir", certs, "oci:"+filepath.Join(work, "layout")+":v1", "docker://"+reg.host+"/team-b/public:pushed")
	if err == nil {
		t.Fatalf("anonymous skopeo push succeeded:\n%s", out)
	}
	if !strings.Contains(out, "401") && !strings.Contains(strings.ToLower(out), "unauthorized") && !strings.Contains(strings.ToLower(out), "authentication required") {
		t.Errorf("anonymous push refused for another reason than authentication:\n%s", out)
	}
}
