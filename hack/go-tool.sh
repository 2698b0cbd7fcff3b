#!/usr/bin/env bash
# Builds a Go tool into the shared cache (hack/lib.sh) and links it from LINK:
#   hack/go-tool.sh LINK PACKAGE VERSION
# (GO_TOOL_ALIGN=1: built with Dockyard's module versions; see go_tool in hack/lib.sh.)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
link=$1
bin=$(go_tool "$(basename "${link%-*}")" "$2" "$3")
[[ -x "$bin" ]] || { echo "hack: $2@$3 was not built" >&2; exit 1; }
mkdir -p "$(dirname "$link")"
ln -sfn "$bin" "$link"
