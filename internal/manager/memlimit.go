package manager

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of the container's memory limit the Go heap may use
// before the garbage collector works harder; the rest is for stacks, the binary and slack.
const memoryLimitShare = 0.9

// SetMemoryLimit gives Go's garbage collector a soft memory limit of 90% of the
// container's memory limit (cgroup v2 memory.max or v1 memory.limit_in_bytes), so a burst
// of reconciles collects garbage instead of running into the OOM killer. GOMEMLIMIT, when
// set, wins. It returns the limit set, or 0 when none was.
func SetMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if limit := memoryLimit(string(b)); limit > 0 {
			debug.SetMemoryLimit(limit)
			return limit
		}
	}
	return 0
}

// memoryLimit reads a cgroup memory limit file: a byte count, or "max" (none). Values of
// a pebibyte and more are cgroup v1's "no limit".
func memoryLimit(content string) int64 {
	v, err := strconv.ParseInt(strings.TrimSpace(content), 10, 64)
	if err != nil || v <= 0 || v >= 1<<50 {
		return 0
	}
	return int64(float64(v) * memoryLimitShare)
}
