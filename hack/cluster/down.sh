#!/usr/bin/env bash
# Tears down the local cluster started by hack/cluster/up.sh and leaves nothing behind:
# processes stopped by their recorded PIDs, then anything left in the cluster's cgroup (pods,
# shims) killed, the namespaces gone with their last process (and every mount in them), the
# cgroups removed and the state dir deleted. The host's iptables, routes and mounts were never
# touched. Idempotent: safe to run when nothing is up.
#
#   hack/cluster/down.sh [--quiet]     # or: make cluster-down
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"
# shellcheck source=lib.sh
source "$ROOT/hack/cluster/lib.sh"
cluster_lock
QUIET=${1:-}
T0=$SECONDS
log() { [[ "$QUIET" == --quiet ]] || echo "cluster-down: $*" >&2; }

# in_cluster_cgroup PID: true if PID runs in the cluster's cgroup (guards against PID reuse).
in_cluster_cgroup() { grep -q ":/${CLUSTER_CGROUP}\(/\|\$\)" "/proc/$1/cgroup" 2>/dev/null; }

# 1. Processes we recorded, newest first: TERM, then KILL after 5s.
pids=()
if [[ -f "$CLUSTER_STATE/pids/order" ]]; then
  for name in $(tac "$CLUSTER_STATE/pids/order"); do
    pid=$(cat "$CLUSTER_STATE/pids/$name" 2>/dev/null) || continue
    if pid_alive "$pid" && in_cluster_cgroup "$pid"; then
      log "stopping $name (PID $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
fi
end=$((SECONDS + 5))
for pid in "${pids[@]}"; do
  while pid_alive "$pid" && [[ $SECONDS -lt $end ]]; do sleep 0.2; done
  pid_alive "$pid" && { log "PID $pid still running: KILL"; kill -KILL "$pid" 2>/dev/null || true; }
done

# 2. Everything else in the cluster's cgroup tree: container processes, shims, the holder.
procs_left() {
  local h
  for h in $(cluster_cgroup_all_hierarchies); do
    if [[ -d "$h/$CLUSTER_CGROUP" ]]; then find "$h/$CLUSTER_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null; fi
  done | sort -u
}
for _ in $(seq 1 50); do
  left=$(procs_left)
  [[ -z "$left" ]] && break
  log "killing $(echo "$left" | wc -w) remaining process(es) in /$CLUSTER_CGROUP"
  # shellcheck disable=SC2086
  kill -KILL $left 2>/dev/null || true
  sleep 0.2
done
[[ -z "$(procs_left)" ]] || { echo "cluster-down: processes remain in /$CLUSTER_CGROUP: $(procs_left)" >&2; exit 1; }

# The holder is in the cgroup too (so step 2 got it), but check its recorded PID as well.
if pid=$(cluster_holder_pid); then kill -KILL "$pid" 2>/dev/null || true; fi

# 3. Cgroups, deepest first, in every hierarchy.
for h in $(cluster_cgroup_all_hierarchies); do
  [[ -d "$h/$CLUSTER_CGROUP" ]] || continue
  find "$h/$CLUSTER_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
  [[ -d "$h/$CLUSTER_CGROUP" ]] && { echo "cluster-down: could not remove $h/$CLUSTER_CGROUP" >&2; exit 1; }
done

# 4. No mount may reference the state dir from the host (all of them lived in the private
# mount namespace, which is gone with its last process).
if grep -qF "$CLUSTER_STATE" /proc/self/mountinfo; then
  echo "cluster-down: unexpected host mounts under $CLUSTER_STATE:" >&2
  grep -F "$CLUSTER_STATE" /proc/self/mountinfo >&2
  exit 1
fi

# 5. Files.
if [[ -d "$CLUSTER_STATE" ]]; then
  rm -rf "$CLUSTER_STATE"
  log "removed $CLUSTER_STATE"
fi
rm -f "$CLUSTER_KUBECONFIG" "$(dirname "$CLUSTER_KUBECONFIG")/bin"
rmdir /tmp/hostpath_pv 2>/dev/null || true
log "cluster down in $((SECONDS - T0))s"
