package workload_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
	"github.com/dockyard-dev/dockyard/internal/workload"
)

// TestRunScanner runs `dockyard registry scanner` as the scanner Deployment does, next to
// `dockyard registry serve`: a job posted with the operator's token is scanned by the real
// trivy and its report stored in the registry; the process stops cleanly on cancel.
func TestRunScanner(t *testing.T) {
	trivyBin := trivyfix.Binary(t)
	addr, maddr, saddr := freeAddr(t), freeAddr(t), freeAddr(t)
	regCfg := writeConfig(t, fmt.Sprintf("apiVersion: %s\nhttp: {addr: %q}\nmetrics: {addr: %q}\nstorage: {filesystem: {rootDirectory: %q}}\nlog: {level: warn}\n",
		registryconfig.APIVersion, addr, maddr, t.TempDir()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	regDone := make(chan error, 1)
	go func() {
		regDone <- workload.Run(ctx, []string{"serve", "--config", regCfg}, &bytes.Buffer{}, &syncBuffer{})
	}()

	img, err := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(addr+"/team-a/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for err = remote.Write(tag, img); err != nil && time.Now().Before(deadline); err = remote.Write(tag, img) {
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("push to the registry: %v", err)
	}
	d, _ := img.Digest()

	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	if err := trivyfix.WriteDB(cache, time.Now(), trivyfix.Fixtures); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("t0ken"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, keys := trivyfix.NewKey()
	keyFile := filepath.Join(dir, "signing.key")
	if err := os.WriteFile(keyFile, trivyfix.KeyPEM(key), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(registryconfig.Scanner{Registry: addr, Insecure: true, Listen: saddr, TokenFile: tokenFile, SigningKeyFile: keyFile,
		Trivy: registryconfig.ScannerTrivy{Binary: trivyBin, CacheDir: cache}, Log: registryconfig.Log{Level: "warn"}})
	cfgFile := filepath.Join(dir, "scanner.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- workload.Run(ctx, []string{"scanner", "--config", cfgFile}, &bytes.Buffer{}, &stderr) }()

	body := fmt.Sprintf(`{"jobs":[{"repository":"team-a/app","digest":%q,"cause":"push"}]}`, d)
	deadline = time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, "http://"+saddr+scan.ScanPath, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer t0ken")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST %s: %s", scan.ScanPath, resp.Status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scanner not listening within 15s: %v\n%s", err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var stored *scan.Stored
	deadline = time.Now().Add(90 * time.Second)
	for stored, err = scan.Latest(tag.Context().Digest(d.String()), keys); err != nil && time.Now().Before(deadline); stored, err = scan.Latest(tag.Context().Digest(d.String()), keys) {
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || len(stored.Report.Vulnerabilities) != 1 || stored.Report.Vulnerabilities[0].ID != "CVE-2099-0001" {
		t.Fatalf("report of the pushed image: %+v, %v\n%s", stored, err, stderr.String())
	}
	resp, err := http.Get("http://" + saddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(metrics.String(), `dockyard_scan_jobs_total{outcome="scanned"} 1`) {
		t.Errorf("metrics lack the scanned job:\n%s", metrics.String())
	}
	cancel()
	for _, c := range []chan error{done, regDone} {
		select {
		case err := <-c:
			if err != nil {
				t.Errorf("stopped with %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("did not stop within 15s of cancel")
		}
	}
}

func TestRunScannerRefusesABadConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "scanner.json")
	if err := os.WriteFile(cfg, []byte(`{"registry":"reg/with/path","concurrency":99,"unknown":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := workload.Run(context.Background(), []string{"scanner", "--config", cfg}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `unknown field "unknown"`) {
		t.Errorf("unknown field: %v", err)
	}
	if err := os.WriteFile(cfg, []byte(`{"registry":"reg/with/path","concurrency":99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err = workload.Run(context.Background(), []string{"scanner", "--config", cfg}, &bytes.Buffer{}, &bytes.Buffer{})
	for _, want := range []string{"registry: \"reg/with/path\"", "tokenFile: required", "signingKeyFile: required", "trivy.cacheDir: required", "concurrency: 99"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad config: %v; want it to say %q", err, want)
		}
	}
}
