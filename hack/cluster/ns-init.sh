#!/usr/bin/env bash
# First process of the local cluster's private network and mount namespaces; started by
# hack/cluster/up.sh as
#   unshare --net --mount --propagation private -- cluster-ns-init.sh STATE NODE_IP DNS_IP DOMAIN
# Prepares the namespaces, writes STATE/ns-ready and then idles so the namespaces live on until
# hack/cluster/down.sh stops it. Nothing here is visible from, or changes, the host.
set -euo pipefail
STATE=$1 NODE_IP=$2 DNS_IP=$3 DOMAIN=$4
log() { echo "cluster-ns-init: $*" >&2; }

# --- mount namespace --------------------------------------------------------------------
# Private /run, /var/lib and /var/log backed by the state dir (containerd, kubelet, pod logs).
# Shared *within* this namespace so the kubelet's volume mounts propagate into containers.
for d in run var/lib var/log; do
  mkdir -p "$STATE/root/$d"
  mount --bind "$STATE/root/$d" "/$d"
  mount --make-rshared "/$d"
done
# The in-tree hostPath provisioner (the default StorageClass) writes under /tmp/hostpath_pv.
mkdir -p "$STATE/hostpath_pv"
mount --bind "$STATE/hostpath_pv" /tmp/hostpath_pv
mount --make-rshared /tmp/hostpath_pv

# The node itself (containerd pulling from an in-cluster registry, commands run through
# hack/cluster/in-ns) resolves cluster names through CoreDNS; the host has no route out of here.
mkdir -p "$STATE/config"
printf 'nameserver %s\nsearch svc.%s %s\noptions ndots:5\n' "$DNS_IP" "$DOMAIN" "$DOMAIN" > "$STATE/config/node-resolv.conf"
mount --bind "$STATE/config/node-resolv.conf" /etc/resolv.conf

# A fresh sysfs shows this namespace's network devices; re-attach the cgroup hierarchies
# (cgroup v1 hybrid here; a cgroup2-only host gets cgroup2).
cgroups=$(findmnt -rn -t cgroup,cgroup2 -o TARGET,FSTYPE,FS-OPTIONS)
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
if [[ -z "$cgroups" || "$(echo "$cgroups" | head -1 | cut -d' ' -f1)" == /sys/fs/cgroup ]]; then
  umount /sys/fs/cgroup
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
else
  while read -r target fstype opts; do
    mkdir -p "$target"
    mount -t "$fstype" -o "$opts" "$fstype" "$target"
  done <<<"$cgroups"
fi

# The kubelet "fixes" a few global kernel sysctls (vm.overcommit_memory, kernel.panic,
# kernel.panic_on_oops) that are not namespaced. Show it the values it wants, from files
# bind-mounted over them in this mount namespace, so the host's values are never written.
want() { # want SYSCTL-PATH VALUE
  local f="/proc/sys/$1" copy="$STATE/sysctl/${1//\//_}"
  [[ "$(cat "$f")" == "$2" ]] && return 0
  mkdir -p "$STATE/sysctl" && echo "$2" > "$copy"
  mount --bind "$copy" "$f"
}
want vm/overcommit_memory 1
want vm/panic_on_oom 0
want kernel/panic 10
want kernel/panic_on_oops 1
want kernel/keys/root_maxkeys 1000000
want kernel/keys/root_maxbytes 25000000

# --- network namespace ------------------------------------------------------------------
# The node's address sits on an ifb device (no `dummy` driver on this kernel); the default
# route points into it, and ifb drops what it is given: nothing leaves the namespace.
ip link set lo up
ip link add node0 type ifb
ip addr add "$NODE_IP/24" dev node0
ip link set node0 up
ip route add default dev node0
echo 1 > /proc/sys/net/ipv4/ip_forward
# Service traffic between pods on the same bridge goes through iptables (per-namespace sysctl).
if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
else
  log "br_netfilter not loaded: same-node Service traffic relies on kube-proxy masquerading"
fi

touch "$STATE/ns-ready"
exec sleep infinity
