package controller_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dockyard-dev/dockyard/internal/manager"
	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

// The suite runs the real manager against a real kube-apiserver and etcd (envtest; built
// from the Go module proxy by hack/build-envtest.sh, see `make test`). There is no
// kube-controller-manager: no Deployment controller, no garbage collector, no volume
// binding. Tests that need their effects write the status those controllers would.

var (
	// adminConfig is the envtest administrator's connection.
	adminConfig *rest.Config
	testEnv     *envtest.Environment
	k8sClient   client.Client
	ctx         context.Context
	cancel      context.CancelFunc
	writes      = &writeCounter{byPath: map[string]int{}}
)

const testImage = "dockyard:test"

// operatorNamespace is where the suite's manager keeps its webhook certificate.
const operatorNamespace = "dockyard-system"

func TestController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite (envtest)")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	// Eventually without its own bounds waits as long as the explicit ones: a loaded
	// machine must not fail a spec that only asked for the default.
	SetDefaultEventuallyTimeout(timeout)
	SetDefaultEventuallyPollingInterval(interval)
	ctx, cancel = context.WithCancel(context.Background())

	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS is unset: run `make test`, which builds kube-apiserver and etcd into bin/envtest")

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases"), certManagerCRDs(), monitoringCRDs()},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	adminConfig = cfg

	k8sClient, err = client.New(cfg, client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())

	// The manager runs as its own user, bound to exactly the ClusterRole generated from the
	// controller's RBAC markers (config/rbac/role.yaml): a missing verb fails the suite.
	mgrUser, err := testEnv.AddUser(envtest.User{Name: "dockyard-manager"}, cfg)
	Expect(err).NotTo(HaveOccurred())
	bindGeneratedRole("dockyard-manager")
	mgrCfg := rest.CopyConfig(mgrUser.Config())
	// The manager's writes are counted at its transport.
	mgrCfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return writes.wrap(rt) })
	// The compliance webhook, served on 127.0.0.1 and called there by the real API server.
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}})).To(Succeed())
	webhookPort, err := testfixture.FreePort()
	Expect(err).NotTo(HaveOccurred())
	mgr, err := manager.New(mgrCfg, manager.Options{MetricsAddr: "0", ProbeAddr: "0", Image: testImage, ClusterDomain: "cluster.local",
		RegistryAddress: registryAddress, ScannerAddress: scannerAddress, EventsAddr: eventsAddr(),
		Namespace: operatorNamespace, WebhookAddr: fmt.Sprintf("127.0.0.1:%d", webhookPort), WebhookService: "dockyard-webhook",
		WebhookURL: fmt.Sprintf("https://127.0.0.1:%d/validate-compliance", webhookPort), WebhookFailurePolicy: "Fail"})
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	cancel()
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// bindGeneratedRole creates the ClusterRole in config/rbac/role.yaml and binds it to user.
func bindGeneratedRole(user string) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	Expect(sigsyaml.Unmarshal(data, role)).To(Succeed())
	for _, r := range role.Rules {
		Expect(r.Verbs).NotTo(ContainElement("*"), "no wildcard verbs")
		Expect(r.Resources).NotTo(ContainElement("*"), "no wildcard resources")
	}
	role.Name = "dockyard-manager-under-test"
	Expect(k8sClient.Create(ctx, role)).To(Succeed())
	Expect(k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	})).To(Succeed())
}

// certManagerCRDs is the deploy/crds directory of the cert-manager module this project
// builds against, so the Certificate schema the API server enforces is the real one.
func certManagerCRDs() string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	Expect(err).NotTo(HaveOccurred(), "locate the cert-manager module")
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	Expect(dir).To(BeADirectory())
	return dir
}

// monitoringCRDs generates the Prometheus Operator's CRDs (PodMonitor and the rest) from
// the API module this project builds against, with controller-gen, as that project does:
// the schema the API server enforces on our PodMonitors is the real one.
func monitoringCRDs() string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring").Output()
	Expect(err).NotTo(HaveOccurred(), "locate the prometheus-operator monitoring API module")
	gens, _ := filepath.Glob(filepath.Join("..", "..", "bin", "controller-gen-*"))
	Expect(gens).NotTo(BeEmpty(), "controller-gen is missing: run `make test` (it builds it into bin/)")
	gen, err := filepath.Abs(gens[0])
	Expect(err).NotTo(HaveOccurred())
	dir := GinkgoT().TempDir()
	cmd := exec.Command(gen, "crd:crdVersions=v1,maxDescLen=0", "paths=./v1", "output:crd:dir="+dir)
	cmd.Dir = strings.TrimSpace(string(out))
	b, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "generate the monitoring CRDs: %s", b)
	return dir
}

// writeCounter counts the manager's mutating API requests.
type writeCounter struct {
	total  atomic.Int64
	mu     sync.Mutex
	byPath map[string]int
}

type countingRT struct {
	next http.RoundTripper
	c    *writeCounter
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return &countingRT{next: rt, c: w}
}

func (c *countingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		c.c.total.Add(1)
		c.c.mu.Lock()
		c.c.byPath[req.Method+" "+req.URL.Path]++
		c.c.mu.Unlock()
	}
	return c.next.RoundTrip(req)
}

func (w *writeCounter) snapshot() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.byPath))
	for k, v := range w.byPath {
		out[k] = v
	}
	return out
}

// diffCounts is what changed between two snapshots in namespace ns and in cluster-scoped
// objects: the objects other specs left behind (a ReplicationRule retrying every minute)
// keep writing in theirs.
func diffCounts(ns string, before, after map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range after {
		own := !strings.Contains(k, "/namespaces/") || strings.Contains(k, "/namespaces/"+ns+"/")
		if own && v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

var _ = ctrl.Log

const (
	timeout  = 20 * time.Second
	interval = 100 * time.Millisecond
)

// reconcileCount reads controller-runtime's reconcile counter for the registry controller.
func reconcileCount() float64 {
	mfs, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "registry" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
