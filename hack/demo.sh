#!/usr/bin/env bash
# `make demo`: Dockyard end to end in one command.
#
#   1. picks a cluster: with no kubeconfig ($KUBECONFIG unset and no ~/.kube/config) it brings
#      up the project's local single-node cluster (hack/cluster/up.sh); with a kubeconfig it
#      deploys to that cluster's current context instead, and says so;
#   2. deploys the operator from config/default with image $IMG;
#   3. creates namespace dockyard-demo with a CA (cert-manager, or openssl where cert-manager
#      is not installed), a user `demo` with a generated password, and a Registry `demo`;
#   4. waits for Ready, pushes a sample image (prints dockyard's version) through a
#      `kubectl port-forward` with crane, pulls it back and compares digests; on the local
#      cluster a pod on the node also runs the image pulled from the Registry;
#   5. prints the URL, the credentials and the next commands to try.
#
# Re-running is safe: everything is applied, the password is kept (bin/demo/password).
# Settings: IMG (default dockyard:dev), DEMO_CLUSTER=auto|local|kubeconfig, DEMO_NAMESPACE,
# DEMO_CERT_MANAGER=false (use the openssl CA even where cert-manager is installed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"
# shellcheck source=lib.sh
source "$ROOT/hack/cluster/lib.sh"
IMG=${IMG:-dockyard:dev}
NS=${DEMO_NAMESPACE:-dockyard-demo}
REG=demo
USER_NAME=demo
DEMO_DIR=$ROOT/bin/demo
KUSTOMIZE=$ROOT/bin/kustomize-$KUSTOMIZE_VERSION
CRANE_VERSION=$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/google/go-containerregistry)
T0=$SECONDS
STEP_T=$SECONDS
log() { echo "demo: $*" >&2; }
step() { log "$(printf '%-60s %4ss' "$1" $((SECONDS - STEP_T)))"; STEP_T=$SECONDS; }
die() { log "ERROR: $*"; exit 1; }
PF_PID=
cleanup() { [[ -z "$PF_PID" ]] || kill "$PF_PID" 2>/dev/null || true; }
trap cleanup EXIT

mkdir -p "$DEMO_DIR"
chmod 700 "$DEMO_DIR"

# --- 1. the cluster ----------------------------------------------------------------------
mode=${DEMO_CLUSTER:-auto}
if [[ "$mode" == auto ]]; then
  if [[ -n "${KUBECONFIG:-}" || -f "$HOME/.kube/config" ]]; then mode=kubeconfig; else mode=local; fi
fi
case "$mode" in
local)
  log "no kubeconfig configured: bringing up the local single-node cluster (make cluster-up; cold ~10 min of builds, warm ~25 s)"
  "$ROOT/hack/cluster/up.sh"
  "$ROOT/hack/cluster/import-image.sh" "$ROOT/bin/images/dockyard.tar" >/dev/null
  export KUBECONFIG=$CLUSTER_KUBECONFIG
  KUBECTL=$(cluster_bin_dir)/kubectl
  step "local cluster up, image $IMG imported"
  ;;
kubeconfig)
  KUBECTL=$(command -v kubectl) || die "kubectl is not on PATH"
  ctx=$("$KUBECTL" config current-context 2>/dev/null) || die "the kubeconfig (${KUBECONFIG:-~/.kube/config}) has no current context; set one, or run DEMO_CLUSTER=local make demo"
  server=$("$KUBECTL" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  "$KUBECTL" get --raw /readyz >/dev/null 2>&1 || die "the cluster of context $ctx ($server) does not answer; fix the kubeconfig, or run DEMO_CLUSTER=local make demo for the local cluster"
  log "deploying to the cluster in your kubeconfig: context $ctx ($server)"
  if [[ "$IMG" == dockyard:dev ]]; then
    if [[ "$ctx" == kind-* ]] && command -v kind >/dev/null; then
      kind load image-archive "$ROOT/bin/images/dockyard.tar" --name "${ctx#kind-}"
      step "image $IMG loaded into kind cluster ${ctx#kind-}"
    else
      die "IMG=dockyard:dev exists only on this machine; push the image where your nodes can pull it and pass it:
  make docker-build docker-push IMG=registry.example.com/dockyard:$(cat "$ROOT/VERSION") && make demo IMG=registry.example.com/dockyard:$(cat "$ROOT/VERSION")"
    fi
  fi
  ;;
*) die "DEMO_CLUSTER must be auto, local or kubeconfig, not $mode" ;;
esac
k() { "$KUBECTL" "$@"; }

