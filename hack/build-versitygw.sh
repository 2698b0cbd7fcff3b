#!/usr/bin/env bash
# Builds the versitygw S3 gateway (used by the registry workload's S3 tests) into the tool
# cache and links it as bin/versitygw-<version>. Prints the cached binary's path.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
out=$(GO_TOOL_GCFLAGS=$GO_TEST_TOOL_GCFLAGS go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION")
mkdir -p "$ROOT/bin"
ln -sfn "$out" "$ROOT/bin/versitygw-$VERSITYGW_VERSION"
echo "$out"
