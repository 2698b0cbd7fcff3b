#!/usr/bin/env bash
# Checks that the local cluster (hack/cluster/up.sh) really works: the node is Ready, a pod
# runs from an imported image, a Service answers by DNS name from another pod, a PVC binds
# and is writable, and cert-manager issues a self-signed Certificate. Cleans up after itself.
#
#   hack/cluster/smoke.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"
# shellcheck source=lib.sh
source "$ROOT/hack/cluster/lib.sh"
NS=dockyard-smoke
T0=$SECONDS
STEP_T=$SECONDS
k() { "$ROOT/hack/cluster/in-ns" kubectl "$@"; }
ok() { echo "cluster-smoke: ok   $(printf '%-52s %3ss' "$1" $((SECONDS - STEP_T)))"; STEP_T=$SECONDS; }
fail() {
  echo "cluster-smoke: FAIL $*" >&2
  k -n "$NS" get all,pvc,certificate,certificaterequest -o wide >&2 || true
  k -n "$NS" get events --sort-by=.lastTimestamp >&2 || true
  exit 1
}
trap 'k delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true' EXIT

k wait --for=condition=Ready node --all --timeout=60s >/dev/null || fail "node not Ready"
ok "node Ready"

k delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
k create namespace "$NS" >/dev/null
k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: ${CLUSTER_BUSYBOX_IMAGE}
        imagePullPolicy: Never
        command: [/bin/busybox, sh, -c, 'mkdir -p /tmp/www && echo hello-from-\$(busybox hostname) > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www']
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Mi}}
EOF
k -n "$NS" rollout status deployment/web --timeout=90s >/dev/null || fail "Deployment web did not become available"
ok "2 pods running from an imported image"

k -n "$NS" wait --for=jsonpath='{.status.phase}'=Bound pvc/data --timeout=60s >/dev/null || fail "PVC not bound"
ok "PVC bound (default StorageClass, hostPath provisioner)"

k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: ${CLUSTER_BUSYBOX_IMAGE}
    imagePullPolicy: Never
    command: [/bin/busybox, sh, -c]
    args:
    - |
      set -e
      busybox nslookup web.${NS}.svc.${CLUSTER_DOMAIN}
      busybox wget -q -O - http://web/ | busybox grep hello-from-web
      echo written > /data/proof && busybox cat /data/proof
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
EOF
k -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout=90s >/dev/null ||
  { k -n "$NS" logs client >&2 || true; fail "client pod (DNS + Service + PVC write)"; }
k -n "$NS" logs client | grep -q written || fail "client pod did not write to the PVC"
ok "Service DNS + HTTP from another pod, PVC writable"

k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: smoke}
spec:
  secretName: smoke-tls
  commonName: smoke.${NS}.svc
  dnsNames: [smoke.${NS}.svc]
  issuerRef: {name: selfsigned, kind: Issuer}
EOF
k -n "$NS" wait --for=condition=Ready certificate/smoke --timeout=90s >/dev/null || fail "Certificate not issued"
k -n "$NS" get secret smoke-tls -o jsonpath='{.data.tls\.crt}' | base64 -d | grep -q 'BEGIN CERTIFICATE' || fail "no certificate in Secret smoke-tls"
ok "cert-manager issued a self-signed Certificate"

k -n "$NS" logs deploy/web >/dev/null 2>&1 || fail "kubectl logs"
k -n "$NS" exec deploy/web -- /bin/busybox true 2>/dev/null || fail "kubectl exec"
ok "kubectl logs and exec"
echo "cluster-smoke: all checks passed in $((SECONDS - T0))s"
