package workload_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dockyard-dev/dockyard/internal/workload"
)

// TestCopyBinary: the scanner pod's init container copies the running program into the
// shared volume, whole and executable, replacing a copy a restarted init container left.
func TestCopyBinary(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "dockyard")
	if err := os.WriteFile(dest, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := workload.Run(context.Background(), []string{"copy-binary", dest}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the copy differs from the program (%d bytes, want %d)", len(got), len(want))
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(dest))
	if len(entries) != 1 {
		t.Errorf("left %d files behind, want only the copy", len(entries))
	}
	err = workload.Run(context.Background(), []string{"copy-binary"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, workload.ErrUsage) {
		t.Errorf("copy-binary without a destination: %v, want a usage error", err)
	}
}
