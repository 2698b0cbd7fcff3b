package server_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

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
	body, done := startSlowUpload(t, reg, 1<<20, 40*time.Millisecond) // ~1.3s
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

// startSlowUpload begins a blob upload whose body trickles for about `d`; it returns the
// reader (to wait for the start) and a channel with the final status code or error.
func startSlowUpload(t *testing.T, reg *testRegistry, size int, pause time.Duration) (*slowReader, chan uploadResult) {
	t.Helper()
	data := make([]byte, size)
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
	body := newSlowReader(data, 32<<10, pause)
	req, err := http.NewRequest(http.MethodPut, loc.String(), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	done := make(chan uploadResult, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			done <- uploadResult{err: err}
			return
		}
		resp.Body.Close()
		done <- uploadResult{code: resp.StatusCode}
	}()
	return body, done
}

type uploadResult struct {
	code int
	err  error
}

func TestDrainTimeoutBoundsShutdown(t *testing.T) {
	reg := startRegistry(t, nil, func(c *registryconfig.Config) {
		c.HTTP.DrainTimeout.Duration = 500 * time.Millisecond
	})
	body, done := startSlowUpload(t, reg, 1<<20, 200*time.Millisecond) // ~6s
	<-body.started
	reg.cancel()
	start := time.Now()
	select {
	case err := <-reg.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
		reg.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s with a 500ms drain timeout")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %v with a 500ms drain timeout", took)
	}
	select {
	case r := <-done:
		if r.err == nil && r.code == http.StatusCreated {
			t.Error("upload longer than the drain timeout completed; expected it to be cut off")
		}
	case <-time.After(10 * time.Second):
		t.Error("client of the cut-off upload did not see an error")
	}
}

func TestShutdownDelayKeepsServingWithFailingHealth(t *testing.T) {
	reg := startRegistry(t, nil, func(c *registryconfig.Config) {
		c.HTTP.ShutdownDelay.Duration = 1500 * time.Millisecond
	})
	client := &http.Client{Transport: reg.transport, Timeout: 5 * time.Second}
	status := func(path string) int {
		resp, err := client.Get("https://" + reg.host + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	reg.cancel()
	time.Sleep(300 * time.Millisecond)
	if got := status(registryconfig.HealthPath); got != http.StatusServiceUnavailable {
		t.Errorf("health during the shutdown delay = %d, want 503", got)
	}
	reg.transport.CloseIdleConnections() // a new connection must still be accepted
	if got := status("/v2/"); got != http.StatusOK {
		t.Errorf("API during the shutdown delay = %d, want 200", got)
	}
	select {
	case err := <-reg.done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
		reg.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the delay")
	}
	reg.transport.CloseIdleConnections()
	if got := status("/v2/"); got != 0 {
		t.Errorf("API after shutdown answered %d", got)
	}
}
