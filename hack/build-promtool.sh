#!/usr/bin/env bash
# Puts promtool (Prometheus's rule checker and rule unit-test runner) into the tool cache
# and prints its path. It comes from Debian's prometheus package, unpacked with dpkg -x:
# nothing is installed and no service starts. Building promtool from the Go module proxy
# instead downloads 1.9 GB of modules and takes over 20 minutes on two cores.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
out="$DOCKYARD_CACHE/tools/promtool-$PROMETHEUS_DEB_VERSION"
if [[ ! -x "$out" ]]; then
  mkdir -p "$DOCKYARD_CACHE/tools"
  tmp=$(mktemp -d "$DOCKYARD_CACHE/tools/.promtool-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "hack: downloading Debian's prometheus $PROMETHEUS_DEB_VERSION for promtool" >&2
  if ! (cd "$tmp" && apt-get download -qq "prometheus=$PROMETHEUS_DEB_VERSION" >/dev/null 2>&1); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "hack: apt-get download prometheus=$PROMETHEUS_DEB_VERSION failed; run 'apt-get update' as root and retry" >&2
      exit 1
    fi
    apt-get update -qq >/dev/null
    (cd "$tmp" && apt-get download -qq "prometheus=$PROMETHEUS_DEB_VERSION" >/dev/null)
  fi
  dpkg -x "$tmp"/prometheus_*.deb "$tmp/root"
  mv "$tmp/root/usr/bin/promtool" "$out"
fi
mkdir -p "$ROOT/bin"
ln -sfn "$out" "$ROOT/bin/promtool"
echo "$out"
