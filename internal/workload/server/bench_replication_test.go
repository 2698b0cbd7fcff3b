package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/replication"
)

// benchImages builds n images of three layers of size bytes: the first half share their
// two base layers, the second half have three layers of their own.
func benchImages(b *testing.B, n int, size int64) []ggcrv1.Image {
	b.Helper()
	base1, _ := random.Layer(size, types.DockerLayer)
	base2, _ := random.Layer(size, types.DockerLayer)
	out := make([]ggcrv1.Image, 0, n)
	for i := range n {
		var layers []ggcrv1.Layer
		if i < n/2 {
			own, _ := random.Layer(size, types.DockerLayer)
			layers = []ggcrv1.Layer{base1, base2, own}
		} else {
			for range 3 {
				l, _ := random.Layer(size, types.DockerLayer)
				layers = append(layers, l)
			}
		}
		img, err := mutate.AppendLayers(empty.Image, layers...)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, img)
	}
	return out
}

// Push-mode replication of 200 images (3 layers of 256 KiB, half sharing two base
// layers) between two registries on 127.0.0.1 with TLS and access control: throughput,
// and the blob bytes actually sent against the naive total.
func BenchmarkReplicatePush200(b *testing.B) {
	const n, size = 200, 256 << 10
	p := newReplicationPair(b)
	for i, img := range benchImages(b, n, size) {
		p.push(b, fmt.Sprintf("team-a/app-%02d:v%d", i%20, i), img)
	}
	naive := float64(n * 3 * size)
	b.ResetTimer()
	var sent int64
	var elapsed time.Duration
	for range b.N {
		b.StopTimer()
		_, dstAuth := authFixture(b, testUsers)
		key := newKey(b, time.Now().Add(-time.Minute))
		withTokens(b, dstAuth, key)
		p.dst = startRegistry(b, dstAuth, nil)
		p.dstKeys = registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}}
		dst := p.dstEndpoint(b, nil)
		b.StartTimer()
		start := time.Now()
		res, err := replication.Sync(context.Background(), p.srcEndpoint(), dst, mirrorRule(), replication.Options{})
		elapsed += time.Since(start)
		if err != nil || res.Failed != 0 || res.Copied != n {
			b.Fatalf("sync: %v %+v", err, res)
		}
		sent += res.Bytes
	}
	perRun := float64(sent) / float64(b.N)
	b.ReportMetric(perRun/(1<<20)/(elapsed.Seconds()/float64(b.N)), "MiB/s")
	b.ReportMetric(perRun/(1<<20), "sent-MiB")
	b.ReportMetric(naive/(1<<20), "naive-MiB")
	b.ReportMetric(perRun/naive, "sent/naive")
}

// onPush latency: a small image pushed to a registry that sends its events to a receiver
// which copies the tags pushed (the operator's path, minus the TokenReview (cached after
// the first) and the workqueue hop), until the tag answers at the destination. Reports
// p50 and p99 over the pushes, all to one repository (whose tag count grows: an onPush run
// must not list it).
func BenchmarkReplicateOnPushLatency(b *testing.B) {
	_, srcAuth := authFixture(b, testUsers)
	_, dstAuth := authFixture(b, testUsers)
	key := newKey(b, time.Now().Add(-time.Minute))
	withTokens(b, dstAuth, key)
	p := &replicationPair{dst: startRegistry(b, dstAuth, nil), dstKeys: registryconfig.TokenKeys{Keys: []registryconfig.TokenKey{key}}}
	work := make(chan map[string][]string, 1024)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch registryconfig.EventBatch
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tags := map[string][]string{}
		for _, e := range batch.Events {
			if !slices.Contains(tags[e.Repository], e.Tag) {
				tags[e.Repository] = append(tags[e.Repository], e.Tag)
			}
		}
		work <- tags
		w.WriteHeader(http.StatusAccepted)
	}))
	defer recv.Close()
	tok := filepath.Join(b.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("t"), 0o600); err != nil {
		b.Fatal(err)
	}
	p.src = startRegistry(b, srcAuth, func(c *registryconfig.Config) {
		c.Events = &registryconfig.Events{URL: recv.URL, TokenFile: tok, Registry: "ns/src"}
	})
	dst := p.dstEndpoint(b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case tags := <-work:
				rule := mirrorRule()
				rule.OnlyTags = tags
				for repo := range tags {
					rule.Only = append(rule.Only, repo)
				}
				_, _ = replication.Sync(ctx, p.srcEndpoint(), dst, rule, replication.Options{})
			}
		}
	}()
	dstOpts := []remote.Option{remote.WithTransport(p.dst.transport), remote.WithAuth(&authn.Basic{Username: "admin", Password: "admin-pw"})}
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		img, _ := random.Image(4<<10, 1)
		ref := fmt.Sprintf("team-a/live:v%d", i)
		p.push(b, ref, img)
		start := time.Now()
		for {
			if _, err := remote.Head(mustTag(b, p.dst.host+"/mirror/"+ref), dstOpts...); err == nil {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("push %d not replicated within 30s", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
