#!/usr/bin/env bash
# Brings up a real single-node Kubernetes cluster (containerd + runc, CNI bridge, kube-proxy,
# CoreDNS, cert-manager) without Docker, entirely inside its own network and mount namespaces.
#
#   hack/cluster/up.sh        # or: make cluster-up
#   hack/cluster/in-ns kubectl get nodes
#   hack/cluster/down.sh      # or: make cluster-down
#
# Binaries come from hack/cluster/bins.sh (built from the Go module proxy, cached in bin/).
# Everything the node writes lives under the state dir ($CLUSTER_STATE, bin/cluster/state):
# logs/ has one log per process, pids/ their PIDs. Safe to run twice: a running cluster is
# detected and left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"
# shellcheck source=lib.sh
source "$ROOT/hack/cluster/lib.sh"
cluster_lock
NODE=${CLUSTER_NAME}-control-plane
T0=$SECONDS
STEP_T=$SECONDS
log() { echo "cluster-up: $*" >&2; }
# done_step MSG: prints MSG with the time since the previous step.
done_step() { log "$(printf '%-48s %4ss' "$1" $((SECONDS - STEP_T)))"; STEP_T=$SECONDS; }
die() { log "ERROR: $*"; log "logs: $CLUSTER_STATE/logs"; exit 1; }

BIN=$("$ROOT/hack/cluster/bins.sh")
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$ROOT/bin/nsforward" ./hack/cluster/nsforward)
done_step "binaries ($BIN)"
export PATH="$BIN:$PATH"

HOLDER=$(cluster_holder_pid || true)
in_ns() { nsenter --target "$HOLDER" --net --mount --wd="$PWD" -- "$@"; }
kc() { in_ns env KUBECONFIG="$CLUSTER_STATE/kubeconfig/super-admin.conf" "$BIN/kubectl" "$@"; }

if [[ -n "$HOLDER" ]]; then
  if [[ -f "$CLUSTER_STATE/up-complete" ]] && kc get --raw /readyz >/dev/null 2>&1; then
    log "cluster already running (namespaces held by PID $HOLDER); nothing to do"
    log "kubeconfig: $CLUSTER_KUBECONFIG   try: hack/cluster/in-ns kubectl get nodes"
    log "(make cluster-down first to start afresh)"
    exit 0
  fi
  log "a cluster is half up (PID $HOLDER; interrupted, or its API server does not answer): tearing it down first"
  "$ROOT/hack/cluster/down.sh"
  HOLDER=
fi
"$ROOT/hack/cluster/down.sh" --quiet # leftovers of an interrupted run, if any
mkdir -p "$CLUSTER_STATE"/{pids,logs,config,kubeconfig,pki,etcd,cni/net.d,certs.d} /tmp/hostpath_pv

# --- cgroups: one parent for the whole node, in every hierarchy ----------------------------
# Everything started here runs under /<CLUSTER_CGROUP>/system; the kubelet's pods go under
# /<CLUSTER_CGROUP>/kubepods. cluster-down kills whatever is left in this tree and removes it.
CG_PROCS=()
for h in $(cluster_cgroup_hierarchies); do
  for sub in "" /system; do
    d="$h/$CLUSTER_CGROUP$sub"
    mkdir -p "$d"
    if [[ -f "$h/cpuset.cpus" ]]; then # cpuset children start empty in v1
      cat "$h/cpuset.cpus" > "$d/cpuset.cpus"
      cat "$h/cpuset.mems" > "$d/cpuset.mems"
    fi
  done
  CG_PROCS+=("$h/$CLUSTER_CGROUP/system/cgroup.procs")
done

# launch NAME CMD...: starts CMD inside the namespaces and the cluster's cgroup, in its own
# session, logging to logs/NAME.log; records its PID in pids/NAME.
launch() {
  local name=$1; shift
  setsid bash -c 'for f in $CG_PROCS_LIST; do echo $$ > "$f"; done; exec "$@"' _ \
    nsenter --target "$HOLDER" --net --mount --wd="$CLUSTER_STATE" -- env PATH="$PATH" "$@" \
    >"$CLUSTER_STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! > "$CLUSTER_STATE/pids/$name"
  echo "$name" >> "$CLUSTER_STATE/pids/order"
}
export CG_PROCS_LIST="${CG_PROCS[*]}"
# launch_host NAME CMD...: like launch, but in the host's namespaces.
launch_host() {
  local name=$1; shift
  setsid bash -c 'for f in $CG_PROCS_LIST; do echo $$ > "$f"; done; exec "$@"' _ "$@" \
    >"$CLUSTER_STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! > "$CLUSTER_STATE/pids/$name"
  echo "$name" >> "$CLUSTER_STATE/pids/order"
}

