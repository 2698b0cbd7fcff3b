#!/usr/bin/env bash
# Builds everything the local single-node cluster (hack/cluster/up.sh) runs, from the Go module
# proxy and Debian packages only, and caches it under $DOCKYARD_CACHE/cluster/<key>/ (hack/lib.sh) where <key> is derived
# from the pinned versions in hack/versions.env. Nothing prebuilt is downloaded and no image is
# ever pulled: images are docker-save tarballs built here from static binaries.
#
#   hack/cluster/bins.sh [PART]   # build what is missing; prints the directory on stdout
#
# Layout of $DOCKYARD_CACHE/cluster/<key>/:
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm
#   etcd containerd containerd-shim-runc-v2 ctr runc coredns pause
#   cert-manager/{controller,webhook,cainjector,crd-*.yaml}   cni/{bridge,host-local,loopback,portmap}
#   busybox (Debian's busybox-static, for a test image)
#   images/{pause,busybox,coredns,cert-manager-*}.tar
# etcd and kube-apiserver are envtest's ($DOCKYARD_CACHE/envtest, hack/build-envtest.sh).
# Cold, CI builds this in two parts beside other builders (hack/build-tools.sh prints each
# builder's wall and CPU time). Warm: about a second.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"
# shellcheck source=lib.sh
source "$ROOT/hack/cluster/lib.sh"

OUT=$(cluster_bin_dir)
WORK=${CLUSTER_WORK_DIR:-$DOCKYARD_CACHE/.work/cluster}
mkdir -p "$OUT" "$WORK"
K8S_MINOR=${KUBERNETES_VERSION#v1.}
STAGING_VERSION=v0.${K8S_MINOR}
PAUSE_VERSION=3.10
log() { echo "cluster-bins: $*" >&2; }

# step NAME FUNC: runs FUNC unless its outputs exist, printing how long it took.
step() {
  local name=$1 fn=$2 t0=$SECONDS
  if "${fn}_done"; then log "$name: cached"; return 0; fi
  log "$name: building"
  "$fn"
  "${fn}_done" || { log "$name: build produced no output"; exit 1; }
  log "$name: built in $((SECONDS - t0))s"
}

# wrapper_module DIR MODULE-PATH: a throwaway module in DIR whose go.mod requires the modules
# listed on stdin ("path version" lines) and whose tools.go imports the packages in $PKGS.
wrapper_module() {
  local dir=$1 name=$2
  rm -rf "$dir" && mkdir -p "$dir"
  {
    echo "module $name"
    echo
    echo "go 1.26.0"
    echo
    echo "require ("
    sed 's/^/\t/'
    echo ")"
  } > "$dir/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for p in $PKGS; do echo "	_ \"$p\""; done
    echo ")"
  } > "$dir/tools.go"
}

K8S_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm"
build_k8s_done() { for c in $K8S_CMDS; do [[ -x "$OUT/$c" ]] || return 1; done; }
# k8s_gomod WORK ALIGN PKGS...: the wrapper module for the Kubernetes commands; with ALIGN=1 it
# also requires Dockyard's own module versions, as hack/build-envtest.sh does for
# kube-apiserver (hack/lib.sh, dockyard_requires): the packages they share with Dockyard and
# with kube-apiserver compile once.
k8s_gomod() {
  local work=$1 align=$2 gomod
  shift 2
  gomod=$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  # k8s.io/kubernetes points its staging modules at ./staging/... (absent from the module zip):
  # pin each one to the published v0.N.P, exactly as hack/build-envtest.sh does.
  PKGS="$*" wrapper_module "$work" dockyard.local/cluster/kubernetes < <(
    echo "k8s.io/kubernetes ${KUBERNETES_VERSION}"
    if [[ $align == 1 ]]; then dockyard_requires; fi
  )
  {
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"${STAGING_VERSION}"'#p' "$gomod"
    echo ")"
  } >> "$work/go.mod"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
}

