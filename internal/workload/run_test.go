package workload_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"bogus"}, {"serve", "--nope"}, {"gc", "--nope"}} {
		var stderr bytes.Buffer
		err := workload.Run(context.Background(), args, &bytes.Buffer{}, &stderr)
		if !errors.Is(err, workload.ErrUsage) {
			t.Errorf("Run(%q) = %v, want a usage error", args, err)
		}
		if stderr.Len() == 0 {
			t.Errorf("Run(%q) printed no usage", args)
		}
	}
}

func TestRunGCSummary(t *testing.T) {
	root := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf(`apiVersion: %s
http: {addr: ":5000"}
storage: {filesystem: {rootDirectory: %q}}
gc: {deleteUntagged: true, gracePeriod: 1m}
`, registryconfig.APIVersion, root))
	summaryFile := filepath.Join(t.TempDir(), "termination-log")
	var stdout, stderr bytes.Buffer
	if err := workload.Run(context.Background(), []string{"gc", "--config", cfg, "--summary-file", summaryFile}, &stdout, &stderr); err != nil {
		t.Fatalf("gc: %v\n%s", err, stderr.String())
	}
	file, err := os.ReadFile(summaryFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, stdout.Bytes()) {
		t.Errorf("summary file %q differs from stdout %q", file, stdout.String())
	}
	var s registryconfig.GCSummary
	if err := json.Unmarshal(file, &s); err != nil {
		t.Fatalf("summary is not JSON: %v", err)
	}
	if s.Result != registryconfig.GCResultSucceeded || s.Message != "" {
		t.Errorf("summary = %+v, want Succeeded", s)
	}
}

func TestRunGCFailure(t *testing.T) {
	for name, body := range map[string]string{
		"invalid config": "apiVersion: nope\n",
		"inmemory":       fmt.Sprintf("apiVersion: %s\nhttp: {addr: \":5000\"}\nstorage: {inmemory: {}}\n", registryconfig.APIVersion),
		"missing creds": fmt.Sprintf(`apiVersion: %s
http: {addr: ":5000"}
storage: {s3: {bucket: b, region: r, accessKeyIDEnv: DOCKYARD_TEST_UNSET_A, secretAccessKeyEnv: DOCKYARD_TEST_UNSET_B}}
`, registryconfig.APIVersion),
	} {
		t.Run(name, func(t *testing.T) {
			summaryFile := filepath.Join(t.TempDir(), "termination-log")
			var stdout bytes.Buffer
			err := workload.Run(context.Background(), []string{"gc", "--config", writeConfig(t, body), "--summary-file", summaryFile}, &stdout, &bytes.Buffer{})
			if err == nil {
				t.Fatal("gc succeeded, want failure")
			}
			file, _ := os.ReadFile(summaryFile)
			var s registryconfig.GCSummary
			if err := json.Unmarshal(file, &s); err != nil {
				t.Fatalf("summary %q: %v", file, err)
			}
			if s.Result != registryconfig.GCResultFailed || s.Message == "" || len(file) >= 4096 {
				t.Errorf("summary = %+v (%d bytes), want Failed with a message, < 4 KiB", s, len(file))
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestRunServeJSONLogsAndSignal(t *testing.T) {
	addr, maddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`apiVersion: %s
http: {addr: %q, drainTimeout: 5s}
metrics: {addr: %q}
storage: {filesystem: {rootDirectory: %q}}
log: {level: info, format: json}
`, registryconfig.APIVersion, addr, maddr, t.TempDir()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- workload.Run(ctx, []string{"serve", "--config", cfg}, &bytes.Buffer{}, &stderr) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + maddr + registryconfig.HealthPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not healthy within 15s: %v\n%s", err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc.Scan() {
		lines++
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
		}
	}
	if lines < 3 {
		t.Errorf("only %d log lines: %s", lines, stderr.String())
	}
}

// A retention run reports its summary like gc does: to stdout and the termination-message
// file; an unknown policy or an unreadable config fails with a summary that says why.
func TestRunRetentionSummary(t *testing.T) {
	root := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf(`apiVersion: %s
http: {addr: ":5000"}
storage: {filesystem: {rootDirectory: %q}}
`, registryconfig.APIVersion, root))
	run := `{"policy":"p","policies":[{"name":"p","repositories":["**"],"rules":[{"name":"r","keepLast":1}],"maxDeletionPercent":50,"minAge":"1h"}]}`
	summaryFile := filepath.Join(t.TempDir(), "termination-log")
	var stdout, stderr bytes.Buffer
	if err := workload.Run(context.Background(), []string{"retention", "--config", cfg, "--summary-file", summaryFile, "--run", run}, &stdout, &stderr); err != nil {
		t.Fatalf("retention: %v\n%s", err, stderr.String())
	}
	file, _ := os.ReadFile(summaryFile)
	if !bytes.Equal(file, stdout.Bytes()) {
		t.Errorf("summary file %q differs from stdout %q", file, stdout.String())
	}
	var s registryconfig.RetentionSummary
	if err := json.Unmarshal(file, &s); err != nil {
		t.Fatalf("summary is not JSON: %v", err)
	}
	if s.Result != registryconfig.RetentionPlanned || s.Artifacts != 0 || s.PlanHash == "" {
		t.Errorf("summary = %+v, want Planned over an empty registry", s)
	}

	for name, args := range map[string][]string{
		"unknown policy": {"retention", "--config", cfg, "--summary-file", summaryFile, "--run", `{"policy":"q","policies":[]}`},
		"bad config":     {"retention", "--config", writeConfig(t, "apiVersion: nope\n"), "--summary-file", summaryFile, "--run", run},
	} {
		err := workload.Run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		file, _ := os.ReadFile(summaryFile)
		if err == nil || json.Unmarshal(file, &s) != nil || s.Result != registryconfig.RetentionFailed || s.Message == "" {
			t.Errorf("%s: err %v, summary %s; want a failure with a Failed summary", name, err, file)
		}
	}
}

// However long the plan's sample, the summary fits a termination message.
func TestRetentionSummaryFits(t *testing.T) {
	s := registryconfig.RetentionSummary{Result: registryconfig.RetentionSucceeded, Message: strings.Repeat("m", 5000)}
	for i := 0; i < 10; i++ {
		s.Sample = append(s.Sample, registryconfig.RetentionStep{Action: "Delete", Repository: strings.Repeat("r/", 100),
			Digest: "sha256:" + strings.Repeat("a", 64), Tags: []string{strings.Repeat("t", 128), "b", "c", "d", "e", "f"}, Reason: strings.Repeat("x", 400)})
	}
	for i := 0; i < 10; i++ {
		s.Errors = append(s.Errors, strings.Repeat("e", 1000))
	}
	b := registryconfig.FitRetentionSummary(s)
	var back registryconfig.RetentionSummary
	if len(b) > registryconfig.RetentionSummaryLimit || json.Unmarshal(b, &back) != nil || len(back.Sample) == 0 {
		t.Fatalf("%d bytes, %d sample entries", len(b), len(back.Sample))
	}
	if back.Sample[0].Tags[4] != "(+2 more)" || s.Sample[0].Tags[1] != "b" {
		t.Errorf("tags = %q", back.Sample[0].Tags)
	}
}
