#!/usr/bin/env bash
# Benchmarks `dockyard registry serve` against upstream distribution `registry` v3.1.2 with
# the same setup: filesystem storage, TLS, one bcrypt htpasswd user, on 127.0.0.1. Runs the
# Go benchmarks of internal/workload/server (push, pull, blob HEAD) against each binary.
#
#   hack/bench-registry.sh              # BENCHTIME=20x by default
#   BENCHTIME=50x COUNT=3 hack/bench-registry.sh
#   SKIP_BUILD=1 ...                     # reuse bin/dockyard
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/bin"
UPSTREAM_VERSION=v3.1.2
UPSTREAM="$BIN/registry-$UPSTREAM_VERSION"
DOCKYARD=${DOCKYARD:-$BIN/dockyard}
PORT=${PORT:-15100}
BENCHTIME=${BENCHTIME:-20x}
COUNT=${COUNT:-1}
mkdir -p "$BIN"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && go build -o "$DOCKYARD" ./cmd)
fi
if [[ ! -x "$UPSTREAM" ]]; then
  tmpbin=$(mktemp -d)
  GOBIN="$tmpbin" go install "github.com/distribution/distribution/v3/cmd/registry@$UPSTREAM_VERSION"
  mv "$tmpbin/registry" "$UPSTREAM"; rmdir "$tmpbin"
fi
(cd "$ROOT" && go test -c -o "$BIN/workload-server.test" ./internal/workload/server)

WORK=$(mktemp -d)
PID=""
stop() { if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=""; }
trap 'stop; rm -rf "$WORK"' EXIT

PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
(cd "$ROOT" && go run ./hack/devregistry -dir "$WORK/fx" -addr "127.0.0.1:$PORT" -metrics "127.0.0.1:$((PORT + 1))" \
  -user bench -password "$PASSWORD" >/dev/null)

wait_ready() {
  for _ in $(seq 1 150); do
    code=$(curl -sS --cacert "$WORK/fx/tls/ca.crt" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/v2/" 2>/dev/null || true)
    [[ "$code" == "200" || "$code" == "401" ]] && return 0
    kill -0 "$PID" 2>/dev/null || { echo "registry exited"; return 1; }
    sleep 0.1
  done
  return 1
}

bench() { # label
  echo "== $1"
  DOCKYARD_BENCH_REGISTRY="127.0.0.1:$PORT" DOCKYARD_BENCH_USER=bench DOCKYARD_BENCH_PASSWORD="$PASSWORD" \
    DOCKYARD_BENCH_CA="$WORK/fx/tls/ca.crt" \
    "$BIN/workload-server.test" -test.run '^$' -test.bench . -test.benchtime "$BENCHTIME" -test.count "$COUNT" 2>/dev/null |
    grep -E '^(Benchmark|ok|FAIL)'
}

rm -rf "$WORK/fx/data"; mkdir -p "$WORK/fx/data"
"$DOCKYARD" registry serve --config "$WORK/fx/config.yaml" 2>"$WORK/dockyard.log" &
PID=$!
wait_ready
bench "dockyard registry serve"
stop

rm -rf "$WORK/fx/data"; mkdir -p "$WORK/fx/data"
cat >"$WORK/upstream.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $WORK/fx/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$PORT
  secret: upstream-bench-secret
  tls: {certificate: $WORK/fx/tls/tls.crt, key: $WORK/fx/tls/tls.key}
auth:
  htpasswd: {realm: upstream, path: $WORK/fx/users/htpasswd}
YAML
"$UPSTREAM" serve "$WORK/upstream.yml" >"$WORK/upstream.log" 2>&1 &
PID=$!
wait_ready
bench "upstream registry $UPSTREAM_VERSION"
stop
