// Package bench measures the operator at scale on envtest (a real kube-apiserver and
// etcd). Run it with `make bench`.
package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/manager"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// registries is how many Registries the benchmark creates: BENCH_REGISTRIES, default 1000.
var registries = func() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_REGISTRIES")); err == nil && n > 0 {
		return n
	}
	return 1000
}()

// BenchmarkReconcile creates BENCH_REGISTRIES Registries (default 1,000; filesystem
// storage, users Secret, GC schedule) and reports the time until every one is reconciled
// (status.observedGeneration == generation and its Deployment, Service, ConfigMap, PVC and
// CronJob exist), the manager's API writes per Registry, and the manager process's peak
// resident memory and, after a garbage collection, its live heap (from pprof). The manager
// runs as its own process (the dockyard binary), so its numbers exclude the benchmark
// driver. BENCH_HEAP_PROFILE=FILE saves the manager's heap profile at the end.
func BenchmarkReconcile(b *testing.B) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		b.Fatal("KUBEBUILDER_ASSETS is unset: run `make bench`")
	}
	for i := 0; i < b.N; i++ {
		runOnce(b)
	}
}

func runOnce(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	// envtest's default Service range (a /24) runs out at about 250 Registries; a /16 is
	// plenty. Only the API server's IP allocator sees it: nothing is routed.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	cfg, err := env.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	c, err := client.New(cfg, client.Options{Scheme: manager.NewScheme()})
	if err != nil {
		b.Fatal(err)
	}

	user, err := env.AddUser(envtest.User{Name: "dockyard-bench", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "dockyard")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd").CombinedOutput(); err != nil {
		b.Fatalf("build dockyard: %v\n%s", err, out)
	}
	metricsAddr, pprofAddr := freeAddr(b), freeAddr(b)
	mgr := exec.CommandContext(ctx, bin, "manager", "--metrics-bind-address", metricsAddr, "--metrics-secure=false",
		"--pprof-bind-address", pprofAddr, "--health-probe-bind-address", "0", "--zap-log-level", "error")
	mgr.Env = append(os.Environ(), "KUBECONFIG="+kcPath)
	mgr.Stderr = os.Stderr
	if err := mgr.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = mgr.Process.Kill(); _ = mgr.Wait() }()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}
	if err := c.Create(ctx, ns); err != nil {
		b.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "users"},
		// The operator only checks that the key is present; no pod verifies passwords here.
		StringData: map[string]string{"htpasswd": "alice:$2y$05$abcdefghijklmnopqrstuuOl7jzG1eZ8e6nQ7y0Cq5Q0b7nE8Hk6i\n"}}); err != nil {
		b.Fatal(err)
	}
	waitForMetrics(ctx, b, metricsAddr)
	writesBefore := managerWrites(b, metricsAddr)

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < registries; i++ {
		reg := &v1alpha1.Registry{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("reg-%04d", i)},
			Spec: v1alpha1.RegistrySpec{
				Storage:           v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("1Gi")}},
				Auth:              &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: "users"}},
				GarbageCollection: &v1alpha1.GarbageCollectionSpec{Schedule: "0 3 * * *"},
			},
		}
		if err := c.Create(ctx, reg); err != nil {
			b.Fatal(err)
		}
	}
	created := time.Since(start)

	var peakRSS int64
	var mu sync.Mutex
	stopSampling := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				if v := vmHWM(mgr.Process.Pid); v > 0 {
					mu.Lock()
					peakRSS = v
					mu.Unlock()
				}
			}
		}
	}()

	for {
		if ctx.Err() != nil {
			b.Fatal("timed out waiting for all Registries to be reconciled")
		}
		if allReconciled(ctx, c) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	// Let trailing writes (status of the last reconciles, events) land before counting.
	time.Sleep(2 * time.Second)
	writes := managerWrites(b, metricsAddr) - writesBefore
	close(stopSampling)
	mu.Lock()
	rss := vmHWM(mgr.Process.Pid)
	if rss < peakRSS {
		rss = peakRSS
	}
	mu.Unlock()

	heap := liveHeap(b, pprofAddr)
	anon, file := procStatus(mgr.Process.Pid, "RssAnon:"), procStatus(mgr.Process.Pid, "RssFile:")
	b.ReportMetric(elapsed.Seconds(), "s/all-reconciled")
	b.ReportMetric(float64(writes)/float64(registries), "writes/registry")
	b.ReportMetric(float64(rss)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(heap)/(1<<20), "live-heap-MiB")
	b.ReportMetric(float64(anon)/1024, "end-RSS-anon-MiB")
	b.Logf("created %d Registries in %s; all reconciled after %s; manager wrote %d times (%.1f per Registry); manager peak RSS %.1f MiB, live heap %.1f MiB; at the end RSS %.1f MiB anonymous + %.1f MiB of the binary's pages",
		registries, created.Round(time.Millisecond), elapsed.Round(time.Millisecond), writes, float64(writes)/float64(registries), float64(rss)/1024, float64(heap)/(1<<20),
		float64(anon)/1024, float64(file)/1024)
}

// liveHeap forces a garbage collection in the manager (pprof's gc=1) and returns the bytes
// in use; with BENCH_HEAP_PROFILE set it also saves the profile there.
func liveHeap(b *testing.B, addr string) int64 {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var inuse int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// "# HeapInuse = 12345" in the runtime.MemStats section.
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapInuse = "); ok {
			inuse, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if p := os.Getenv("BENCH_HEAP_PROFILE"); p != "" {
		r, err := http.Get("http://" + addr + "/debug/pprof/heap")
		if err != nil {
			b.Fatal(err)
		}
		defer r.Body.Close()
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if _, err := io.Copy(f, r.Body); err != nil {
			b.Fatal(err)
		}
	}
	return inuse
}

func allReconciled(ctx context.Context, c client.Client) bool {
	var regs v1alpha1.RegistryList
	if err := c.List(ctx, &regs, client.InNamespace("bench")); err != nil || len(regs.Items) != registries {
		return false
	}
	for _, r := range regs.Items {
		if r.Status.ObservedGeneration != r.Generation {
			return false
		}
	}
	sel := client.MatchingLabels{resources.LabelManagedBy: resources.ManagedBy}
	lists := []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{}, &corev1.PersistentVolumeClaimList{}}
	for _, l := range lists {
		if err := c.List(ctx, l, client.InNamespace("bench"), sel); err != nil {
			return false
		}
	}
	return len(lists[0].(*appsv1.DeploymentList).Items) == registries &&
		len(lists[1].(*corev1.ServiceList).Items) == registries &&
		len(lists[2].(*corev1.ConfigMapList).Items) == registries &&
		len(lists[3].(*corev1.PersistentVolumeClaimList).Items) == registries
}

// managerWrites sums rest_client_requests_total for mutating verbs from the manager's
// Prometheus endpoint.
func managerWrites(b *testing.B, addr string) int64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			continue
		}
		for _, m := range []string{`method="POST"`, `method="PUT"`, `method="PATCH"`, `method="DELETE"`} {
			if strings.Contains(line, m) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				n += v
			}
		}
	}
	return int64(n)
}

func waitForMetrics(ctx context.Context, b *testing.B, addr string) {
	for ctx.Err() == nil {
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("manager metrics endpoint never came up")
}

// vmHWM is the peak resident set size of a process in KiB.
func vmHWM(pid int) int64 { return procStatus(pid, "VmHWM:") }

// procStatus reads a KiB field of /proc/PID/status (VmHWM:, RssAnon:, RssFile:).
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
