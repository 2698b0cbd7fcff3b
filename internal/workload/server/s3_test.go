package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/gc"
	"github.com/dockyard-dev/dockyard/internal/workload/server"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

// versitygw returns the S3 gateway binary built by hack/build-versitygw.sh.
func versitygw(t *testing.T) string {
	p := os.Getenv("DOCKYARD_VERSITYGW")
	if p == "" {
		p, _ = filepath.Abs("../../../bin/versitygw-v1.8.0")
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("DOCKYARD_REQUIRE_CLIENTS") != "" {
			t.Fatalf("S3 gateway not built (hack/build-versitygw.sh): %v", err)
		}
		t.Skipf("S3 gateway not built (run hack/build-versitygw.sh or set DOCKYARD_VERSITYGW): %v", err)
	}
	return p
}

// s3Gateway is a versitygw process serving a temp dir on a fixed 127.0.0.1 port, which a
// test may stop and start again (an object-storage outage).
type s3Gateway struct {
	t              *testing.T
	bin, dir, addr string
	access, secret string
	cancel         context.CancelFunc
	cmd            *exec.Cmd
}

// startS3 runs versitygw over a temp dir on 127.0.0.1 with one bucket and returns its URL.
func startS3(t *testing.T, bucket, access, secret string) string {
	return newS3Gateway(t, bucket, access, secret).url()
}

