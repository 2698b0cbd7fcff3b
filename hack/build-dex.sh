#!/usr/bin/env bash
# Builds dex, the OIDC provider the OIDC tests run on 127.0.0.1, into the tool cache
# ($DOCKYARD_CACHE/tools/dex-<version>) and prints its path. dex cannot be built with
# `go install pkg@version` (its go.mod has a replace directive), so a throwaway wrapper
# module requires it and builds its cmd/dex. About 9 minutes cold on 2 cores.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out="$DOCKYARD_CACHE/tools/dex-$DEX_VERSION"
if [[ ! -x "$out" ]]; then
  mkdir -p "$DOCKYARD_CACHE/tools"
  work=$(mktemp -d "$DOCKYARD_CACHE/tools/.dex-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cat >"$work/go.mod" <<MOD
module local/dexwrap

go 1.26.0

require (
	github.com/dexidp/dex $DEX_VERSION
	github.com/dexidp/dex/api/v2 $DEX_API_VERSION
)
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/dexidp/dex/cmd/dex"\n' >"$work/tools.go"
  echo "hack: building dex $DEX_VERSION (wrapper module)" >&2
  (
    cd "$work"
    GOFLAGS=-mod=mod go mod tidy >&2
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -gcflags="$GO_TEST_TOOL_GCFLAGS" -ldflags="-s -w" -o "$work/dex" github.com/dexidp/dex/cmd/dex >&2
  )
  mv "$work/dex" "$out"
fi
echo "$out"
