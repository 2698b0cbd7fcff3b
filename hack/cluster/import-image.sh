#!/usr/bin/env bash
# Imports image tarballs (`docker save` or OCI archive format) into the local cluster's
# containerd, where pods can use them with imagePullPolicy IfNotPresent or Never.
#
#   hack/cluster/import-image.sh bin/images/dockyard.tar [more.tar ...]
#
# A tag like "dockyard:dev" becomes docker.io/library/dockyard:dev, which is also what a pod
# spec's "dockyard:dev" means.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[[ $# -gt 0 ]] || { echo "usage: $0 IMAGE.tar [IMAGE.tar ...]" >&2; exit 2; }
for f in "$@"; do
  [[ -f "$f" ]] || { echo "cluster-import-image: no such file: $f" >&2; exit 1; }
  abs=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
  "$ROOT/hack/cluster/in-ns" ctr images import "$abs"
done
