#!/usr/bin/env bash
# Builds every tool CI uses into the tool cache (hack/lib.sh) in one phase, before any test
# runs: the local cluster's binaries (with envtest's kube-apiserver and etcd), Trivy and
# cosign, dex, versitygw, golangci-lint, controller-gen and kustomize. CI runs it first
# (`make tools`); `make test`, `make lint` and `make cluster-up` then find them built.
#
# Four builders run side by side (the local cluster's runtime, Trivy and cosign, the Go
# tools, and Dockyard's own packages followed by Kubernetes) and nothing else runs meanwhile. One cold `go build` keeps two cores busy only part of the time: it
# waits for module downloads and links on one core. Side by side, one builder's download or link overlaps another's compile. Each
# tool is still built once, by the same script as when it is built alone; what is cached
# already takes a second. Debian packages are installed first, one apt at a time.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=cluster/lib.sh
source "$ROOT/hack/cluster/lib.sh"
cd "$ROOT"
LOGS="$ROOT/bin/tool-logs"
mkdir -p "$LOGS"
t_all=$SECONDS

# apt first, alone: two apt-get processes would fight over dpkg's lock.
hack/test-deps.sh
hack/build-promtool.sh >/dev/null
[[ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ]] || apt_install libseccomp-dev
[[ -x /usr/lib/cni/bridge ]] || apt_install containernetworking-plugins
{ [[ -x /bin/busybox ]] && file -L /bin/busybox | grep -q 'statically linked'; } || apt_install busybox-static

# builder NAME CMD...: runs CMD with its output in $LOGS/NAME.log and reports its wall and
# CPU time (user+sys of everything it ran: what to cut when cold CI is too slow).
builder() {
  local name=$1 t0=$SECONDS rc=0 cpu TIMEFORMAT='%U %S'
  shift
  cpu=$( { time "$@" >"$LOGS/$name.log" 2>&1; } 2>&1 ) || rc=$?
  cpu=$(awk '{printf "%d", $1 + $2}' <<<"${cpu##*$'\n'}" 2>/dev/null || echo "?")
  echo "build-tools: $name finished in $((SECONDS - t0))s, ${cpu}s CPU (rc=$rc)" >&2
  return "$rc"
}
# (chained with &&: set -e does not apply inside a function called as `f || …`)
go_tools() {
  hack/build-versitygw.sh >/dev/null &&
    hack/go-tool.sh "bin/golangci-lint-$GOLANGCI_LINT_VERSION" github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION"
}

pids=() names=()
# The local cluster's runtime chain (containerd, runc, cert-manager); its Kubernetes chain
# (and CoreDNS) runs after Dockyard's own build, below.
builder cluster-runtime hack/cluster/bins.sh runtime >/dev/null & pids+=($!) names+=(cluster-runtime)
builder scantools hack/build-scantools.sh trivy & pids+=($!) names+=(scantools)
builder go-tools go_tools & pids+=($!) names+=(go-tools)
# Dockyard itself first, then what is mostly made of the same packages, in one builder.
# `go vet` compiles every Dockyard package and its dependencies into the build cache (the
# first thing `make test` would otherwise do alone), with the Makefile's settings
# (CGO_ENABLED=0, -trimpath) so `make test` and the image binary reuse it. etcd, Kubernetes,
# CoreDNS, controller-gen, kustomize and dex are then built with Dockyard's module versions
# and the same settings (hack/lib.sh, dockyard_requires), so what they share with Dockyard
# and with each other (client-go, apimachinery, grpc, x/net, ...: 47 MB of Kubernetes' 89 MB
# of Go source, all but 4 of CoreDNS's 35) comes out of the cache. One after the other, not
# side by side: two go commands compiling the same package at the same time both compile it.
dockyard_then_kubernetes() {
  # (vet's findings are `make test`'s to report: they must not stop the builds after it)
  { env CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" go vet ./... || echo "build-tools: go vet failed; make test reports it" >&2; } &&
    hack/cluster/bins.sh kubernetes >/dev/null &&
    GO_TOOL_ALIGN=1 hack/go-tool.sh "bin/controller-gen-$CONTROLLER_TOOLS_VERSION" sigs.k8s.io/controller-tools/cmd/controller-gen "$CONTROLLER_TOOLS_VERSION" &&
    GO_TOOL_ALIGN=1 hack/go-tool.sh "bin/kustomize-$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" &&
    hack/build-dex.sh >/dev/null
}
builder dockyard-kubernetes dockyard_then_kubernetes & pids+=($!) names+=(dockyard-kubernetes)
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    failed=1
    echo "build-tools: ${names[$i]} failed; the end of $LOGS/${names[$i]}.log:" >&2
    tail -n 40 "$LOGS/${names[$i]}.log" >&2
  fi
done
[[ $failed == 0 ]] && hack/cluster/bins.sh >/dev/null # all built: checks every part is there
# Tools that fell back to their own module versions (hack/lib.sh, ALIGN_FALLBACK): said
# here, where a slower cold run would be looked into first.
grep -hF "$ALIGN_FALLBACK" "$LOGS"/*.log 2>/dev/null | sed 's/^/build-tools: /' >&2 || true
echo "build-tools: all tools in $((SECONDS - t_all))s" >&2
exit "$failed"
