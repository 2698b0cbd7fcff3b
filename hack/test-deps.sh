#!/usr/bin/env bash
# Installs what the tests and checks use from Debian's packages, when missing: skopeo (a
# real registry client, speaking through containers/image, the library podman and buildah
# use too) and shellcheck (make shellcheck).
set -euo pipefail
missing=()
command -v skopeo >/dev/null || missing+=(skopeo)
command -v shellcheck >/dev/null || missing+=(shellcheck)
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "test-deps: apt-get install ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then echo "test-deps: run as root or install: ${missing[*]}" >&2; exit 1; fi
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
