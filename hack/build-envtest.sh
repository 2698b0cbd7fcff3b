#!/usr/bin/env bash
# Builds the control-plane binaries envtest needs (kube-apiserver, etcd) from the Go module
# proxy and caches them under $DOCKYARD_CACHE/envtest/<versions>/. Nothing is downloaded as a prebuilt
# binary: these machines reach only package registries. The cache lives outside the clone
# (hack/lib.sh), keyed by version.
#
# kube-apiserver comes from k8s.io/kubernetes, whose go.mod points its staging modules at
# ./staging/... paths that do not exist in the module zip; a generated wrapper module pins each
# of them to the matching published v0.x.y instead. etcd comes from a wrapper whose main calls
# go.etcd.io/etcd/server/v3/etcdmain.Main (its own cmd module carries replace directives that
# `go install` refuses). Both wrappers also require Dockyard's own module versions, so what
# they share with Dockyard compiles once (hack/lib.sh, dockyard_requires).
#
# Prints the directory holding the binaries (suitable for KUBEBUILDER_ASSETS) on stdout.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
K8S_MINOR=${KUBERNETES_VERSION#v1.}
STAGING_VERSION=v0.${K8S_MINOR}
OUT="$DOCKYARD_CACHE/envtest/k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}"
mkdir -p "$OUT"
log() { echo "build-envtest: $*" >&2; }

# apiserver_gomod WORK ALIGN: the wrapper's go.mod; with ALIGN=1 it also requires Dockyard's
# own module versions (hack/lib.sh, dockyard_requires: the packages both use compile once).
apiserver_gomod() {
  local work=$1 align=$2 gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module dockyard.local/envtest/kube-apiserver"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$gomod"
    echo
    echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
    if [[ $align == 1 ]]; then echo "require ("; dockyard_requires | sed 's/^/\t/'; echo ")"; fi
    echo
    echo "replace ("
    # every `k8s.io/x => ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.N.P`
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"${STAGING_VERSION}"'#p' "$gomod"
    echo ")"
  } > "$work/go.mod"
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
}

build_apiserver() {
  [[ -x "$OUT/kube-apiserver" ]] && return 0
  local work="$DOCKYARD_CACHE/.work/kube-apiserver-${KUBERNETES_VERSION}"
  rm -rf "$work" && mkdir -p "$work"
  log "building kube-apiserver ${KUBERNETES_VERSION} (staging modules pinned to ${STAGING_VERSION}; cold: ~8 min on 2 cores, less after Dockyard's own build)"
  local minor=${K8S_MINOR%%.*}
  local vpkg=k8s.io/component-base/version
  local ldflags="-s -w -X ${vpkg}.gitVersion=${KUBERNETES_VERSION} -X ${vpkg}.gitMajor=1 -X ${vpkg}.gitMinor=${minor} -X ${vpkg}.gitTreeState=clean"
  compile_apiserver() { (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver); }
  if ! { apiserver_gomod "$work" 1 && selects "$work" k8s.io/kubernetes "$KUBERNETES_VERSION" && compile_apiserver; }; then
    # Dockyard's versions are only a speed-up: should they ever break Kubernetes' build, use its own.
    log "kube-apiserver $ALIGN_FALLBACK"
    apiserver_gomod "$work" 0
    compile_apiserver
  fi
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
}

etcd_gomod() {
  local work=$1 align=$2
  cat > "$work/go.mod" <<GOMOD
module dockyard.local/envtest/etcd

go 1.26.0

require (
	go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/api/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/pkg/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/pkg/v3 ${ETCD_VERSION}
)
GOMOD
  if [[ $align == 1 ]]; then { echo "require ("; dockyard_requires | sed 's/^/\t/'; echo ")"; } >> "$work/go.mod"; fi
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  local m
  for m in server/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do selects "$work" "go.etcd.io/etcd/$m" "$ETCD_VERSION" || return 1; done
}

build_etcd() {
  [[ -x "$OUT/etcd" ]] && return 0
  local work="$DOCKYARD_CACHE/.work/etcd-${ETCD_VERSION}"
  rm -rf "$work" && mkdir -p "$work"
  cat > "$work/main.go" <<'GO'
// Command etcd is go.etcd.io/etcd/server/v3's etcdmain, built here for envtest.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "building etcd ${ETCD_VERSION}"
  compile_etcd() { (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$OUT/etcd.tmp" .); }
  # With Dockyard's module versions (see apiserver_gomod), else etcd's own.
  if ! { etcd_gomod "$work" 1 && compile_etcd; }; then
    log "etcd $ALIGN_FALLBACK"
    etcd_gomod "$work" 0
    compile_etcd
  fi
  mv "$OUT/etcd.tmp" "$OUT/etcd"
}

build_etcd
build_apiserver
"$OUT/etcd" --version >/dev/null
log "$("$OUT/kube-apiserver" --version), etcd $("$OUT/etcd" --version | head -1)"
echo "$OUT"
