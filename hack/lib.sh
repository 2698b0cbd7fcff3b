# shellcheck shell=bash
# Shared by every hack/ script. Sourced, not run. Sets ROOT (the repository) if unset, reads
# the pinned versions and names the tool cache.
# shellcheck disable=SC2034 # the settings are used by the scripts that source this file

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=versions.env
source "$ROOT/hack/versions.env"

# Tools and test binaries built from the Go module proxy live outside the clone, keyed by
# version, so a fresh clone (CI) on a machine that built them once starts warm.
DOCKYARD_CACHE=${DOCKYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dockyard}

# GO_TEST_TOOL_GCFLAGS compiles the servers and clients the tests run (dex, versitygw, Trivy,
# cosign, and the local cluster's containerd, runc, CoreDNS and cert-manager) without
# optimisation or inlining: about a quarter less compile time on a cold machine
# (controller-gen measured 98 s -> 74 s), the same behaviour, and their speed does not
# matter for tests. Tools whose speed CI waits on (golangci-lint, kube-apiserver and etcd,
# which envtest and the cluster share, and the kubelet and controllers built with them so
# they reuse the same compiled packages) are built optimised.
GO_TEST_TOOL_GCFLAGS="all=-N -l"

# go_tool NAME PACKAGE VERSION: prints the path of PACKAGE@VERSION's binary, building it with
# `go install` into the cache on first use (with GO_TOOL_GCFLAGS as -gcflags when set).
go_tool() {
  local name=$1 pkg=$2 version=$3 gcflags=${GO_TOOL_GCFLAGS:-} out tmp
  out="$DOCKYARD_CACHE/tools/$name-$version"
  if [[ ! -x "$out" ]]; then
    mkdir -p "$DOCKYARD_CACHE/tools"
    tmp=$(mktemp -d "$DOCKYARD_CACHE/tools/.build-XXXXXX")
    echo "hack: building $pkg@$version" >&2
    GOBIN="$tmp" GOFLAGS=-mod=mod go install -gcflags="$gcflags" "$pkg@$version" >&2
    mv "$tmp"/* "$out"
    rm -rf "$tmp"
  fi
  echo "$out"
}

# free_port: a TCP port nothing listens on right now on 127.0.0.1 (asked of the kernel).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
