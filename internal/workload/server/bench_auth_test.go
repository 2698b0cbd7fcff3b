package server_test

import (
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// BenchmarkAuthBlobHead measures authenticated blob HEADs (the request a pull sends most)
// with 8 concurrent clients, per way of authenticating: htpasswd Basic (bcrypt remembered
// after the first request), Basic through LDAP with the login cache and without it (a
// directory bind per request), and a registry token. It reports requests per second and
// the 99th-percentile latency.
func BenchmarkAuthBlobHead(b *testing.B) {
	b.Run("htpasswd-basic", func(b *testing.B) {
		_, auth := authFixture(b, testUsers)
		withTokens(b, auth, newKey(b, time.Now().Add(-time.Minute)))
		benchHead(b, startRegistry(b, auth, nil), "alice", "alice-pw", false)
	})
	b.Run("ldap-basic-cached", func(b *testing.B) {
		_, auth := ldapAuth(b, time.Minute)
		benchHead(b, startRegistry(b, auth, nil), "alice", "alice-ldap", false)
	})
	b.Run("ldap-basic-uncached", func(b *testing.B) {
		_, auth := ldapAuth(b, 0)
		benchHead(b, startRegistry(b, auth, nil), "alice", "alice-ldap", false)
	})
	b.Run("bearer-token", func(b *testing.B) {
		_, auth := authFixture(b, testUsers)
		withTokens(b, auth, newKey(b, time.Now().Add(-time.Minute)))
		benchHead(b, startRegistry(b, auth, nil), "alice", "alice-pw", true)
	})
}

func benchHead(b *testing.B, reg *testRegistry, user, pass string, bearer bool) {
	img, _ := random.Image(1024, 1)
	if err := remote.Write(mustTag(b, reg.host+"/team-a/bench:v1"), img, reg.opts(user, pass)...); err != nil {
		b.Fatal(err)
	}
	layers, _ := img.Layers()
	dg, _ := layers[0].Digest()
	authz := basic(user, pass)
	if bearer {
		tok, code := reg.token(b, user, pass, "repository:team-a/bench:pull")
		if code != http.StatusOK {
			b.Fatalf("token: %d", code)
		}
		authz = "Bearer " + tok
	}
	reg.transport.MaxIdleConnsPerHost = 16
	url := "https://" + reg.host + "/v2/team-a/bench/blobs/" + dg.String()
	client := reg.client()
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(4) // 4 x GOMAXPROCS(2) = 8 clients
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		req, _ := http.NewRequest(http.MethodHead, url, nil)
		req.Header.Set("Authorization", authz)
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("HEAD: %d", resp.StatusCode)
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
}
