//go:build e2e

// Package e2e runs Dockyard on a real cluster: the operator deployed from config/default,
// registries whose pods really serve, real clients pushing and pulling through Services.
//
// It needs only a kubeconfig (KUBECONFIG) and kubectl on PATH, with the dockyard image
// already present on the nodes (E2E_IMAGE, default dockyard:dev). On this project's local
// cluster, `make test-e2e` runs it inside the cluster's network namespace, the only place
// Service and pod addresses may be reached from. Labels: smoke (fast, safe), disruptive
// (rotates certificates, rolls pods, deletes things).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/dockyard-dev/dockyard/internal/manager"
)

var (
	k8s      client.Client
	image    = envOr("E2E_IMAGE", "dockyard:dev")
	repoRoot = filepath.Join("..", "..")
	ctx      = context.Background()
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Dockyard e2e")
}

var _ = BeforeSuite(func() {
	cfg, err := config.GetConfig()
	Expect(err).NotTo(HaveOccurred(), "a kubeconfig is required (KUBECONFIG)")
	k8s, err = client.New(cfg, client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
	deployOperator(image)
})

// deployOperator applies config/default with the image under test, and waits for it. The
// pod template is stamped with the time, so a cluster that already runs an operator of the
// same tag (a second `make test-e2e`) rolls to the freshly imported image.
// deployOperator applies config/default with the operator image and registryImage as the
// image of registry pods (DOCKYARD_IMAGE), restarting the manager (a new pod annotation),
// as an upgrade would.
func deployOperator(registryImage string) {
	By("deploying the operator from config/default with image " + image + ", registry pods " + registryImage)
	overlay := GinkgoT().TempDir()
	abs, err := filepath.Abs(filepath.Join(repoRoot, "config", "default"))
	Expect(err).NotTo(HaveOccurred())
	rel, err := filepath.Rel(overlay, abs)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(fmt.Sprintf(`resources:
- %s
images:
- name: controller
  newName: %s
  newTag: %s
patches:
- target: {kind: Deployment, name: dockyard-controller-manager}
  patch: |-
    - op: replace
      path: /spec/template/spec/containers/0/env/0
      value: {name: DOCKYARD_IMAGE, value: %q}
    - op: add
      path: /spec/template/metadata/annotations/e2e.dockyard.dev~1deployed
      value: %q
`, rel, imageName(image), imageTag(image), registryImage, time.Now().UTC().Format(time.RFC3339Nano))), 0o644)).To(Succeed())
	kustomize := os.Getenv("KUSTOMIZE")
	if kustomize == "" {
		matches, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "kustomize-*"))
		Expect(matches).NotTo(BeEmpty(), "kustomize not found: run `make test-e2e`, which builds it into bin/")
		kustomize = matches[len(matches)-1]
	}
	manifests := run(kustomize, "build", overlay)
	runIn(manifests, "kubectl", "apply", "--server-side", "--force-conflicts", "-f", "-")
	run("kubectl", "-n", "dockyard-system", "rollout", "status", "deployment/dockyard-controller-manager", "--timeout=180s")
}

var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() {
		dumpState()
	}
})

// dumpState writes what a person debugging a failure needs: Dockyard objects, events and
// logs of the operator, registry, dex and Job pods.
func dumpState() {
	dir := envOr("E2E_ARTIFACTS", filepath.Join(os.TempDir(), "dockyard-e2e-artifacts"))
	_ = os.MkdirAll(dir, 0o755)
	dumps := map[string][]string{
		"registries.yaml":   {"get", "registries", "-A", "-o", "yaml"},
		"children.txt":      {"get", "deploy,ds,sts,svc,cm,secret,sa,pvc,cronjob,job,pod,certificate,issuer,rolebinding", "-A", "-o", "wide"},
		"events.txt":        {"get", "events", "-A", "--sort-by=.lastTimestamp"},
		"operator-logs.txt": {"-n", "dockyard-system", "logs", "deployment/dockyard-controller-manager", "--tail=400"},
		"registry-logs.txt": {"logs", "-A", "-l", "app.kubernetes.io/name=dockyard-registry", "--tail=200", "--prefix"},
		"dex-logs.txt":      {"logs", "-A", "-l", "app=dex", "--tail=200", "--prefix"},
		"job-logs.txt":      {"logs", "-A", "-l", "batch.kubernetes.io/job-name", "--all-containers", "--tail=100", "--prefix"},
	}
	for file, args := range dumps {
		out, _ := exec.Command("kubectl", args...).CombinedOutput()
		_ = os.WriteFile(filepath.Join(dir, file), out, 0o644)
	}
	GinkgoWriter.Printf("e2e: state dumped to %s\n", dir)
	if out, err := os.ReadFile(filepath.Join(dir, "operator-logs.txt")); err == nil {
		GinkgoWriter.Printf("--- operator logs (tail) ---\n%s\n", tail(string(out), 60))
	}
}

func run(name string, args ...string) string { return runIn("", name, args...) }

// runIn runs a command with stdin and fails the spec with its output on error.
func runIn(stdin, name string, args ...string) string {
	GinkgoHelper()
	c := exec.Command(name, args...)
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	Expect(err).NotTo(HaveOccurred(), "%s %s\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), out.String(), errb.String())
	return out.String()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func imageName(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}

func imageTag(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

const (
	shortWait = time.Minute
	longWait  = 5 * time.Minute
	poll      = 500 * time.Millisecond
)
