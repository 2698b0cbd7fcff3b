#!/usr/bin/env bash
# Builds the image-security tools the tests run for real: Trivy (the vulnerability scanner)
# and cosign (signs test images offline: local keys, no transparency log), into the tool
# cache, and prints the path of the one asked for:
#
#   hack/build-scantools.sh trivy|cosign
#
# Both come from the Go module proxy through ONE wrapper module, so the hundreds of modules
# they share (sigstore, go-containerregistry, grpc, the cloud SDKs, client-go) are resolved
# to one version each and compiled once, not twice. Trivy needs GOEXPERIMENT=jsonv2, so
# both are built with it.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
tool=${1:?usage: hack/build-scantools.sh trivy|cosign}
case "$tool" in trivy | cosign) ;; *) echo "build-scantools: unknown tool $tool (trivy or cosign)" >&2; exit 2 ;; esac

# The key names the build flags too: these binaries are unoptimised (-N -l below), and a
# benchmark must know which trivy it timed.
OUT="$DOCKYARD_CACHE/tools/scantools-trivy-${TRIVY_VERSION}-cosign-${COSIGN_VERSION}-noopt"
if [[ ! -x "$OUT/trivy" || ! -x "$OUT/cosign" ]]; then
  work="$DOCKYARD_CACHE/.work/scantools-trivy-${TRIVY_VERSION}-cosign-${COSIGN_VERSION}"
  rm -rf "$work" && mkdir -p "$work"
  cat > "$work/go.mod" <<GOMOD
module dockyard.local/tools/scantools

go 1.26.3

require (
	github.com/aquasecurity/trivy ${TRIVY_VERSION}
	github.com/sigstore/cosign/v2 ${COSIGN_VERSION}
)
GOMOD
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/aquasecurity/trivy/cmd/trivy"
	_ "github.com/sigstore/cosign/v2/cmd/cosign"
)
GO
  echo "build-scantools: resolving trivy ${TRIVY_VERSION} and cosign ${COSIGN_VERSION} together" >&2
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >&2)
  echo "build-scantools: building trivy and cosign (cold: about 12 min on 2 cores; once per version)" >&2
  t0=$SECONDS
  rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
  # -gcflags=all=-N -l: compiled without optimisation or inlining, about a quarter less
  # compile time; these are test fixtures, where speed does not matter and behaviour is
  # the same (see hack/lib.sh, GO_TEST_TOOL_GCFLAGS).
  (cd "$work" && GOEXPERIMENT=jsonv2 GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -gcflags="$GO_TEST_TOOL_GCFLAGS" \
    -ldflags="-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver=${TRIVY_VERSION#v} -X sigs.k8s.io/release-utils/version.gitVersion=${COSIGN_VERSION}" \
    -o "$OUT.tmp/" github.com/aquasecurity/trivy/cmd/trivy github.com/sigstore/cosign/v2/cmd/cosign)
  rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
  echo "build-scantools: built in $((SECONDS - t0))s" >&2
fi
mkdir -p "$ROOT/bin"
ln -sfn "$OUT/$tool" "$ROOT/bin/$tool"
echo "$OUT/$tool"
