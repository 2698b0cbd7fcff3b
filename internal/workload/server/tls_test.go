package server_test

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// servedSerial does a fresh TLS handshake and returns the serial of the served certificate.
func servedSerial(t *testing.T, reg *testRegistry) int64 {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", reg.host,
		&tls.Config{RootCAs: reg.ca.pool})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSRotationDuringPush(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	if got := servedSerial(t, reg); got != 2 {
		t.Fatalf("initial serial = %d, want 2", got)
	}
	// A push that takes ~2s because its layer trickles out.
	layer := newSlowLayer(2<<20, 32<<10, 30*time.Millisecond)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, reg.host+"/rotate/app:v1")
	pushed := make(chan error, 1)
	go func() { pushed <- remote.Write(tag, img, reg.opts("", "")...) }()
	if !layer.started(10 * time.Second) {
		t.Fatal("push did not start uploading within 10s")
	}

	rotated := time.Now()
	reg.ca.issue(t, 3, reg.certFile, reg.keyFile)
	deadline := time.Now().Add(5 * time.Second)
	for servedSerial(t, reg) != 3 {
		if time.Now().After(deadline) {
			t.Fatal("new certificate not served within 5s of rotation")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("new certificate served %v after rotation", time.Since(rotated).Round(time.Millisecond))
	select {
	case err := <-pushed:
		if err != nil {
			t.Fatalf("push in flight across the rotation failed: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("push did not finish within 60s")
	}
	// New connections with the new certificate pull the image intact.
	reg.transport.CloseIdleConnections()
	got, err := remote.Image(tag, reg.opts("", "")...)
	if err != nil {
		t.Fatalf("pull after rotation: %v", err)
	}
	if err := verifyImage(got); err != nil {
		t.Fatalf("image pushed across the rotation is broken: %v", err)
	}

	// A broken pair (key that does not match) is ignored; the last good cert stays.
	other := newCA(t)
	other.issue(t, 4, reg.certFile+".x", reg.keyFile)
	time.Sleep(600 * time.Millisecond)
	if got := servedSerial(t, reg); got != 3 {
		t.Errorf("after writing a mismatched key, serial = %d, want 3 (previous cert kept)", got)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	client := &http.Client{Transport: reg.transport, Timeout: 10 * time.Second}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, u := range []string{
		"https://" + reg.host + registryconfig.HealthPath,
		"http://" + reg.srv.MetricsAddr() + registryconfig.HealthPath,
	} {
		if code, body := get(u); code != 200 || !strings.Contains(body, `"ok"`) {
			t.Errorf("GET %s = %d %s, want 200 ok", u, code, body)
		}
	}
	if code, _ := get("https://" + reg.host + "/v2/"); code != 200 {
		t.Errorf("GET /v2/ = %d, want 200", code)
	}
	code, body := get("http://" + reg.srv.MetricsAddr() + registryconfig.MetricsPath)
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		`dockyard_registry_http_requests_total{code="200",method="GET",route="base"} 1`,
		"dockyard_registry_tls_certificate_expiry_timestamp_seconds",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestDrainFinishesInFlightUpload(t *testing.T) {
	reg := startRegistry(t, nil, func(c *registryconfig.Config) {
		c.HTTP.DrainTimeout.Duration = 20 * time.Second
	})
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	dgst := digest.FromBytes(data)
	client := &http.Client{Transport: reg.transport}
	start, err := client.Post(fmt.Sprintf("https://%s/v2/drain/app/blobs/uploads/", reg.host), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	start.Body.Close()
	loc, err := start.Location()
	if err != nil || start.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %d %v", start.StatusCode, err)
	}
	q := loc.Query()
	q.Set("digest", dgst.String())
	loc.RawQuery = q.Encode()
	body := newSlowReader(data, 32<<10, 40*time.Millisecond) // ~1.3s
	req, err := http.NewRequest(http.MethodPut, loc.String(), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{code: resp.StatusCode}
	}()
	<-body.started
	time.Sleep(200 * time.Millisecond)
	reg.cancel()
	// New connections are refused while the upload drains.
	time.Sleep(100 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", reg.host, time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts connections during drain")
	}
	select {
	case r := <-done:
		if r.err != nil || r.code != http.StatusCreated {
			t.Fatalf("in-flight upload during drain: code %d err %v, want 201", r.code, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("upload did not finish within 20s")
	}
	select {
	case err := <-reg.done:
		if err != nil {
			t.Fatalf("Run returned %v after drain", err)
		}
		reg.done <- nil // for the cleanup check
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after drain")
	}
}
