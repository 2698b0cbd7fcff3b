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

# GO_TEST_TOOL_GCFLAGS compiles the servers and clients the tests run that share little with
# Dockyard (versitygw, Trivy, cosign, and the local cluster's containerd, runc and
# cert-manager) without optimisation or inlining: about a quarter less compile time on a cold
# machine (Trivy and cosign measured), the same behaviour, and their speed does not
# matter for tests. What is mostly made of Dockyard's own dependencies (kube-apiserver, etcd
# and the other Kubernetes commands, CoreDNS, dex, controller-gen, kustomize) is built
# optimised with Dockyard's module versions instead, so it reuses Dockyard's compiled packages
# (dockyard_requires, below); golangci-lint is built optimised because CI waits on its speed.
GO_TEST_TOOL_GCFLAGS="all=-N -l"

# go_tool NAME PACKAGE VERSION: prints the path of PACKAGE@VERSION's binary, building it with
# `go install` into the cache on first use (with GO_TOOL_GCFLAGS as -gcflags when set). With
# GO_TOOL_ALIGN=1 it is built instead in a wrapper module that also requires Dockyard's own
# module versions, optimised, with Dockyard's settings (dockyard_requires, below): for tools
# made mostly of what Dockyard compiles anyway (controller-gen, kustomize: apimachinery,
# kyaml, ...), built after Dockyard in hack/build-tools.sh.
go_tool() {
  local name=$1 pkg=$2 version=$3 gcflags=${GO_TOOL_GCFLAGS:-} out tmp
  out="$DOCKYARD_CACHE/tools/$name-$version"
  if [[ ! -x "$out" ]]; then
    mkdir -p "$DOCKYARD_CACHE/tools"
    tmp=$(mktemp -d "$DOCKYARD_CACHE/tools/.build-XXXXXX")
    echo "hack: building $pkg@$version" >&2
    # (`|| return 1` throughout: go_tool runs inside $(...), where errexit does not apply.)
    if [[ ${GO_TOOL_ALIGN:-} == 1 ]] && go_tool_aligned "$tmp" "$pkg" "$version"; then
      :
    else
      rm -rf "${tmp:?}/mod" "${tmp:?}/$name"
      GOBIN="$tmp" GOFLAGS=-mod=mod go install -gcflags="$gcflags" "$pkg@$version" >&2 || return 1
    fi
    mv "$tmp"/* "$out" || return 1
    rm -rf "$tmp"
  fi
  echo "$out"
}

# go_tool_aligned DIR PACKAGE VERSION: builds PACKAGE@VERSION into DIR (named as `go install`
# names it) from a wrapper module in DIR/mod that requires Dockyard's module versions.
go_tool_aligned() {
  local dir=$1 pkg=$2 version=$3 ldflags=""
  # A wrapper module's build info names the wrapper, not the tool, as its main module: tools
  # that print their version from it are told it. controller-gen writes it into every CRD
  # (controller-gen.kubebuilder.io/version); without this it would write "(devel)".
  case $pkg in
    sigs.k8s.io/controller-tools/*) ldflags="-X sigs.k8s.io/controller-tools/pkg/version.version=$version" ;;
  esac
  mkdir -p "$dir/mod"
  { printf 'module dockyard.local/tools/wrapper\n\ngo 1.26.0\n\nrequire (\n'; dockyard_requires | sed 's/^/\t/'; echo ")"; } > "$dir/mod/go.mod"
  (
    cd "$dir/mod" && GOFLAGS=-mod=mod go get "$pkg@$version" >&2 &&
      selects . "$(GOFLAGS=-mod=mod go list -f '{{.Module.Path}}' "$pkg")" "$version" &&
      GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$dir/$(basename "${pkg%/v[0-9]*}")" "$pkg" >&2
  ) || { echo "hack: $pkg $ALIGN_FALLBACK" >&2; return 1; }
  rm -rf "$dir/mod"
}

# ALIGN_FALLBACK ends what a builder logs when a tool did not build with Dockyard's module
# versions and is built with its own (correct, but its shared packages compile again);
# make tools (hack/build-tools.sh) repeats those lines in CI's log.
ALIGN_FALLBACK="did not build with Dockyard's module versions; building it with its own"

# dockyard_requires: Dockyard's own requirements (go.mod), one "path version" per line. The
# wrapper modules that build etcd, Kubernetes, CoreDNS, dex, controller-gen and kustomize
# require them too, so every module they share
# with Dockyard resolves to the same version as in Dockyard's build: with the same settings
# (CGO_ENABLED=0, -trimpath, optimised) their shared packages (client-go, apimachinery, grpc,
# x/net, ...) then come out of the build cache instead of being compiled a second time. A
# version only ever goes up (MVS), so this never pins anything below what Kubernetes needs.
dockyard_requires() {
  awk '/^require \(/ { r = 1; next } r && /^\)/ { r = 0; next } r && NF >= 2 { print $1, $2; next }
    /^require [^(]/ { print $2, $3 }' "$ROOT/go.mod"
}

# selects DIR MODULE VERSION: the module in DIR resolves MODULE to exactly VERSION. A wrapper
# that requires Dockyard's versions must not move the tool it builds (nor, for etcd, its own
# family of modules) to another version than the one pinned: builders check, and build with
# the tool's own versions if it does.
selects() {
  local got
  got=$(cd "$1" && GOFLAGS=-mod=mod go list -m -f '{{.Version}}' "$2" 2>/dev/null) || return 1
  [[ $got == "$3" ]] || { echo "hack: $2 resolves to $got with Dockyard's module versions, not $3" >&2; return 1; }
}

# free_port: a TCP port nothing listens on right now on 127.0.0.1 (asked of the kernel).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
