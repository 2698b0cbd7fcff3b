#!/usr/bin/env bash
# Builds the versitygw S3 gateway (used by the registry workload's S3 test) into bin/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${VERSITYGW_VERSION:-v1.8.0}
OUT="$ROOT/bin/versitygw-$VERSION"
if [[ -x "$OUT" ]]; then echo "$OUT"; exit 0; fi
tmp=$(mktemp -d)
GOBIN="$tmp" go install "github.com/versity/versitygw/cmd/versitygw@$VERSION"
mv "$tmp/versitygw" "$OUT"
rmdir "$tmp"
echo "$OUT"
