# Dockyard — a Kubernetes operator that runs private OCI registries.
# `make help` lists the targets. Tool versions are pinned in hack/versions.env and built
# from the Go module proxy into bin/ (nothing is downloaded as a prebuilt binary).

include hack/versions.env

IMG ?= dockyard:dev
GOBIN_DIR := $(CURDIR)/bin
# Tools are built once per version into a cache outside the clone (see hack/lib.sh) and
# linked from bin/.
CONTROLLER_GEN := $(GOBIN_DIR)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE := $(GOBIN_DIR)/kustomize-$(KUSTOMIZE_VERSION)
GOLANGCI_LINT := $(GOBIN_DIR)/golangci-lint-$(GOLANGCI_LINT_VERSION)
GO_TEST_FLAGS ?=
# Every compile of Dockyard's own code (go vet, the tests, the e2e suite, the image binary)
# uses the same settings, so a cold build cache compiles Dockyard's dependency tree once:
# before, the image binary (static, trimmed paths) compiled all of it a second time.
export CGO_ENABLED := 0
export GOFLAGS := $(strip $(GOFLAGS) -trimpath)

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from the API types and kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=manager crd:allowDangerousTypes=false webhook paths="./api/..." paths="./internal/controller/..." paths="./internal/admission/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (config in .golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: tidy
tidy: ## go mod tidy.
	go mod tidy

.PHONY: shellcheck
shellcheck: ## shellcheck every script under hack/ (warnings and errors).
	@command -v shellcheck >/dev/null || { echo "shellcheck: apt-get install shellcheck"; exit 1; }
	shellcheck -S warning -x $$(git ls-files 'hack/*.sh' hack/cluster/in-ns .ci/run)

.PHONY: verify
verify: tidy generate manifests bundle chart fmt ## Tidy modules, regenerate code, manifests, the bundle and the Helm chart; fail on any change anywhere in the tree.
	@if [ -n "$$(git status --porcelain)" ]; then \
		echo "verify: the tree changed; run 'make tidy generate manifests bundle chart fmt' and commit:"; \
		git status --porcelain; git --no-pager diff --stat; exit 1; fi
	@echo "verify: generated files and go.mod are up to date"

##@ Test

.PHONY: test
test: manifests generate vet envtest-bins versitygw dex scantools promtool test-deps $(KUSTOMIZE) ## Run unit, registry (real HTTP, real S3 server, LDAP directory, OIDC provider, real skopeo, cosign and Trivy) and envtest tests.
	DOCKYARD_REQUIRE_CLIENTS=1 KUBEBUILDER_ASSETS="$$(hack/build-envtest.sh)" DOCKYARD_DEX="$$(hack/build-dex.sh)" DOCKYARD_COSIGN="$$(hack/build-scantools.sh cosign)" DOCKYARD_TRIVY="$$(hack/build-scantools.sh trivy)" DOCKYARD_PROMTOOL="$$(hack/build-promtool.sh)" go test $(GO_TEST_FLAGS) ./... -count=1 -timeout 30m

.PHONY: tools
tools: ## Build every tool CI uses (cluster binaries, envtest, Trivy, cosign, dex, versitygw, linters) into the tool cache, and compile Dockyard, four builders side by side (CI's first step).
	hack/build-tools.sh

.PHONY: test-deps
test-deps: ## Install what the tests and checks use from Debian when missing: skopeo (a real registry client), shellcheck, slapd (a real LDAP directory).
	@hack/test-deps.sh

.PHONY: envtest-bins
envtest-bins: ## Build kube-apiserver and etcd for envtest into the tool cache (~/.cache/dockyard/envtest).
	@hack/build-envtest.sh >/dev/null

.PHONY: dex
dex: ## Build dex, the OIDC provider the OIDC tests run against (tool cache; ~9 min cold).
	@hack/build-dex.sh >/dev/null

.PHONY: scantools
scantools: ## Build Trivy (the vulnerability scanner) and cosign (signs test images offline) together into the tool cache (~20 min cold).
	@hack/build-scantools.sh trivy >/dev/null

.PHONY: promtool
promtool: ## Put promtool (from Debian's prometheus package; seconds) into the tool cache: it checks and unit-tests the alerts.
	@hack/build-promtool.sh >/dev/null

.PHONY: versitygw
versitygw: ## Build the versitygw S3 server (tool cache) the S3 storage tests run against.
	@hack/build-versitygw.sh >/dev/null

.PHONY: conformance
conformance: ## OCI distribution-spec 1.1 conformance suite against `dockyard registry serve` (fails on any failure).
	hack/conformance.sh