func newS3Gateway(t *testing.T, bucket, access, secret string) *s3Gateway {
	g := &s3Gateway{t: t, bin: versitygw(t), dir: t.TempDir(), access: access, secret: secret}
	if err := os.Mkdir(filepath.Join(g.dir, bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	ln.Close()
	g.start()
	t.Cleanup(g.stop)
	return g
}

func (g *s3Gateway) url() string { return "http://" + g.addr }

func (g *s3Gateway) start() {
	t := g.t
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.cmd = exec.CommandContext(ctx, g.bin, "--port", g.addr, "--access", g.access, "--secret", g.secret, "posix", g.dir)
	// Its access log goes nowhere; failures show up as registry errors.
	if err := g.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", g.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("S3 gateway not listening within 15s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (g *s3Gateway) stop() {
	if g.cmd == nil {
		return
	}
	g.cancel()
	_ = g.cmd.Wait()
	g.cmd = nil
}

func TestS3StoragePushPullAndGC(t *testing.T) {
	const access, secret = "dockyard-test", "dockyard-test-secret"
	endpoint := startS3(t, "registry", access, secret)
	env := map[string]string{registryconfig.EnvS3AccessKeyID: access, registryconfig.EnvS3SecretAccessKey: secret}
	getenv := func(k string) string { return env[k] }
	const grace = 2 * time.Second
	st := registryconfig.Storage{S3: &registryconfig.S3Storage{
		Bucket: "registry", Region: "us-east-1", Endpoint: endpoint, ForcePathStyle: true,
		RootDirectory:  "/dockyard",
		AccessKeyIDEnv: registryconfig.EnvS3AccessKeyID, SecretAccessKeyEnv: registryconfig.EnvS3SecretAccessKey,
	}}
	cfg := &registryconfig.Config{
		APIVersion: registryconfig.APIVersion,
		HTTP:       registryconfig.HTTP{Addr: "127.0.0.1:0"},
		Storage:    st,
		GC:         registryconfig.GC{DeleteUntagged: true, GracePeriod: registryconfig.Duration{Duration: grace}},
	}
	cfg.Defaults()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, cfg, server.Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	keep := mustTag(t, srv.Addr()+"/s3/app:keep")
	drop := mustTag(t, srv.Addr()+"/s3/app:drop")
	keepImg, _ := random.Image(256<<10, 2)
	dropImg, _ := random.Image(256<<10, 2)
	if err := remote.Write(keep, keepImg); err != nil {
		t.Fatalf("push to S3-backed registry: %v", err)
	}
	if err := remote.Write(drop, dropImg); err != nil {
		t.Fatalf("push: %v", err)
	}
	dd, _ := dropImg.Digest()
	if err := remote.Delete(drop.Context().Digest(dd.String())); err != nil {
		t.Fatalf("delete: %v", err)
	}

	driver, err := storage.NewDriver(ctx, st, getenv)
	if err != nil {
		t.Fatal(err)
	}
	collect := func() gc.Result {
		res, err := gc.Collect(ctx, gc.Options{Driver: driver, DeleteUntagged: true, GracePeriod: grace})
		if err != nil {
			t.Fatalf("gc on S3: %v", err)
		}
		return res
	}
	if res := collect(); res.BlobsDeleted != 0 {
		t.Fatalf("gc deleted %d blobs inside the grace period", res.BlobsDeleted)
	}
	time.Sleep(grace + time.Second)
	res := collect()
	// The dropped image: manifest, config and 2 layers.
	if res.BlobsDeleted != 4 || res.BytesFreed < 512<<10 {
		t.Errorf("gc on S3 = %+v, want 4 blobs (> 512 KiB) of the deleted image", res)
	}
	img, err := remote.Image(keep)
	if err != nil {
		t.Fatalf("pull kept image: %v", err)
	}
	if err := verifyImage(img); err != nil {
		t.Errorf("kept image broken after gc: %v", err)
	}
	// The collected image can be pushed again.
	if err := remote.Write(drop, dropImg); err != nil {
		t.Fatalf("re-push collected image: %v", err)
	}
	again, err := remote.Image(drop)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(again); err != nil {
		t.Errorf("re-pushed image broken: %v", err)
	}
	t.Logf("gc on S3: %+v", res)
}

// An object-storage outage makes the registry unready (so Services stop sending it
// requests) but never fails liveness (a restart cures nothing and, in CrashLoopBackOff,
// stretches the outage); when storage is back, readiness follows within seconds.
func TestStorageOutageAffectsReadinessNotLiveness(t *testing.T) {
	const access, secret = "dockyard-test", "dockyard-test-secret"
	gw := newS3Gateway(t, "registry", access, secret)
	env := map[string]string{registryconfig.EnvS3AccessKeyID: access, registryconfig.EnvS3SecretAccessKey: secret}
	old := server.StorageCheckInterval
	server.StorageCheckInterval = 300 * time.Millisecond
	t.Cleanup(func() { server.StorageCheckInterval = old })
	cfg := &registryconfig.Config{
		APIVersion: registryconfig.APIVersion,
		HTTP:       registryconfig.HTTP{Addr: "127.0.0.1:0"},
		Metrics:    registryconfig.Metrics{Addr: "127.0.0.1:0"},
		Storage: registryconfig.Storage{S3: &registryconfig.S3Storage{
			Bucket: "registry", Region: "us-east-1", Endpoint: gw.url(), ForcePathStyle: true,
			AccessKeyIDEnv: registryconfig.EnvS3AccessKeyID, SecretAccessKeyEnv: registryconfig.EnvS3SecretAccessKey,
		}},
	}
	srv := serveWith(t, cfg, env)
	client := &http.Client{Timeout: 3 * time.Second}
	status := func(addr, path string) int {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("ready", 10*time.Second, func() bool { return status(srv.Addr(), registryconfig.HealthPath) == http.StatusOK })

	gw.stop()
	waitFor("unready during the outage", 10*time.Second, func() bool {
		return status(srv.Addr(), registryconfig.HealthPath) == http.StatusServiceUnavailable
	})
	for range 5 {
		if code := status(srv.MetricsAddr(), registryconfig.LivenessPath); code != http.StatusOK {
			t.Fatalf("liveness during a storage outage = %d, want 200", code)
		}
		time.Sleep(100 * time.Millisecond)
	}

	gw.start()
	waitFor("ready again once storage is back", 5*time.Second, func() bool {
		return status(srv.Addr(), registryconfig.HealthPath) == http.StatusOK
	})
}

// With storage.redirectDownloads, a blob download is a 307 to a pre-signed URL of the
// object store, which serves the bytes itself; clients that follow redirects (all of them)
// pull as before.
func TestRedirectDownloadsToObjectStorage(t *testing.T) {
	const access, secret = "dockyard-test", "dockyard-test-secret"
	gw := newS3Gateway(t, "registry", access, secret)
	env := map[string]string{registryconfig.EnvS3AccessKeyID: access, registryconfig.EnvS3SecretAccessKey: secret}
	cfg := &registryconfig.Config{
		APIVersion: registryconfig.APIVersion,
		HTTP:       registryconfig.HTTP{Addr: "127.0.0.1:0"},
		Storage: registryconfig.Storage{RedirectDownloads: true, S3: &registryconfig.S3Storage{
			Bucket: "registry", Region: "us-east-1", Endpoint: gw.url(), ForcePathStyle: true,
			AccessKeyIDEnv: registryconfig.EnvS3AccessKeyID, SecretAccessKeyEnv: registryconfig.EnvS3SecretAccessKey,
		}},
	}
	srv := serveWith(t, cfg, env)
	tag := mustTag(t, srv.Addr()+"/s3/redirect:v1")
	img, _ := random.Image(128<<10, 1)
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://" + srv.Addr() + "/v2/s3/redirect/blobs/" + ld.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, gw.url()+"/registry/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("blob GET = %d Location %q, want 307 to a pre-signed URL of %s", resp.StatusCode, loc, gw.url())
	}
	// The pre-signed URL serves the blob without registry credentials.
	resp, err = http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || digestOfBytes(body) != ld.String() {
		t.Fatalf("pre-signed URL: %d, %d bytes with digest %s, want %s", resp.StatusCode, len(body), digestOfBytes(body), ld)
	}
	got, err := remote.Image(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(got); err != nil {
		t.Fatalf("pull through redirects: %v", err)
	}
}

func digestOfBytes(b []byte) string { return digest.FromBytes(b).String() }

// serveWith runs a registry with cfg (defaults applied, validated) and credentials from env
// until the test ends.
func serveWith(t *testing.T, cfg *registryconfig.Config, env map[string]string) *server.Server {
	t.Helper()
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}
