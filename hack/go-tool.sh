#!/usr/bin/env bash
# Builds a Go tool into the shared cache (hack/lib.sh) and links it from LINK:
#   hack/go-tool.sh LINK PACKAGE VERSION
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
link=$1
bin=$(go_tool "$(basename "${link%-*}")" "$2" "$3")
mkdir -p "$(dirname "$link")"
ln -sfn "$bin" "$link"