.PHONY: bench-registry
bench-registry: ## Benchmark `dockyard registry serve` against upstream distribution (push, pull, HEAD; same client).
	hack/bench-registry.sh

.PHONY: test-e2e
test-e2e: $(KUSTOMIZE) image-tar ## Run test/e2e on the local cluster (make cluster-up first), inside its namespaces.
	hack/e2e-images.sh
	hack/cluster/import-image.sh bin/images/dockyard.tar bin/images/dex.tar bin/images/crane.tar bin/images/trivy.tar
	go test -c -tags e2e -o bin/e2e.test ./test/e2e
	cd test/e2e && ../../hack/cluster/in-ns env E2E_CONTAINERD_CERTS_DIR=$(CURDIR)/bin/cluster/state/certs.d KUSTOMIZE=$(KUSTOMIZE) DOCKYARD_REQUIRE_CLIENTS=1 DOCKYARD_COSIGN="$$(../../hack/build-scantools.sh cosign)" ../../bin/e2e.test -ginkgo.v $(E2E_FLAGS)

.PHONY: demo
demo: $(KUSTOMIZE) image-tar ## The main job: a local cluster (or your kubeconfig's), the operator, a Registry, push + pull; prints URL and credentials.
	IMG=$(IMG) hack/demo.sh

.PHONY: bench
bench: envtest-bins ## Benchmark: 1,000 Registries on envtest (BENCH_REGISTRIES=N; time to reconcile, writes per Registry, peak RSS, live heap).
	KUBEBUILDER_ASSETS="$$(hack/build-envtest.sh)" go test ./test/bench/ -run '^$$' -bench BenchmarkReconcile -benchtime 1x -timeout 40m -v

##@ Build

.PHONY: build
build: ## Build the dockyard binary (manager and registry workload) into bin/.
	CGO_ENABLED=0 go build -trimpath -o bin/dockyard ./cmd

.PHONY: run
run: manifests generate ## Run the manager against the cluster in ~/.kube/config.
	go run ./cmd manager

.PHONY: image-tar
image-tar: ## Build the dockyard image as a tarball (bin/images/dockyard.tar, tag $(IMG)) without Docker.
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags "-s -w -X main.version=$$(cat VERSION)" -o bin/linux/dockyard ./cmd
	go run ./hack/imagetar --tag $(IMG) --out bin/images/dockyard.tar --file bin/linux/dockyard:/dockyard:0755 --entrypoint /dockyard --user 65532:65532

.PHONY: docker-build
docker-build: ## Build the dockyard image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the dockyard image $(IMG) (needs a Docker engine).
	docker push $(IMG)

##@ Deployment

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRDs into the current cluster.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator (config/default) with image $(IMG).
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the operator (Registries' retained volumes stay).
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

.PHONY: bundle
bundle: manifests $(KUSTOMIZE) ## Write the OLM bundle (bundle/, bundle.Dockerfile) from config/ for image $(IMG).
	$(KUSTOMIZE) build config/manifests | go run ./hack/bundlegen --out bundle --dockerfile bundle.Dockerfile --version $$(cat VERSION) --image $(IMG)

.PHONY: chart
chart: manifests $(KUSTOMIZE) ## Write the Helm chart (charts/dockyard) from config/default and config/monitoring for image $(IMG).
	$(KUSTOMIZE) build config/monitoring > bin/monitoring.yaml
	$(KUSTOMIZE) build config/default | go run ./hack/chartgen --out charts/dockyard --version $$(cat VERSION) --image $(IMG) --monitoring bin/monitoring.yaml

##@ Local cluster

.PHONY: cluster-bins
cluster-bins: ## Build the local cluster's binaries and images into the tool cache (~/.cache/dockyard/cluster; cold ~12 min).
	@hack/cluster/bins.sh >/dev/null

.PHONY: cluster-up
cluster-up: ## Start a real single-node cluster in private namespaces; then: hack/cluster/in-ns kubectl get nodes.
	hack/cluster/up.sh

.PHONY: cluster-smoke
cluster-smoke: ## Check the running local cluster: pods, Service DNS, PVC, cert-manager (~6 s).
	hack/cluster/smoke.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove everything it left (idempotent).
	hack/cluster/down.sh

##@ Tools

$(CONTROLLER_GEN):
	GO_TOOL_ALIGN=1 hack/go-tool.sh $@ sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_TOOLS_VERSION)

$(KUSTOMIZE):
	GO_TOOL_ALIGN=1 hack/go-tool.sh $@ sigs.k8s.io/kustomize/kustomize/v5 $(KUSTOMIZE_VERSION)

$(GOLANGCI_LINT):
	hack/go-tool.sh $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)
