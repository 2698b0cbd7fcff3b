#!/usr/bin/env bash
# Builds dex, the OIDC provider the OIDC tests run on 127.0.0.1, into the tool cache
# ($DOCKYARD_CACHE/tools/dex-<version>) and prints its path. dex cannot be built with
# `go install pkg@version` (its go.mod has a replace directive), so a throwaway wrapper
# module requires it and builds its cmd/dex (about 9 minutes cold on 2 cores alone; a few
# after Dockyard's own build, see dex_gomod).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out="$DOCKYARD_CACHE/tools/dex-$DEX_VERSION"
if [[ ! -x "$out" ]]; then
  mkdir -p "$DOCKYARD_CACHE/tools"
  work=$(mktemp -d "$DOCKYARD_CACHE/tools/.dex-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # dex_gomod ALIGN: the wrapper's go.mod; with ALIGN=1 it also requires Dockyard's own module
  # versions (hack/lib.sh, dockyard_requires): built optimised with Dockyard's settings after
  # Dockyard (hack/build-tools.sh), about 60 % of dex's Go source is then already compiled.
  dex_gomod() {
    {
      printf 'module local/dexwrap\n\ngo 1.26.0\n\nrequire (\n'
      printf '\tgithub.com/dexidp/dex %s\n\tgithub.com/dexidp/dex/api/v2 %s\n' "$DEX_VERSION" "$DEX_API_VERSION"
      if [[ $1 == 1 ]]; then dockyard_requires | sed 's/^/\t/'; fi
      echo ")"
    } >"$work/go.mod"
    rm -f "$work/go.sum"
    (cd "$work" && GOFLAGS=-mod=mod go mod tidy >&2)
  }
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/dexidp/dex/cmd/dex"\n' >"$work/tools.go"
  echo "hack: building dex $DEX_VERSION (wrapper module)" >&2
  compile_dex() { (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags="-s -w" -o "$work/dex" github.com/dexidp/dex/cmd/dex >&2); }
  if ! { dex_gomod 1 && selects "$work" github.com/dexidp/dex "$DEX_VERSION" && compile_dex; }; then
    echo "hack: dex $ALIGN_FALLBACK" >&2
    dex_gomod 0
    compile_dex
  fi
  mv "$work/dex" "$out"
fi
echo "$out"