# wait_for SECONDS WHAT CMD...: retries CMD every 0.5s.
wait_for() {
  local limit=$1 what=$2 end=$((SECONDS + $1)); shift 2
  until "$@" >/dev/null 2>&1; do
    [[ $SECONDS -lt $end ]] || die "timed out after ${limit}s waiting for $what"
    sleep 0.5
  done
}
alive() { local p; p=$(cat "$CLUSTER_STATE/pids/$1") && pid_alive "$p" || die "$1 exited; see $CLUSTER_STATE/logs/$1.log"; }
done_step "state dir and cgroups"

# --- namespaces ------------------------------------------------------------------------
setsid bash -c 'for f in $CG_PROCS_LIST; do echo $$ > "$f"; done; exec "$@"' _ \
  unshare --net --mount --propagation private -- \
  "$ROOT/hack/cluster/ns-init.sh" "$CLUSTER_STATE" "$CLUSTER_NODE_IP" "$CLUSTER_DNS_IP" "$CLUSTER_DOMAIN" \
  >"$CLUSTER_STATE/logs/ns-init.log" 2>&1 </dev/null 9>&- &
HOLDER=$!
echo "$HOLDER" > "$CLUSTER_STATE/pids/holder"
wait_for 10 "the namespaces" test -e "$CLUSTER_STATE/ns-ready"
awk '{print $22}' "/proc/$HOLDER/stat" > "$CLUSTER_STATE/pids/holder.start"
done_step "network + mount namespaces (holder PID $HOLDER)"

# --- certificates and kubeconfigs, offline -----------------------------------------------
cat > "$CLUSTER_STATE/config/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: ${CLUSTER_NODE_IP}
  bindPort: ${CLUSTER_API_PORT}
nodeRegistration:
  name: ${NODE}
  criSocket: unix:///run/containerd/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: ${CLUSTER_NAME}
kubernetesVersion: ${KUBERNETES_VERSION}
certificatesDir: ${CLUSTER_STATE}/pki
# Loopback, so a kubeconfig used by mistake outside the namespaces reaches nothing off-machine.
controlPlaneEndpoint: 127.0.0.1:${CLUSTER_API_PORT}
apiServer:
  certSANs: [127.0.0.1, localhost, ${CLUSTER_NODE_IP}]
