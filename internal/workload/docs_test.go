package workload_test

import (
	"os"
	"strings"
	"testing"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// The standalone example in docs/registry-config.md must stay a valid config.
func TestDocsExampleParses(t *testing.T) {
	doc, err := os.ReadFile("../../docs/registry-config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "with this `config.yaml`:\n\n```yaml\n")
	if !ok {
		t.Fatal("example config block not found")
	}
	example, _, _ := strings.Cut(rest, "```")
	cfg, err := registryconfig.Parse([]byte(example))
	if err != nil {
		t.Fatalf("docs example: %v", err)
	}
	if cfg.Auth == nil || cfg.HTTP.TLS == nil || cfg.Storage.Filesystem == nil || len(cfg.Auth.Access) != 2 {
		t.Errorf("docs example lost a section: %+v", cfg)
	}
}