# --- 2. the operator ---------------------------------------------------------------------
overlay=$(mktemp -d)
trap 'cleanup; rm -rf "$overlay"' EXIT
cat > "$overlay/kustomization.yaml" <<EOF
resources:
- $(realpath --relative-to="$overlay" "$ROOT/config/default")
images:
- name: controller
  newName: ${IMG%:*}
  newTag: ${IMG##*:}
patches:
- target: {kind: Deployment, name: dockyard-controller-manager}
  patch: |-
    - op: replace
      path: /spec/template/spec/containers/0/env/0
      value: {name: DOCKYARD_IMAGE, value: "$IMG"}
EOF
"$KUSTOMIZE" build "$overlay" | k apply --server-side --force-conflicts -f - >/dev/null
k -n dockyard-system rollout status deployment/dockyard-controller-manager --timeout=180s >/dev/null ||
  { k -n dockyard-system get pods -o wide >&2; die "the operator did not become ready"; }
step "operator deployed (namespace dockyard-system, image $IMG)"

# --- 3. the Registry ---------------------------------------------------------------------
k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
k label namespace "$NS" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
if [[ ! -s "$DEMO_DIR/password" ]]; then
  (umask 077; openssl rand -base64 18 | tr -d '/+=\n' > "$DEMO_DIR/password")
fi
PASSWORD=$(cat "$DEMO_DIR/password")
(cd "$ROOT" && go build -o bin/dockyard ./cmd)
htline=$(printf '%s' "$PASSWORD" | "$ROOT/bin/dockyard" registry htpasswd "$USER_NAME")
k -n "$NS" create secret generic demo-users --from-literal=htpasswd="$htline" --dry-run=client -o yaml | k apply -f - >/dev/null

if [[ "${DEMO_CERT_MANAGER:-auto}" != false ]] && k get crd certificates.cert-manager.io >/dev/null 2>&1; then
  log "cert-manager found: a self-signed CA Issuer will issue the registry's certificate"
  k apply -f - >/dev/null <<EOF
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: selfsigned, namespace: $NS}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: demo-ca, namespace: $NS}
spec:
  isCA: true
  commonName: dockyard demo CA
  secretName: demo-ca
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned, kind: Issuer}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: demo-ca, namespace: $NS}
spec: {ca: {secretName: demo-ca}}
EOF
  k -n "$NS" wait --for=condition=Ready certificate/demo-ca --timeout=120s >/dev/null || die "cert-manager did not issue the demo CA"
  TLS="issuerRef: {kind: Issuer, name: demo-ca}
    dnsNames: [localhost]"
  CA_SECRET=demo-ca
else
  log "cert-manager not installed (or DEMO_CERT_MANAGER=false): making a CA and a certificate with openssl (a Secret, tls.secretRef)"
  if ! k -n "$NS" get secret demo-tls >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=dockyard demo CA" \
      -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$REG.$NS.svc" \
      -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
      "$REG" "$REG" "$NS" "$REG" "$NS" "$REG" "$NS" > "$tmp/ext"
    openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial -days 90 \
      -extfile "$tmp/ext" -out "$tmp/tls.crt" 2>/dev/null
    k -n "$NS" create secret tls demo-tls --cert="$tmp/tls.crt" --key="$tmp/tls.key" >/dev/null
    k -n "$NS" create secret generic demo-ca --from-file=tls.crt="$tmp/ca.crt" >/dev/null
    rm -rf "$tmp"
  fi
  TLS="secretRef: {name: demo-tls}"
  CA_SECRET=demo-ca
fi
k apply -f - >/dev/null <<EOF
apiVersion: registry.dockyard.dev/v1alpha1
kind: Registry
metadata: {name: $REG, namespace: $NS}
spec:
  storage:
    filesystem: {size: 2Gi}
  tls:
    $TLS
  auth:
    usersSecretRef: {name: demo-users}
    access:
    - subjects: [{kind: User, name: $USER_NAME}]
      repositories: ["**"]
      role: Manager
  garbageCollection: {schedule: "0 3 * * *", deleteUntagged: true}
EOF
step "Registry $NS/$REG applied"
if ! k -n "$NS" wait --for=condition=Ready "registry/$REG" --timeout=300s >/dev/null; then
  k -n "$NS" get registry "$REG" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2
  die "Registry $NS/$REG did not become Ready in 5 minutes"
fi
URL=$(k -n "$NS" get registry "$REG" -o jsonpath='{.status.url}')
step "Registry Ready: $URL"

# --- 4. push and pull --------------------------------------------------------------------
CRANE=$(go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION")
ln -sfn "$CRANE" "$ROOT/bin/crane-$CRANE_VERSION"
k -n "$NS" get secret "$CA_SECRET" -o jsonpath='{.data.tls\.crt}' | base64 -d > "$DEMO_DIR/ca.crt"
# A port on the host's loopback, chosen by kubectl; the certificate names localhost.
k -n "$NS" port-forward "svc/$REG" :5000 > "$DEMO_DIR/port-forward.log" 2>&1 &
PF_PID=$!
for _ in $(seq 60); do
  PORT=$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\) .*/\1/p' "$DEMO_DIR/port-forward.log" | head -1)
  [[ -n "$PORT" ]] && break
  kill -0 "$PF_PID" 2>/dev/null || break
  sleep 0.5
