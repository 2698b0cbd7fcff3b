#!/usr/bin/env bash
# Installs the real clients the tests drive (Debian packages), when missing: skopeo speaks the
# registry protocol through containers/image, the library podman and buildah use too.
set -euo pipefail
missing=()
command -v skopeo >/dev/null || missing+=(skopeo)
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "test-deps: apt-get install ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then echo "test-deps: run as root or install: ${missing[*]}" >&2; exit 1; fi
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
