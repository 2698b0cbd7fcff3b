#!/usr/bin/env bash
# Writes a `docker save`-style image tarball holding one static binary, without Docker:
#
#   hack/cluster-image-tar.sh OUT.tar REF BINARY PATH-IN-IMAGE [USER]
#
# The image has one layer (the binary at PATH-IN-IMAGE, plus /tmp), its entrypoint is
# PATH-IN-IMAGE and it is tagged REF. Import it with hack/cluster-import-image.sh OUT.tar.
set -euo pipefail
[[ $# -ge 4 ]] || { echo "usage: $0 OUT.tar REF BINARY PATH-IN-IMAGE [USER]" >&2; exit 2; }
out=$1 ref=$2 bin=$3 path=$4 user=${5:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rootfs$(dirname "$path")" "$tmp/rootfs/tmp" "$tmp/img"
chmod 1777 "$tmp/rootfs/tmp"
install -m 0755 "$bin" "$tmp/rootfs$path"
# Fixed owner and mtime so the same binary gives the same layer digest.
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$tmp/rootfs" -cf "$tmp/layer.tar" .
layer=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
mkdir -p "$tmp/img/$layer" && mv "$tmp/layer.tar" "$tmp/img/$layer/layer.tar"
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["%s"],"User":"%s","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"hack/cluster-image-tar.sh"}]}' \
  "$path" "$user" "$layer" > "$tmp/config.json"
config=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
mv "$tmp/config.json" "$tmp/img/$config.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$config" "$ref" "$layer" > "$tmp/img/manifest.json"
tar --numeric-owner --owner=0 --group=0 -C "$tmp/img" -cf "$out.tmp" . && mv "$out.tmp" "$out"
echo "cluster-image-tar: $ref -> $out ($(du -h "$out" | cut -f1))" >&2
