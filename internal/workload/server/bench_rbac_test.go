package server_test

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture/kubeapi"
)

// BenchmarkRBACBlobHead measures authorized blob HEADs with Kubernetes RBAC on (a real
// kube-apiserver answering SubjectAccessReviews), 8 concurrent clients presenting a
// ServiceAccount token as a Bearer token: "warm" asks about one repository again and again
// (decisions cached), "cold" about a new repository on every request (a SubjectAccessReview
// each; the blob is then unknown there, 404, after authorization). It reports requests per
// second, the 99th-percentile latency and the API server requests per 1,000 registry
// requests (TokenReviews and SubjectAccessReviews, from the registry's own counter).
func BenchmarkRBACBlobHead(b *testing.B) {
	api := kubeapi.Start(b)
	api.ApplyClusterRoles("../../../config/rbac/repository_manager_role.yaml", "dockyard-")
	api.ClusterRoleBinding("registry-auth-delegator", "system:auth-delegator", kubeapi.User, "registry", "")
	api.Namespace("team-a")
	api.ServiceAccount("team-a", "builder")
	api.RoleBinding("team-a", "builder-push", managerRole, kubeapi.ServiceAccount, "builder", "team-a")
	kubeconfig := api.Kubeconfig("registry")
	token := api.Token("team-a", "builder", saAudience)
	for _, mode := range []string{"warm", "cold"} {
		b.Run(mode, func(b *testing.B) {
			_, auth := authFixture(b, testUsers)
			auth.Kubernetes = &registryconfig.Kubernetes{Kubeconfig: kubeconfig,
				ServiceAccounts: &registryconfig.ServiceAccounts{Audiences: []string{saAudience}},
				RBAC:            &registryconfig.RBAC{CacheTTL: registryconfig.Duration{Duration: 5 * time.Minute}}}
			withTokens(b, auth, newKey(b, time.Now().Add(-time.Minute)))
			reg := startRegistry(b, auth, nil)
			img, _ := random.Image(1024, 1)
			if err := remote.Write(mustTag(b, reg.host+"/team-a/bench:v1"), img, reg.opts("builder", token)...); err != nil {
				b.Fatal(err)
			}
			layers, _ := img.Layers()
			dg, _ := layers[0].Digest()
			reg.transport.MaxIdleConnsPerHost = 16
			client := reg.client()
			var seq atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			before := kubeRequests(b, reg)
			b.SetParallelism(4) // 4 x GOMAXPROCS(2) = 8 clients
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					repo := "team-a/bench"
					if mode == "cold" {
						repo = fmt.Sprintf("team-a/cold-%d", seq.Add(1))
					}
					req, _ := http.NewRequest(http.MethodHead, "https://"+reg.host+"/v2/"+repo+"/blobs/"+dg.String(), nil)
					req.Header.Set("Authorization", "Bearer "+token)
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
						b.Errorf("HEAD %s: %d", repo, resp.StatusCode)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(1000*(kubeRequests(b, reg)-before)/float64(len(lat)), "apireq/1k")
		})
	}
}

// kubeRequests reads the registry's count of requests to the API server.
func kubeRequests(b *testing.B, reg *testRegistry) float64 {
	b.Helper()
	resp, err := http.Get("http://" + reg.srv.MetricsAddr() + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "dockyard_registry_kubernetes_requests_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			total += v
		}
	}
	return total
}