done
[[ -n "${PORT:-}" ]] || die "kubectl port-forward did not start: $(cat "$DEMO_DIR/port-forward.log")"
crane() { SSL_CERT_FILE="$DEMO_DIR/ca.crt" DOCKER_CONFIG="$DEMO_DIR/docker" "$CRANE" "$@"; }
printf '%s' "$PASSWORD" | crane auth login "localhost:$PORT" -u "$USER_NAME" --password-stdin >/dev/null 2>&1 ||
  die "crane could not log in to localhost:$PORT as $USER_NAME"
# The sample: a small image whose entrypoint prints dockyard's version. It must not be the
# operator's own image: once the kubelet pulls an image ID with a pull secret it stops
# treating that ID as preloaded (KEP-2535) and would try to re-pull dockyard:dev.
SAMPLE=samples/hello:v1
(cd "$ROOT" && go run ./hack/imagetar --tag "$SAMPLE" --out "$DEMO_DIR/sample.tar" \
  --file bin/linux/dockyard:/dockyard:0755 --entrypoint "/dockyard version")
crane push "$DEMO_DIR/sample.tar" "localhost:$PORT/$SAMPLE" >/dev/null 2>"$DEMO_DIR/crane.log" ||
  die "push failed: $(cat "$DEMO_DIR/crane.log")"
pushed=$(crane digest --tarball "$DEMO_DIR/sample.tar")
served=$(crane digest "localhost:$PORT/$SAMPLE")
crane pull "localhost:$PORT/$SAMPLE" "$DEMO_DIR/pulled.tar"
pulled=$(crane digest --tarball "$DEMO_DIR/pulled.tar")
[[ "$pushed" == "$served" && "$pushed" == "$pulled" ]] ||
  die "digests differ: pushed $pushed, registry says $served, pulled $pulled"
step "pushed and pulled $SAMPLE ($pushed)"

# On the local cluster the node can be told to trust the CA (containerd's certs.d), so a
# pod runs the image pulled from the Registry, as a Deployment in the cluster would.
if [[ "$mode" == local ]]; then
  host=$REG.$NS.svc.cluster.local:5000
  certs=$CLUSTER_STATE/certs.d/$host
  mkdir -p "$certs"
  cp "$DEMO_DIR/ca.crt" "$certs/ca.crt"
  printf 'server = "https://%s"\n\n[host."https://%s"]\n  capabilities = ["pull", "resolve"]\n  ca = "%s"\n' \
    "$host" "$host" "$certs/ca.crt" > "$certs/hosts.toml"
  k -n "$NS" create secret docker-registry demo-pull --docker-server="$host" --docker-username="$USER_NAME" \
    --docker-password="$PASSWORD" --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n "$NS" delete pod demo-run --ignore-not-found >/dev/null
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: demo-run, namespace: $NS}
spec:
  restartPolicy: Never
  imagePullSecrets: [{name: demo-pull}]
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: run
    image: $host/$SAMPLE
    imagePullPolicy: Always
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
  if k -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/demo-run --timeout=120s >/dev/null; then
    step "a pod on the node ran $host/$SAMPLE (printed: $(k -n "$NS" logs demo-run))"
  else
    k -n "$NS" describe pod demo-run | tail -15 >&2
    die "the pod could not run the image from the Registry"
  fi
fi
kill "$PF_PID" 2>/dev/null || true
PF_PID=

# --- 5. what next ------------------------------------------------------------------------
crane_cmd=bin/crane-$CRANE_VERSION
if [[ "$mode" == local ]]; then
  kubectl_cmd="KUBECONFIG=bin/cluster/kubeconfig $(command -v kubectl >/dev/null && echo kubectl || echo bin/cluster/bin/kubectl)"
  where="the local cluster (stop it with: make cluster-down)"
else
  kubectl_cmd=kubectl
  where="context $ctx"
fi
cat <<EOF

Dockyard demo is up on $where, in $((SECONDS - T0)) s.

  Registry     $NS/$REG    (kubectl -n $NS get registry $REG)
  In-cluster   $URL   (also $REG.$NS.svc.cluster.local:5000)
  User         $USER_NAME   (Manager on every repository)
  Password     $PASSWORD   (saved in bin/demo/password)
  CA           bin/demo/ca.crt

Next (from $ROOT):
  $kubectl_cmd -n $NS port-forward svc/$REG 5000:5000 &
  SSL_CERT_FILE=bin/demo/ca.crt $crane_cmd auth login localhost:5000 -u $USER_NAME --password-stdin < bin/demo/password
  SSL_CERT_FILE=bin/demo/ca.crt $crane_cmd catalog localhost:5000
  $kubectl_cmd -n $NS get registry,deploy,pods,pvc,certificate,cronjob
  $kubectl_cmd -n $NS create job gc-now --from=cronjob/$REG-gc    # GC now, then: get registry $REG -o jsonpath='{.status.lastGarbageCollection}'
  $kubectl_cmd -n $NS patch registry $REG --type merge -p '{"spec":{"auth":{"anonymousPull":true}}}'
  printf '%s' 'new-password' | bin/dockyard registry htpasswd bob    # a line for the users Secret
EOF
