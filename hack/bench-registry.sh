#!/usr/bin/env bash
# Benchmarks `dockyard registry serve` and `dockyard registry gc` against upstream
# distribution `registry` v3.1.2 (built from the Go module proxy into the tool cache) with the same
# setup: filesystem storage, TLS, one bcrypt htpasswd user, everything on 127.0.0.1.
#
#  1. Push/pull: hack/registrybench (go-containerregistry, one client for both) pushes the
#     same seeded images (IMAGES x 3 random layers of 1-4 MiB) and pulls them PULL_ROUNDS
#     times; MiB/s and p50/p99 per-request latency. RUNS runs per registry, in the order
#     dockyard, upstream, upstream, dockyard, ... so drift in machine load hits both.
#     With NOAUTH=1 (default) the same again with TLS but no authentication, which shows
#     what the storage/HTTP path costs without the per-request credential check.
#  2. GC: one store of GC_IMAGES small images (4 x 1 KiB layers + config + manifest = 6
#     blobs each), half of them deleted through the API (by digest or by tag), back-dated
#     past the 1h grace period; each run collects a fresh identical copy with
#     `dockyard registry gc --config` and `registry garbage-collect --delete-untagged`.
#  3. The Go benchmarks of internal/workload/server against each binary (GO_BENCH=0 skips).
#
#   hack/bench-registry.sh                         # about 5-8 minutes on 2 cores
#   RUNS=1 GC_RUNS=1 GO_BENCH=0 hack/bench-registry.sh
#   SKIP_BUILD=1 ...                                # reuse bin/dockyard
# The results are printed at the end and written to bin/bench-registry.txt.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
BIN="$ROOT/bin"
UPSTREAM_VERSION=$UPSTREAM_REGISTRY_VERSION
DOCKYARD=${DOCKYARD:-$BIN/dockyard}
RB="$BIN/registrybench"
PORT=${PORT:-$(free_port)}
IMAGES=${IMAGES:-16}
CONCURRENCY=${CONCURRENCY:-4}
PULL_ROUNDS=${PULL_ROUNDS:-3}
RUNS=${RUNS:-2}
NOAUTH=${NOAUTH:-1}
GC_IMAGES=${GC_IMAGES:-1700}
GC_RUNS=${GC_RUNS:-3}
GO_BENCH=${GO_BENCH:-1}
BENCHTIME=${BENCHTIME:-20x}
COUNT=${COUNT:-1}
RESULTS="$BIN/bench-registry.txt"
mkdir -p "$BIN"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && go build -o "$DOCKYARD" ./cmd)
fi
UPSTREAM=$(go_tool registry github.com/distribution/distribution/v3/cmd/registry "$UPSTREAM_VERSION")
(cd "$ROOT" && go build -o "$RB" ./hack/registrybench)
if [[ "$GO_BENCH" == 1 ]]; then
  (cd "$ROOT" && go test -c -o "$BIN/workload-server.test" ./internal/workload/server)
fi

WORK=$(mktemp -d)
PID=""
stop() { if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=""; }
trap 'stop; rm -rf "$WORK"' EXIT

PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
fixture() { # dir [devregistry flags...]
  local dir=$1; shift
  (cd "$ROOT" && go run ./hack/devregistry -dir "$dir" -addr "127.0.0.1:$PORT" -metrics "127.0.0.1:$((PORT + 1))" \
    -user bench -password "$PASSWORD" "$@" >/dev/null)
}
fixture "$WORK/fx"                 # TLS + bcrypt htpasswd
fixture "$WORK/fxna" -no-auth      # TLS only
fixture "$WORK/gcd" -no-auth -no-tls # only its config is used, by `dockyard registry gc`

