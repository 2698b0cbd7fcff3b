package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// counterSum reads the registry's /metrics and sums each family over the series whose labels
// include match.
func counterSum(t *testing.T, tr *testRegistry, family string, match map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + tr.srv.MetricsAddr() + registryconfig.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var sum float64
	f, ok := fams[family]
	if !ok {
		return 0
	}
	for _, m := range f.GetMetric() {
		labels := model.LabelSet{}
		for _, l := range m.GetLabel() {
			labels[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
		}
		matched := true
		for k, v := range match {
			if string(labels[model.LabelName(k)]) != v {
				matched = false
			}
		}
		if matched {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestBytesMetricsCountWhatWasPushedAndPulled pushes an image with a real client, pulls a
// layer back, and checks that the byte counters account for exactly the bodies that went
// over the wire: every blob and the manifest pushed, the layer pulled.
func TestBytesMetricsCountWhatWasPushedAndPulled(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	img, err := random.Image(300<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.host + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, reg.opts("", "")...); err != nil {
		t.Fatal(err)
	}
	var pushed int64
	layers, _ := img.Layers()
	for _, l := range layers {
		n, _ := l.Size()
		pushed += n
	}
	cfg, _ := img.RawConfigFile()
	manifest, _ := img.RawManifest()
	pushed += int64(len(cfg) + len(manifest))
	if got := counterSum(t, reg, "dockyard_registry_http_request_bytes_total", nil); got != float64(pushed) {
		t.Errorf("request bytes = %.0f, want %d (two layers, the config and the manifest)", got, pushed)
	}
	if got := counterSum(t, reg, "dockyard_registry_http_request_bytes_total", map[string]string{"method": "PUT", "route": "manifest"}); got != float64(len(manifest)) {
		t.Errorf("manifest PUT bytes = %.0f, want %d", got, len(manifest))
	}

	before := counterSum(t, reg, "dockyard_registry_http_response_bytes_total", map[string]string{"method": "GET", "route": "blob"})
	d, _ := layers[0].Digest()
	client := &http.Client{Transport: reg.transport, Timeout: 10 * time.Second}
	resp, err := client.Get("https://" + reg.host + "/v2/team/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	size, _ := layers[0].Size()
	if resp.StatusCode != http.StatusOK || n != size {
		t.Fatalf("GET blob = %d, %d bytes, want 200 and %d", resp.StatusCode, n, size)
	}
	if got := counterSum(t, reg, "dockyard_registry_http_response_bytes_total", map[string]string{"method": "GET", "route": "blob"}) - before; got != float64(size) {
		t.Errorf("blob GET response bytes grew by %.0f, want %d", got, size)
	}
}
