#!/usr/bin/env bash
# Installs the local cluster's add-ons: the default StorageClass (in-tree hostPath
# provisioner), CoreDNS and cert-manager. Called by hack/cluster/up.sh with the PID holding
# the cluster's namespaces; manifests are rendered here (no helm), images were imported from
# $DOCKYARD_CACHE/cluster/<key>/images and are never pulled (imagePullPolicy: Never).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"
# shellcheck source=lib.sh
source "$ROOT/hack/cluster/lib.sh"
HOLDER=$1
BIN=${BIN:-$(cluster_bin_dir)}
log() { echo "cluster-addons: $*" >&2; }
kc() {
  nsenter --target "$HOLDER" --net --mount --wd="$ROOT" -- \
    env KUBECONFIG="$CLUSTER_STATE/kubeconfig/super-admin.conf" "$BIN/kubectl" "$@"
}

# --- StorageClass ------------------------------------------------------------------------
kc apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF

# --- CoreDNS (cluster names only: the node has no upstream DNS) ----------------------------
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # Only the plugins in CLUSTER_COREDNS_PLUGINS (hack/cluster/lib.sh) are compiled in.
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        cache 30
        loop
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
      - name: coredns
        image: ${CLUSTER_COREDNS_IMAGE}
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
        resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {memory: 128Mi}}
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
          readOnlyRootFilesystem: true
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: ${CLUSTER_DNS_IP}
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
EOF
log "CoreDNS applied"

# --- cert-manager ------------------------------------------------------------------------
# The CRDs (copied from the module's deploy/crds by cluster-bins.sh) carry helm label
# templates; render them with fixed values.
for f in "$BIN"/cert-manager/crd-*.yaml; do
  sed -e "s/'{{ template \"cert-manager.name\" . }}'/cert-manager/" -e "s/'{{ .Release.Name }}'/cert-manager/" \
    -e '/# Generated labels/d' "$f"
  echo "---"
done | kc apply --server-side -f - >/dev/null

# One Deployment per component. For a throwaway local cluster each ServiceAccount is bound to
# cluster-admin rather than carrying the chart's dozen ClusterRoles.
cm_component() { # cm_component NAME BINARY EXTRA-YAML-FOR-CONTAINER
  cat <<EOF
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cert-manager-$1, namespace: cert-manager}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "dockyard-cluster:cert-manager-$1"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: cert-manager-$1, namespace: cert-manager}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cert-manager-$1, namespace: cert-manager, labels: {app.kubernetes.io/name: cert-manager-$1}}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: cert-manager-$1}}
  template:
    metadata: {labels: {app.kubernetes.io/name: cert-manager-$1}}
    spec:
      serviceAccountName: cert-manager-$1
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: $1
        image: $(cert_manager_image "$2")
        imagePullPolicy: Never
        env: [{name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
        resources: {requests: {cpu: 10m, memory: 32Mi}}
$3
EOF
}
{
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata: {name: cert-manager}"
  cm_component controller controller '        args: [--v=2, --cluster-resource-namespace=$(POD_NAMESPACE), --leader-election-namespace=kube-system, --max-concurrent-challenges=60]'
  cm_component cainjector cainjector '        args: [--v=2, --leader-election-namespace=kube-system]'
  cm_component webhook webhook '        args: [--v=2, --secure-port=10250, --dynamic-serving-ca-secret-namespace=$(POD_NAMESPACE), --dynamic-serving-ca-secret-name=cert-manager-webhook-ca, --dynamic-serving-dns-names=cert-manager-webhook, --dynamic-serving-dns-names=cert-manager-webhook.$(POD_NAMESPACE), --dynamic-serving-dns-names=cert-manager-webhook.$(POD_NAMESPACE).svc]
        ports: [{name: https, containerPort: 10250}, {name: healthcheck, containerPort: 6080}]
        readinessProbe: {httpGet: {path: /healthz, port: 6080}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /livez, port: 6080}, periodSeconds: 10}'
  cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: cert-manager-webhook, namespace: cert-manager}
spec:
  selector: {app.kubernetes.io/name: cert-manager-webhook}
  ports: [{name: https, port: 443, targetPort: https}]
EOF
  for kind in Validating Mutating; do
    path=/validate; [[ $kind == Mutating ]] && path=/mutate
    cat <<EOF
---
apiVersion: admissionregistration.k8s.io/v1
kind: ${kind}WebhookConfiguration
metadata:
  name: cert-manager-webhook
  annotations: {cert-manager.io/inject-ca-from-secret: cert-manager/cert-manager-webhook-ca}
webhooks:
- name: webhook.cert-manager.io
  rules:
  - {apiGroups: [cert-manager.io, acme.cert-manager.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: ["*/*"]}
  admissionReviewVersions: [v1]
  matchPolicy: Equivalent
  timeoutSeconds: 10
  failurePolicy: Fail
  sideEffects: None
  clientConfig: {service: {name: cert-manager-webhook, namespace: cert-manager, path: $path}}
EOF
  done
} | kc apply -f - >/dev/null
log "cert-manager ${CLUSTER_CERT_MANAGER_VERSION} applied"

kc -n kube-system wait --for=condition=Available deployment/coredns --timeout=120s >/dev/null
log "CoreDNS available"
kc -n cert-manager wait --for=condition=Available deployment --all --timeout=180s >/dev/null
# Ready only once the API server can call the webhook (its CA injected by the cainjector).
end=$((SECONDS + 120))
until kc create --dry-run=server -f - >/dev/null 2>&1 <<EOF
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: dockyard-cluster-probe}
spec: {selfSigned: {}}
EOF
do
  [[ $SECONDS -lt $end ]] || { log "cert-manager webhook not answering after 120s"; exit 1; }
  sleep 1
done
log "cert-manager available (webhook answering)"
