#!/usr/bin/env bash
# Builds cosign (the tests sign images with it, offline: local keys, no transparency log)
# into the tool cache and links it as bin/cosign-<version>. Prints the cached binary's
# path. About ten minutes on two cores the first time; free afterwards.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
out=$(go_tool cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION")
mkdir -p "$ROOT/bin"
ln -sfn "$out" "$ROOT/bin/cosign-$COSIGN_VERSION"
echo "$out"