etcd:
  external:
    endpoints: [http://127.0.0.1:2379]
networking:
  dnsDomain: ${CLUSTER_DOMAIN}
  podSubnet: ${CLUSTER_POD_CIDR}
  serviceSubnet: ${CLUSTER_SERVICE_CIDR}
EOF
KCFG="$CLUSTER_STATE/kubeconfig"
in_ns kubeadm init phase certs all --config "$CLUSTER_STATE/config/kubeadm.yaml" >"$CLUSTER_STATE/logs/kubeadm.log" 2>&1 ||
  die "kubeadm certs failed: $(tail -3 "$CLUSTER_STATE/logs/kubeadm.log")"
in_ns kubeadm init phase kubeconfig all --config "$CLUSTER_STATE/config/kubeadm.yaml" --kubeconfig-dir "$KCFG" \
  >>"$CLUSTER_STATE/logs/kubeadm.log" 2>&1 || die "kubeadm kubeconfig failed: $(tail -3 "$CLUSTER_STATE/logs/kubeadm.log")"
in_ns kubeadm kubeconfig user --config "$CLUSTER_STATE/config/kubeadm.yaml" --client-name system:kube-proxy \
  > "$KCFG/kube-proxy.conf" 2>>"$CLUSTER_STATE/logs/kubeadm.log" || die "kubeadm kubeconfig user failed"
done_step "certificates and kubeconfigs (kubeadm phases)"

# --- control plane -----------------------------------------------------------------------
PKI="$CLUSTER_STATE/pki"
launch etcd etcd --name "$NODE" --data-dir "$CLUSTER_STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$NODE=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
  --unsafe-no-fsync --log-level warn
launch kube-apiserver kube-apiserver \
  --advertise-address "$CLUSTER_NODE_IP" --secure-port "$CLUSTER_API_PORT" --allow-privileged \
  --etcd-servers http://127.0.0.1:2379 --service-cluster-ip-range "$CLUSTER_SERVICE_CIDR" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
  --requestheader-username-headers X-Remote-User --enable-bootstrap-token-auth
wait_for 60 "kube-apiserver /readyz" kc get --raw /readyz
# The same kubeconfig works from the host: its 127.0.0.1:PORT is forwarded into the
# namespace's loopback (hack/cluster/nsforward; loopback to loopback, nothing else is reachable).
if ss -Hltn "sport = :$CLUSTER_API_PORT" | grep -q .; then
  log "WARNING: 127.0.0.1:$CLUSTER_API_PORT is taken on the host: the kubeconfig works only via hack/cluster/in-ns"
else
  launch_host nsforward "$ROOT/bin/nsforward" --pid "$HOLDER" \
    --listen "127.0.0.1:$CLUSTER_API_PORT" --target "127.0.0.1:$CLUSTER_API_PORT"
fi
done_step "etcd + kube-apiserver ready"

# The two bindings `kubeadm init` creates: admin.conf's group is cluster-admin, and the API
# server's kubelet client may use the kubelet API (logs, exec, port-forward).
kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "kubeadm:cluster-admins"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "kubeadm:cluster-admins"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "kubeadm:kube-apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
EOF

launch kube-controller-manager kube-controller-manager \
  --kubeconfig "$KCFG/controller-manager.conf" --authentication-kubeconfig "$KCFG/controller-manager.conf" \
  --authorization-kubeconfig "$KCFG/controller-manager.conf" --bind-address 127.0.0.1 --leader-elect=false \
  --client-ca-file "$PKI/ca.crt" --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" --root-ca-file "$PKI/ca.crt" \
  --service-account-private-key-file "$PKI/sa.key" --use-service-account-credentials \
  --allocate-node-cidrs --cluster-cidr "$CLUSTER_POD_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$CLUSTER_SERVICE_CIDR" --enable-hostpath-provisioner=true
launch kube-scheduler kube-scheduler \
  --kubeconfig "$KCFG/scheduler.conf" --authentication-kubeconfig "$KCFG/scheduler.conf" \
  --authorization-kubeconfig "$KCFG/scheduler.conf" --bind-address 127.0.0.1 --leader-elect=false
# The in-tree hostPath provisioner creates each volume directory 0750 root:root, and hostPath
# volumes ignore a pod's fsGroup, so no non-root pod (the restricted Pod Security Standard
# requires non-root) could write its claim. CSI drivers on real clusters apply fsGroup; this
# shim does the equivalent here by opening each new volume directory (not its contents) to
# the pod's user. Local-cluster only; stopped with the cluster.
launch hostpath-perms bash -c 'while :; do find /tmp/hostpath_pv -mindepth 1 -maxdepth 1 -type d ! -perm -0777 -exec chmod 0777 {} + 2>/dev/null; sleep 1; done'
done_step "controller-manager + scheduler started"

# --- node: containerd, kubelet, kube-proxy -----------------------------------------------
# A single node, so its pod CIDR is the first /24 the controller-manager hands out.
NODE_POD_CIDR="${CLUSTER_POD_CIDR%/*}/24"
cat > "$CLUSTER_STATE/cni/net.d/10-dockyard.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dockyard",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "${NODE_POD_CIDR}"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
cat > "$CLUSTER_STATE/config/containerd.toml" <<EOF
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
# No NRI and no /opt plugin dir: nothing outside the state dir.
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${CLUSTER_PAUSE_IMAGE}"
  # Per-registry settings (CA, mirrors): certs.d/<host[:port]>/hosts.toml, read on each pull.
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "${CLUSTER_STATE}/certs.d"

[plugins."io.containerd.transfer.v1.local"]
  config_path = "${CLUSTER_STATE}/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  # The machine withholds CAP_SYS_RESOURCE: never ask for a lower oom_score_adj than ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "${BIN}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["${BIN}/cni"]
    conf_dir = "${CLUSTER_STATE}/cni/net.d"
EOF
launch containerd containerd --config "$CLUSTER_STATE/config/containerd.toml"
wait_for 30 "containerd" in_ns ctr --address /run/containerd/containerd.sock version
done_step "containerd ready"

import_image() { in_ns ctr --address /run/containerd/containerd.sock -n k8s.io images import "$1" >/dev/null 2>>"$CLUSTER_STATE/logs/ctr.log"; }
for img in "$BIN"/images/*.tar; do import_image "$img" || die "import $img failed"; done
if [[ -f "$ROOT/bin/images/dockyard.tar" ]]; then
  if import_image "$ROOT/bin/images/dockyard.tar"; then log "imported bin/images/dockyard.tar"
  else log "WARNING: could not import bin/images/dockyard.tar (see logs/ctr.log)"; fi
fi
done_step "images imported ($(ls "$BIN"/images | wc -l) + dockyard if built)"

cat > "$CLUSTER_STATE/config/resolv.conf" <<EOF
# The node has no upstream DNS; pods resolve cluster names through CoreDNS.
options ndots:5
EOF
cat > "$CLUSTER_STATE/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${PKI}/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /${CLUSTER_CGROUP}
failCgroupV1: false
failSwapOn: false
# The kubelet would otherwise rewrite global sysctls; cluster-ns-init.sh shows it the values
# it wants, and with this it only checks them.
protectKernelDefaults: true
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
clusterDNS: [${CLUSTER_DNS_IP}]
clusterDomain: ${CLUSTER_DOMAIN}
resolvConf: ${CLUSTER_STATE}/config/resolv.conf
staticPodPath: ""
serializeImagePulls: false
rotateCertificates: false
EOF
launch kubelet kubelet --config "$CLUSTER_STATE/config/kubelet.yaml" --kubeconfig "$KCFG/kubelet.conf" \
  --hostname-override "$NODE" --node-ip "$CLUSTER_NODE_IP"

cat > "$CLUSTER_STATE/config/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${KCFG}/kube-proxy.conf}
hostnameOverride: ${NODE}
mode: iptables
clusterCIDR: ${CLUSTER_POD_CIDR}
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
# Leave conntrack sysctls alone (some are not namespaced).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
launch kube-proxy kube-proxy --config "$CLUSTER_STATE/config/kube-proxy.yaml"

node_ready() { [[ "$(kc get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
wait_for 90 "node $NODE Ready" node_ready
alive kube-proxy
# The controller-manager's node-ipam controller assigns the podCIDR some time after the
# node registers; on a busy machine that can be after the node turns Ready.
pod_cidr_assigned() { [[ -n "$(kc get node "$NODE" -o jsonpath='{.spec.podCIDR}')" ]]; }
wait_for 90 "node $NODE podCIDR assigned" pod_cidr_assigned
got_cidr=$(kc get node "$NODE" -o jsonpath='{.spec.podCIDR}')
[[ "$got_cidr" == "$NODE_POD_CIDR" ]] || die "node podCIDR is $got_cidr, the CNI config expects $NODE_POD_CIDR"
done_step "node Ready (kubelet, kube-proxy)"

# --- add-ons -----------------------------------------------------------------------------
install -m 0600 "$KCFG/admin.conf" "$CLUSTER_KUBECONFIG"
ln -sfn "$BIN" "$(dirname "$CLUSTER_KUBECONFIG")/bin" # bin/cluster/bin/kubectl etc.
export BIN
"$ROOT/hack/cluster/addons.sh" "$HOLDER" || die "add-ons failed"
done_step "add-ons: StorageClass, CoreDNS, cert-manager"

touch "$CLUSTER_STATE/up-complete"
log "cluster up in $((SECONDS - T0))s"
log "kubeconfig: $CLUSTER_KUBECONFIG (https://127.0.0.1:$CLUSTER_API_PORT, on the host and inside)"
log "try:        KUBECONFIG=$CLUSTER_KUBECONFIG $(dirname "$CLUSTER_KUBECONFIG")/bin/kubectl get nodes"
log "try:        hack/cluster/in-ns kubectl get pods -A"
log "logs:       $CLUSTER_STATE/logs"