upstream_config() { # fixture-dir auth(0|1)
  cat <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $1/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$PORT
  secret: upstream-bench-secret
  tls: {certificate: $1/tls/tls.crt, key: $1/tls/tls.key}
YAML
  if [[ "$2" == 1 ]]; then echo "auth: {htpasswd: {realm: upstream, path: $1/users/htpasswd}}"; fi
}
upstream_config "$WORK/fx" 1 >"$WORK/fx/upstream.yml"
upstream_config "$WORK/fxna" 0 >"$WORK/fxna/upstream.yml"

wait_ready() { # fixture-dir
  for _ in $(seq 1 150); do
    code=$(curl -sS --cacert "$1/tls/ca.crt" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/v2/" 2>/dev/null || true)
    [[ "$code" == "200" || "$code" == "401" ]] && return 0
    kill -0 "$PID" 2>/dev/null || { echo "registry exited"; return 1; }
    sleep 0.1
  done
  echo "registry not ready"; return 1
}

start() { # dockyard|upstream fixture-dir; starts on an empty store
  rm -rf "$2/data"; mkdir -p "$2/data"
  if [[ "$1" == dockyard ]]; then
    "$DOCKYARD" registry serve --config "$2/config.yaml" 2>>"$WORK/dockyard.log" &
  else
    "$UPSTREAM" serve "$2/upstream.yml" >>"$WORK/upstream.log" 2>&1 &
  fi
  PID=$!
  wait_ready "$2"
}

creds() { # fixture-dir
  if [[ "$1" == "$WORK/fx" ]]; then echo "-user bench -password $PASSWORD"; fi
}

pushpull() { # dockyard|upstream fixture-dir out
  local label=dockyard
  [[ "$1" == upstream ]] && label="upstream-$UPSTREAM_VERSION"
  start "$1" "$2"
  # shellcheck disable=SC2046
  "$RB" pushpull -endpoint "127.0.0.1:$PORT" $(creds "$2") -ca "$2/tls/ca.crt" -label "$label" \
    -images "$IMAGES" -concurrency "$CONCURRENCY" -pull-rounds "$PULL_ROUNDS" -out "$3" >/dev/null
  stop
  echo "  $label: $(grep -m1 -o '"mibPerSecond": [0-9.]*' "$3" | head -1) (push) done"
}

compare() { # name fixture-dir -> sets A_FILES B_FILES
  A_FILES=""; B_FILES=""
  for r in $(seq 1 "$RUNS"); do
    local order=(dockyard upstream)
    (( r % 2 == 0 )) && order=(upstream dockyard)
    for k in "${order[@]}"; do
      pushpull "$k" "$2" "$WORK/$1-$k-$r.json"
    done
    A_FILES+="${A_FILES:+,}$WORK/$1-dockyard-$r.json"
    B_FILES+="${B_FILES:+,}$WORK/$1-upstream-$r.json"
  done
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
echo "== push/pull, TLS + bcrypt htpasswd ($RUNS run(s) each)"
compare auth "$WORK/fx"
AUTH_A=$A_FILES AUTH_B=$B_FILES
if [[ "$NOAUTH" == 1 ]]; then
  echo "== push/pull, TLS, no authentication ($RUNS run(s) each)"
  compare noauth "$WORK/fxna"
  NOAUTH_A=$A_FILES NOAUTH_B=$B_FILES
fi

echo "== GC: building a store of $GC_IMAGES images with dockyard serve"
start dockyard "$WORK/fx"
# shellcheck disable=SC2046
"$RB" gcstore -endpoint "127.0.0.1:$PORT" $(creds "$WORK/fx") -ca "$WORK/fx/tls/ca.crt" -images "$GC_IMAGES"
stop
mv "$WORK/fx/data" "$WORK/store"
"$RB" backdate -dir "$WORK/store" -age 2h
mkdir -p "$WORK/gcu"
cat >"$WORK/gcu/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $WORK/gcu/data}
  delete: {enabled: true}
YAML

count_blobs() { find "$1/docker/registry/v2/blobs" -name data -type f | wc -l; }
now_ns() { date +%s%N; }
gc_run() { # dockyard|upstream run
  local dir label out before start end secs reported
  if [[ "$1" == dockyard ]]; then dir="$WORK/gcd"; label=dockyard; else dir="$WORK/gcu"; label="upstream-$UPSTREAM_VERSION"; fi
  rm -rf "$dir/data"; cp -a "$WORK/store" "$dir/data"; sync
  before=$(count_blobs "$dir/data")
  out="$WORK/gc-$1-$2.out"
  start=$(now_ns)
  if [[ "$1" == dockyard ]]; then
    "$DOCKYARD" registry gc --config "$dir/config.yaml" >"$out" 2>"$out.err"
  else
    "$UPSTREAM" garbage-collect --delete-untagged "$dir/config.yml" >"$out" 2>&1
  fi
  end=$(now_ns)
  secs=$(awk -v d=$((end - start)) 'BEGIN{printf "%.3f", d/1e9}')
  if [[ "$1" == dockyard ]]; then
    reported=$(grep -o '"blobsDeleted":[0-9]*,"manifestsDeleted":[0-9]*' "$out" | tr -d '"')
  else
    reported=$(grep -o '[0-9]* blobs and [0-9]* manifests eligible for deletion' "$out")
  fi
  printf '{"label":"%s","seconds":%s,"blobsBefore":%d,"blobsAfter":%d,"reported":"%s"}\n' \
    "$label" "$secs" "$before" "$(count_blobs "$dir/data")" "$reported" >"$WORK/gc-$1-$2.json"
  echo "  $label run $2: ${secs}s, $reported"
}
echo "== GC: $GC_RUNS run(s) each on fresh copies"
GC_A="" GC_B=""
for r in $(seq 1 "$GC_RUNS"); do
  order=(dockyard upstream)
  (( r % 2 == 0 )) && order=(upstream dockyard)
  for k in "${order[@]}"; do gc_run "$k" "$r"; done
  GC_A+="${GC_A:+,}$WORK/gc-dockyard-$r.json"
  GC_B+="${GC_B:+,}$WORK/gc-upstream-$r.json"
done

GOBENCH_OUT=""
if [[ "$GO_BENCH" == 1 ]]; then
  gobench() { # dockyard|upstream
    start "$1" "$WORK/fx"
    echo "-- Go benchmarks against $1 (internal/workload/server, -benchtime $BENCHTIME)"
    DOCKYARD_BENCH_REGISTRY="127.0.0.1:$PORT" DOCKYARD_BENCH_USER=bench DOCKYARD_BENCH_PASSWORD="$PASSWORD" \
      DOCKYARD_BENCH_CA="$WORK/fx/tls/ca.crt" \
      "$BIN/workload-server.test" -test.run '^$' -test.bench . -test.benchtime "$BENCHTIME" -test.count "$COUNT" 2>/dev/null |
      grep -E '^(Benchmark|FAIL)' || true
    stop
  }
  echo "== Go benchmarks"
  GOBENCH_OUT=$(gobench dockyard; gobench upstream)
fi
T1=$(date +%s)

{
  echo
  echo "=============== bench-registry results: dockyard vs upstream distribution $UPSTREAM_VERSION ==============="
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg), $((T1 - T0))s"
  echo
  "$RB" report -title "TLS + bcrypt htpasswd (the deployed configuration)" -a "$AUTH_A" -b "$AUTH_B"
  if [[ "$NOAUTH" == 1 ]]; then
    "$RB" report -title "TLS, no authentication (storage/HTTP path only)" -a "$NOAUTH_A" -b "$NOAUTH_B"
  fi
  "$RB" report -title "GC: $GC_IMAGES images, $((GC_IMAGES * 6)) blobs, half garbage" -gc-a "$GC_A" -gc-b "$GC_B"
  if [[ -n "$GOBENCH_OUT" ]]; then echo "### Go benchmarks"; echo; echo "$GOBENCH_OUT"; fi
} | tee "$RESULTS"
