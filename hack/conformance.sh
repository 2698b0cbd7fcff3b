#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite (push, pull, discovery, management)
# against `dockyard registry serve` on 127.0.0.1 with TLS (a throwaway CA, trusted through
# SSL_CERT_FILE) and Basic auth, and prints the pass/fail counts. The suite is built into the
# tool cache (hack/lib.sh).
#
#   hack/conformance.sh                      # dockyard only; exit 1 on any failure
#   COMPARE_UPSTREAM=1 hack/conformance.sh   # also run upstream `registry` with the same
#                                            # storage/TLS/htpasswd and list the differences
#                                            # (upstream v3.1.2 fails 91 checks: referrers API,
#                                            # OCI-Subject, sha512, non-distributable layers);
#                                            # exit 1 only on failures upstream does not have
#   KEEP=1 ...                               # keep the work dir (results/report.html)
#   SKIP_BUILD=1 ...                         # use an existing bin/dockyard
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
BIN="$ROOT/bin"
CONFORMANCE="$DOCKYARD_CACHE/tools/oci-conformance-$CONFORMANCE_VERSION"
UPSTREAM_VERSION=$UPSTREAM_REGISTRY_VERSION
DOCKYARD=${DOCKYARD:-$BIN/dockyard}
mkdir -p "$BIN"
PORT=${PORT:-$(free_port)}
METRICS_PORT=${METRICS_PORT:-$(free_port)}

if [[ ! -x "$CONFORMANCE" ]]; then
  echo ">> building distribution-spec conformance $CONFORMANCE_VERSION"
  mkdir -p "$DOCKYARD_CACHE/tools"
  mod=$(mktemp -d)
  (cd "$mod" && go mod init conformance-build >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod go get "github.com/opencontainers/distribution-spec/conformance@$CONFORMANCE_VERSION" >/dev/null 2>&1 &&
    go build -o "$CONFORMANCE.tmp" github.com/opencontainers/distribution-spec/conformance && mv "$CONFORMANCE.tmp" "$CONFORMANCE")
  rm -rf "$mod"
fi
if [[ -z "${SKIP_BUILD:-}" ]]; then
  echo ">> building dockyard"
  (cd "$ROOT" && go build -o "$DOCKYARD" ./cmd)
fi
if [[ -n "${COMPARE_UPSTREAM:-}" ]]; then
  UPSTREAM=$(go_tool registry github.com/distribution/distribution/v3/cmd/registry "$UPSTREAM_VERSION")
fi

WORK=$(mktemp -d)
SERVE_PID=""
stop() {
  if [[ -n "$SERVE_PID" ]]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
  SERVE_PID=""
}
cleanup() {
  stop
  if [[ -z "${KEEP:-}" ]]; then rm -rf "$WORK"; else echo ">> kept $WORK"; fi
}
trap cleanup EXIT

PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
(cd "$ROOT" && go run ./hack/devregistry -dir "$WORK/dockyard" -addr "127.0.0.1:$PORT" \
  -metrics "127.0.0.1:$METRICS_PORT" -user conformance -password "$PASSWORD" >/dev/null)

wait_ready() { # url
  for _ in $(seq 1 150); do
    if curl -sS --cacert "$WORK/dockyard/tls/ca.crt" -o /dev/null -w '%{http_code}' "$1" 2>/dev/null | grep -qE '200|401'; then return 0; fi
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then echo "registry exited"; return 1; fi
    sleep 0.1
  done
  echo "registry not ready"; return 1
}

run_suite() { # name
  local out="$WORK/$1"
  mkdir -p "$out"
  set +e
  (cd "$out" &&
    OCI_REGISTRY="127.0.0.1:$PORT" OCI_TLS=enabled SSL_CERT_FILE="$WORK/dockyard/tls/ca.crt" \
    OCI_USERNAME=conformance OCI_PASSWORD="$PASSWORD" \
    OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
    OCI_RESULTS_DIR="$out/results" OCI_LOG=error \
    "$CONFORMANCE" >"$out/conformance.out" 2>&1)
  set -e
  grep -E '^\s+OCI Conformance Test/.*: FAIL$' "$out/conformance.out" | sed -E 's/^\s+//; s/: FAIL$//' | sort >"$out/failed.txt" || true
  local pass fail
  pass=$(grep -E '^\s+Pass\.+:' "$out/conformance.out" | grep -oE '[0-9]+$' || echo 0)
  fail=$(grep -E '^\s+FAIL\.+:' "$out/conformance.out" | grep -oE '[0-9]+$' || echo 0)
  echo ">> $1: $pass passed, $fail failed"
  echo "$fail" >"$out/fail-count"
}

echo ">> dockyard registry serve on 127.0.0.1:$PORT"
"$DOCKYARD" registry serve --config "$WORK/dockyard/config.yaml" 2>"$WORK/dockyard/registry.log" &
SERVE_PID=$!
wait_ready "https://127.0.0.1:$PORT/v2/"
run_suite dockyard-run
stop
sed -n '/^OCI Conformance Result/,$p' "$WORK/dockyard-run/conformance.out"

if [[ -z "${COMPARE_UPSTREAM:-}" ]]; then
  [[ "$(cat "$WORK/dockyard-run/fail-count")" == "0" ]]
  exit
fi

mkdir -p "$WORK/upstream/data"
cat >"$WORK/upstream/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $WORK/upstream/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$PORT
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  tls: {certificate: $WORK/dockyard/tls/tls.crt, key: $WORK/dockyard/tls/tls.key}
auth:
  htpasswd: {realm: upstream, path: $WORK/dockyard/users/htpasswd}
YAML
echo ">> upstream registry $UPSTREAM_VERSION on 127.0.0.1:$PORT"
"$UPSTREAM" serve "$WORK/upstream/config.yml" >"$WORK/upstream/registry.log" 2>&1 &
SERVE_PID=$!
wait_ready "https://127.0.0.1:$PORT/v2/"
run_suite upstream-run
stop

only=$(comm -23 "$WORK/dockyard-run/failed.txt" "$WORK/upstream-run/failed.txt")
fixed=$(comm -13 "$WORK/dockyard-run/failed.txt" "$WORK/upstream-run/failed.txt")
echo ">> failing only on dockyard: $(echo -n "$only" | grep -c . || true)"
[[ -n "$only" ]] && echo "$only" | sed 's/^/   /'
echo ">> failing only on upstream: $(echo -n "$fixed" | grep -c . || true)"
[[ -n "$fixed" ]] && echo "$fixed" | sed 's/^/   /'
[[ -z "$only" ]]