build_k8s() {
  local work="$WORK/kubernetes-${KUBERNETES_VERSION}" pkgs=()
  # kube-apiserver is envtest's (hack/build-envtest.sh: same version, same way): one build.
  for c in $K8S_CMDS; do [[ $c == kube-apiserver ]] || pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  local vpkg=k8s.io/component-base/version minor=${K8S_MINOR%%.*}
  local ldflags="-s -w -X ${vpkg}.gitVersion=${KUBERNETES_VERSION} -X ${vpkg}.gitMajor=1 -X ${vpkg}.gitMinor=${minor} -X ${vpkg}.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION} -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor}"
  rm -rf "$OUT/.k8s.tmp" && mkdir -p "$OUT/.k8s.tmp"
  # One invocation for all commands so they share compilation work.
  compile_k8s() { (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$OUT/.k8s.tmp/" "${pkgs[@]}"); }
  if ! { k8s_gomod "$work" 1 "${pkgs[@]}" && selects "$work" k8s.io/kubernetes "$KUBERNETES_VERSION" && compile_k8s; }; then
    log "kubernetes $ALIGN_FALLBACK"
    k8s_gomod "$work" 0 "${pkgs[@]}"
    compile_k8s
  fi
  mv "$OUT"/.k8s.tmp/* "$OUT/" && rmdir "$OUT/.k8s.tmp"
  cp "$("$ROOT/hack/build-envtest.sh")/kube-apiserver" "$OUT/kube-apiserver"
}

build_etcd_done() { [[ -x "$OUT/etcd" ]]; }
build_etcd() {
  # hack/build-envtest.sh builds the same etcd; reuse it (and its cache) rather than duplicate.
  local dir
  dir=$("$ROOT/hack/build-envtest.sh")
  cp "$dir/etcd" "$OUT/etcd"
}

build_containerd_done() { [[ -x "$OUT/containerd" && -x "$OUT/containerd-shim-runc-v2" && -x "$OUT/ctr" ]]; }
build_containerd() {
  local work="$WORK/containerd-${CLUSTER_CONTAINERD_VERSION}" m=github.com/containerd/containerd/v2
  PKGS="$m/cmd/containerd $m/cmd/containerd-shim-runc-v2 $m/cmd/ctr" \
    wrapper_module "$work" dockyard.local/cluster/containerd <<<"$m ${CLUSTER_CONTAINERD_VERSION}"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  local ldflags="-s -w -X $m/version.Version=${CLUSTER_CONTAINERD_VERSION} -X $m/version.Package=github.com/containerd/containerd/v2"
  (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -gcflags="$GO_TEST_TOOL_GCFLAGS" -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags="$ldflags" -o "$OUT/" "$m/cmd/containerd" "$m/cmd/containerd-shim-runc-v2" "$m/cmd/ctr")
}

build_runc_done() { [[ -x "$OUT/runc" ]]; }
build_runc() {
  # runc needs cgo (its nsenter is C); static, with seccomp from Debian's libseccomp-dev.
  [[ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ]] || apt_install libseccomp-dev
  local work="$WORK/runc-${CLUSTER_RUNC_VERSION}" m=github.com/opencontainers/runc
  PKGS="$m" wrapper_module "$work" dockyard.local/cluster/runc <<<"$m ${CLUSTER_RUNC_VERSION}"
  # runc's main package is its module root, which a tools.go cannot import (and `go mod tidy`
  # would then drop the pin): add the requirement with `go get` and build the package directly.
  rm "$work/tools.go"
  (cd "$work" && GOFLAGS=-mod=mod go get "$m@${CLUSTER_RUNC_VERSION}" >/dev/null 2>&1)
  (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=1 go build -trimpath -gcflags="$GO_TEST_TOOL_GCFLAGS" -buildmode=pie \
    -tags "seccomp urfave_cli_no_docs netgo osusergo" \
    -ldflags="-s -w -linkmode external -extldflags '-static-pie' -X main.version=${CLUSTER_RUNC_VERSION#v}" -o "$OUT/runc" "$m")
}

build_cni_done() { for p in bridge host-local loopback portmap; do [[ -x "$OUT/cni/$p" ]] || return 1; done; }
build_cni() {
  [[ -x /usr/lib/cni/bridge ]] || apt_install containernetworking-plugins
  mkdir -p "$OUT/cni"
  for p in bridge host-local loopback portmap; do cp /usr/lib/cni/$p "$OUT/cni/"; done
}

build_pause_done() { [[ -x "$OUT/pause" ]]; }
build_pause() {
  local src
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@${KUBERNETES_VERSION}/build/pause/linux/pause.c"
  [[ -f "$src" ]] || go mod download "k8s.io/kubernetes@${KUBERNETES_VERSION}"
  gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_VERSION}-dockyard" -o "$OUT/pause" "$src"
  strip "$OUT/pause"
}

build_busybox_done() { [[ -x "$OUT/busybox" ]]; }
build_busybox() {
  # A static busybox (Debian's busybox-static) for a small test image with a shell, wget, nslookup.
  [[ -x /bin/busybox ]] && file -L /bin/busybox | grep -q 'statically linked' || apt_install busybox-static
  cp /bin/busybox "$OUT/busybox"
}

build_coredns_done() { [[ -x "$OUT/coredns" && -f "$OUT/images/coredns.tar" ]]; }
build_coredns() {
  local work="$WORK/coredns-${CLUSTER_COREDNS_VERSION}" m=github.com/coredns/coredns
  # Only the plugins hack/cluster/addons.sh's Corefile uses (CLUSTER_COREDNS_PLUGINS),
  # registered as coredns.go's generated plugin list registers them all: 35 MB of Go source
  # instead of 57 (no cloud DNS SDKs, tracing, etcd). Built optimised with Dockyard's module
  # versions (hack/lib.sh, dockyard_requires), after Dockyard and Kubernetes
  # (hack/build-tools.sh): all but about 4 MB of it is then already compiled.
  local p
  coredns_gomod() {
    PKGS="$m/coremain" wrapper_module "$work" dockyard.local/cluster/coredns < <(
      echo "$m ${CLUSTER_COREDNS_VERSION}"
      if [[ $1 == 1 ]]; then dockyard_requires; fi
    )
    {
      echo "// Command coredns is github.com/coredns/coredns with the plugins the local cluster's Corefile uses."
      echo "package main"
      echo
      echo "import ("
      for p in $CLUSTER_COREDNS_PLUGINS; do echo "	_ \"$m/plugin/$p\""; done
      echo
      echo "	\"$m/coremain\""
      echo ")"
      echo
      echo "func main() { coremain.Run() }"
    } > "$work/main.go"
    rm "$work/tools.go"
    (cd "$work" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  }
  compile_coredns() { (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$OUT/coredns" .); }
  if ! { coredns_gomod 1 && selects "$work" "$m" "$CLUSTER_COREDNS_VERSION" && compile_coredns; }; then
    log "coredns $ALIGN_FALLBACK"
    coredns_gomod 0
    compile_coredns
  fi
  mkdir -p "$OUT/images"
  rm -f "$WORK/imagetar-coredns"
  image_tool coredns "$OUT/images/coredns.tar" "${CLUSTER_COREDNS_IMAGE}" "$OUT/coredns" /coredns
}

build_certmanager_done() {
  for c in controller webhook cainjector; do [[ -x "$OUT/cert-manager/$c" ]] || return 1; done
  [[ -f "$OUT/cert-manager/crd-certificates.yaml" ]]
}
build_certmanager() {
  local work="$WORK/cert-manager-${CLUSTER_CERT_MANAGER_VERSION}" m=github.com/cert-manager/cert-manager
  PKGS="$m/cmd/controller $m/cmd/webhook $m/cmd/cainjector" \
    wrapper_module "$work" dockyard.local/cluster/cert-manager <<<"$m ${CLUSTER_CERT_MANAGER_VERSION}"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  local ldflags="-s -w -X $m/pkg/util.AppVersion=${CLUSTER_CERT_MANAGER_VERSION} -X $m/pkg/util.AppGitCommit=dockyard"
  mkdir -p "$OUT/cert-manager"
  (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -gcflags="$GO_TEST_TOOL_GCFLAGS" -ldflags="$ldflags" -o "$OUT/cert-manager/" \
    "$m/cmd/controller" "$m/cmd/webhook" "$m/cmd/cainjector")
  cp "$(go env GOMODCACHE)/$m@${CLUSTER_CERT_MANAGER_VERSION}/deploy/crds/"crd-*.yaml "$OUT/cert-manager/"
}

# image_tool TOOL-NAME OUT TAG FILE ENTRYPOINT: a one-binary image tarball, made by the
# project's one image builder, hack/imagetar (also makes the dockyard image). TOOL-NAME keeps
# the two chains (see PART) from writing the same tool binary at once.
image_tool() {
  local tool="$WORK/imagetar-$1"
  [[ -x "$tool" ]] || (cd "$ROOT" && go build -o "$tool" ./hack/imagetar)
  "$tool" --nonroot-base=false --user "" --tag "$3" --out "$2" --file "$4:$5:0755" --entrypoint "$5" >/dev/null
}

build_images_done() { for i in pause busybox cert-manager-controller cert-manager-webhook cert-manager-cainjector; do [[ -f "$OUT/images/$i.tar" ]] || return 1; done; }
build_images() {
  rm -f "$WORK/imagetar-runtime"
  mkdir -p "$OUT/images"
  image_tool runtime "$OUT/images/pause.tar" "${CLUSTER_PAUSE_IMAGE}" "$OUT/pause" /pause
  image_tool runtime "$OUT/images/busybox.tar" "${CLUSTER_BUSYBOX_IMAGE}" "$OUT/busybox" /bin/busybox
  for c in controller webhook cainjector; do
    image_tool runtime "$OUT/images/cert-manager-$c.tar" "$(cert_manager_image "$c")" "$OUT/cert-manager/$c" "/app/cmd/$c/$c"
  done
}

# PART picks a subset, so hack/build-tools.sh can build the two independent chains side by
# side: "kubernetes" (etcd and kube-apiserver, shared with envtest, then the other
# Kubernetes commands and CoreDNS, which reuse their compiled packages and Dockyard's) and
# "runtime" (everything else). Without it, everything.
PART=${1:-all}
case "$PART" in all | kubernetes | runtime) ;; *) log "unknown part $PART (kubernetes, runtime or nothing)"; exit 2 ;; esac
t_all=$SECONDS
if [[ $PART != kubernetes ]]; then
  step "containerd ${CLUSTER_CONTAINERD_VERSION}" build_containerd
  step "runc ${CLUSTER_RUNC_VERSION}" build_runc
  step "CNI plugins (Debian)" build_cni
  step "pause" build_pause
  step "busybox (Debian busybox-static)" build_busybox
  step "cert-manager ${CLUSTER_CERT_MANAGER_VERSION}" build_certmanager
  step "images" build_images
fi
if [[ $PART != runtime ]]; then
  step "etcd ${ETCD_VERSION}" build_etcd
  step "kubernetes ${KUBERNETES_VERSION}" build_k8s
  step "coredns ${CLUSTER_COREDNS_VERSION}" build_coredns
fi
log "$PART binaries ready in $((SECONDS - t_all))s: $OUT"
echo "$OUT"
