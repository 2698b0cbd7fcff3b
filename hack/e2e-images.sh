#!/usr/bin/env bash
# Builds the images the e2e suite runs besides dockyard's own, as tarballs without Docker:
# dex (the OIDC provider a Registry trusts, bin/images/dex.tar, tag dex:e2e), crane
# (the client a Job pushes with, bin/images/crane.tar, tag crane:e2e) and Trivy (the image
# a Registry's scanner runs in, bin/images/trivy.tar, tag trivy:e2e, trivy on PATH), all
# static binaries built from the Go module proxy into the tool cache. `make test-e2e` imports them
# into the local cluster's containerd.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

dex=$("$ROOT/hack/build-dex.sh")
trivy=$("$ROOT/hack/build-scantools.sh" trivy)
CRANE_VERSION=$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/google/go-containerregistry)
crane="$DOCKYARD_CACHE/tools/crane-static-$CRANE_VERSION"
if [[ ! -x "$crane" ]]; then
  mkdir -p "$DOCKYARD_CACHE/tools"
  tmp=$(mktemp -d "$DOCKYARD_CACHE/tools/.build-XXXXXX")
  echo "hack: building crane $CRANE_VERSION (static)" >&2
  CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-mod=mod go install -trimpath -ldflags="-s -w" \
    "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" >&2
  mv "$tmp/crane" "$crane"
  rm -rf "$tmp"
fi
mkdir -p "$ROOT/bin/images"
(cd "$ROOT" && go run ./hack/imagetar --tag dex:e2e --out bin/images/dex.tar --file "$dex:/dex:0755" --entrypoint /dex --user 65532:65532)
(cd "$ROOT" && go run ./hack/imagetar --tag crane:e2e --out bin/images/crane.tar --file "$crane:/crane:0755" --entrypoint /crane --user 65532:65532)
(cd "$ROOT" && go run ./hack/imagetar --tag trivy:e2e --out bin/images/trivy.tar --file "$trivy:/usr/local/bin/trivy:0755" --entrypoint /usr/local/bin/trivy --user 65532:65532)
