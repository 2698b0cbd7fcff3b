// Package promtool runs Prometheus's real promtool (hack/build-promtool.sh puts it in the
// tool cache; `make test` passes it as DOCKYARD_PROMTOOL) to check alerting rules and run
// their unit tests. Without the binary, tests are skipped, unless DOCKYARD_REQUIRE_CLIENTS
// is set, where they fail.
package promtool

import (
	"os"
	"os/exec"

	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

// TB is what the fixture needs of a test.
type TB = testfixture.TB

// Binary returns promtool's path, or skips (fails under DOCKYARD_REQUIRE_CLIENTS) without it.
func Binary(t TB) string {
	t.Helper()
	if p := os.Getenv("DOCKYARD_PROMTOOL"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testfixture.Missing(t, "promtool is not there (DOCKYARD_PROMTOOL=$(hack/build-promtool.sh); make test does it)")
	return ""
}

// Run runs promtool with args in dir and returns its combined output and error.
func Run(t TB, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
