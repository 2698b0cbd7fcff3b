# shellcheck shell=bash
# Shared settings for the local cluster scripts (hack/cluster/*.sh). Sourced, not run.
# Sources hack/lib.sh (ROOT, versions, DOCKYARD_CACHE) itself.
# shellcheck disable=SC2034 # the settings are used by the scripts that source this file

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Where the cluster lives. The state dir holds everything the running node writes (etcd data,
# containerd, kubelet, logs, PIDs); cluster-down removes it.
CLUSTER_NAME=${CLUSTER_NAME:-dockyard}
CLUSTER_STATE=${CLUSTER_STATE:-$ROOT/bin/cluster/state}
CLUSTER_NETNS=${CLUSTER_NETNS:-dockyard-cluster}
CLUSTER_KUBECONFIG=${CLUSTER_KUBECONFIG:-$ROOT/bin/cluster/kubeconfig}
# The node's address lives on an ifb device inside the namespace (no `dummy` driver here).
# Packets to it are only ever sent from inside the namespace.
# The API server's port, on the namespace's loopback and forwarded from the host's loopback.
CLUSTER_API_PORT=${CLUSTER_API_PORT:-6443}
CLUSTER_NODE_IP=${CLUSTER_NODE_IP:-10.213.0.2}
CLUSTER_POD_CIDR=${CLUSTER_POD_CIDR:-10.214.0.0/16}
CLUSTER_SERVICE_CIDR=${CLUSTER_SERVICE_CIDR:-10.215.0.0/16}
CLUSTER_DNS_IP=${CLUSTER_DNS_IP:-10.215.0.10}
CLUSTER_DOMAIN=cluster.local
# The cgroup parent of everything the kubelet runs, created in every hierarchy beforehand.
CLUSTER_CGROUP=${CLUSTER_CGROUP:-dockyard-cluster}

# Images are built locally (hack/cluster/bins.sh) and imported; never pulled.
CLUSTER_PAUSE_IMAGE=dockyard.local/cluster/pause:3.10
# A static busybox: `command: [/bin/busybox, sh, -c, ...]`, `busybox wget`, `busybox nslookup`.
CLUSTER_BUSYBOX_IMAGE=dockyard.local/cluster/busybox:stable
CLUSTER_COREDNS_IMAGE=dockyard.local/cluster/coredns:${CLUSTER_COREDNS_VERSION}
# The CoreDNS plugins compiled in (hack/cluster/bins.sh): exactly those the Corefile in
# hack/cluster/addons.sh uses. A directive added there must be added here (it is in the cache
# key, so the binary is rebuilt); CoreDNS refuses a Corefile with a plugin it lacks.
CLUSTER_COREDNS_PLUGINS="errors health ready kubernetes cache loop reload"
cert_manager_image() { echo "dockyard.local/cluster/cert-manager-$1:${CLUSTER_CERT_MANAGER_VERSION}"; }

# $DOCKYARD_CACHE/cluster/<key> (or $CLUSTER_BIN_DIR): the key changes whenever a pinned version that goes into it
# changes, or how they are compiled (flags=).
cluster_bin_dir() {
  if [[ -n "${CLUSTER_BIN_DIR:-}" ]]; then echo "$CLUSTER_BIN_DIR"; return; fi
  local key
  key=$(printf '%s\n' "k8s=$KUBERNETES_VERSION" "etcd=$ETCD_VERSION" "containerd=$CLUSTER_CONTAINERD_VERSION" \
    "runc=$CLUSTER_RUNC_VERSION" "coredns=$CLUSTER_COREDNS_VERSION" "cert-manager=$CLUSTER_CERT_MANAGER_VERSION" \
    "flags=$GO_TEST_TOOL_GCFLAGS for containerd runc cert-manager" "coredns=optimised, plugins $CLUSTER_COREDNS_PLUGINS" |
    sha256sum | cut -c1-10)
  echo "$DOCKYARD_CACHE/cluster/k8s-${KUBERNETES_VERSION}-${key}"
}

apt_install() {
  echo "cluster: apt-get install $*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The PID of a process that holds the cluster's namespaces (an idle `sleep infinity`), if running.
cluster_holder_pid() {
  local pid
  pid=$(cat "$CLUSTER_STATE/pids/holder" 2>/dev/null) || return 1
  [[ -n "$pid" ]] && pid_alive "$pid" || return 1
  # Same process as recorded (guards against PID reuse): compare its start time.
  [[ "$(awk '{print $22}' "/proc/$pid/stat")" == "$(cat "$CLUSTER_STATE/pids/holder.start" 2>/dev/null)" ]] || return 1
  echo "$pid"
}

# The cgroup hierarchies the node's cgroup is created in (every v1 hierarchy on a v1/hybrid
# host, the unified one on a cgroup2-only host).
cluster_cgroup_hierarchies() {
  local v1
  v1=$(findmnt -rn -t cgroup -o TARGET)
  if [[ -n "$v1" ]]; then echo "$v1"; else findmnt -rn -t cgroup2 -o TARGET | head -1; fi
}

# pid_alive PID: the process exists and is not a zombie waiting to be reaped.
pid_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ "${stat%% *}" != Z ]]
}

# Every mounted hierarchy, v1 and v2: runc and the kubelet also create the node's cgroups in
# the unified (cgroup2) hierarchy of a hybrid host, so cluster-down cleans all of them.
cluster_cgroup_all_hierarchies() { findmnt -rn -t cgroup,cgroup2 -o TARGET; }

# cluster_lock: one cluster-up/cluster-down at a time (cluster-up's own call to cluster-down
# inherits its lock). Daemons must not inherit fd 9: launch them with 9>&-.
cluster_lock() {
  [[ -z "${CLUSTER_LOCKED:-}" ]] || return 0
  mkdir -p "$(dirname "$CLUSTER_STATE")"
  exec 9>"$(dirname "$CLUSTER_STATE")/.lock"
  if ! flock -w 600 9; then echo "cluster: another cluster-up/down still runs after 10 min" >&2; exit 1; fi
  export CLUSTER_LOCKED=1
}
