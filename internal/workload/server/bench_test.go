package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// benchTarget is the registry a benchmark talks to: by default an in-process `serve` with
// TLS and auth; with DOCKYARD_BENCH_REGISTRY=host:port (plus DOCKYARD_BENCH_USER,
// DOCKYARD_BENCH_PASSWORD, DOCKYARD_BENCH_CA) any registry, e.g. the upstream binary (see
// hack/bench-registry.sh).
type benchTarget struct {
	host      string
	user, pw  string
	transport *http.Transport
}

func newBenchTarget(b *testing.B) *benchTarget {
	b.Helper()
	if host := os.Getenv("DOCKYARD_BENCH_REGISTRY"); host != "" {
		pem, err := os.ReadFile(os.Getenv("DOCKYARD_BENCH_CA"))
		if err != nil {
			b.Fatalf("DOCKYARD_BENCH_CA: %v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		return &benchTarget{host: host, user: os.Getenv("DOCKYARD_BENCH_USER"), pw: os.Getenv("DOCKYARD_BENCH_PASSWORD"),
			transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
				MaxIdleConnsPerHost: 16}}
	}
	_, auth := authFixture(b, testUsers)
	auth.Access = nil // every user is a Manager
	reg := startRegistry(b, auth, nil)
	return &benchTarget{host: reg.host, user: "alice", pw: testUsers["alice"], transport: reg.transport}
}

func (bt *benchTarget) opts() []remote.Option {
	return []remote.Option{remote.WithTransport(bt.transport),
		remote.WithAuth(&authn.Basic{Username: bt.user, Password: bt.pw})}
}

const benchLayer = 1 << 20

// BenchmarkPushImage pushes fresh images of 2 x 1 MiB layers (HEAD, upload, manifest PUT).
func BenchmarkPushImage(b *testing.B) {
	bt := newBenchTarget(b)
	b.SetBytes(2 * benchLayer)
	i := 0
	for b.Loop() {
		b.StopTimer()
		img, err := random.Image(benchLayer, 2)
		if err != nil {
			b.Fatal(err)
		}
		tag, _ := name.NewTag(fmt.Sprintf("%s/bench/push:%d", bt.host, i))
		i++
		b.StartTimer()
		if err := remote.Write(tag, img, bt.opts()...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPullImage pulls (manifest, config, layers, digests verified) one 2 x 1 MiB image.
func BenchmarkPullImage(b *testing.B) {
	bt := newBenchTarget(b)
	img, _ := random.Image(benchLayer, 2)
	tag, _ := name.NewTag(bt.host + "/bench/pull:v1")
	if err := remote.Write(tag, img, bt.opts()...); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(2 * benchLayer)
	for b.Loop() {
		got, err := remote.Image(tag, bt.opts()...)
		if err != nil {
			b.Fatal(err)
		}
		if err := verifyImage(got); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlobHead is the existence check every push does per layer (for Dockyard it
// includes authorization and the garbage-collection marker write).
func BenchmarkBlobHead(b *testing.B) {
	bt := newBenchTarget(b)
	img, _ := random.Image(1024, 1)
	tag, _ := name.NewTag(bt.host + "/bench/head:v1")
	if err := remote.Write(tag, img, bt.opts()...); err != nil {
		b.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	url := fmt.Sprintf("https://%s/v2/bench/head/blobs/%s", bt.host, d)
	client := &http.Client{Transport: bt.transport}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodHead, url, nil)
			req.SetBasicAuth(bt.user, bt.pw)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("HEAD = %d", resp.StatusCode)
				return
			}
		}
	})
}
