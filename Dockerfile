# syntax=docker/dockerfile:1
# The one dockyard image: the operator (`dockyard manager`) and the registry workload
# (`dockyard registry serve|gc`). Build: make docker-build IMG=<image>
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 -t <image> .

# Build on the build host's platform and cross-compile (pure Go, CGO off).
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev

WORKDIR /src
# Dependencies first, so source edits do not re-download modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /dockyard ./cmd

# Static, shell-less, non-root base: nothing to patch but the binary.
FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="dockyard" \
      org.opencontainers.image.description="Kubernetes operator and workload for private OCI registries" \
      org.opencontainers.image.source="https://github.com/dockyard-dev/dockyard" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /dockyard /dockyard
USER 65532:65532
ENTRYPOINT ["/dockyard"]
