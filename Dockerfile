# syntax=docker/dockerfile:1
#
# Two images from one build:
#
#   docker build -t mcp-gateway:0.1.0 .
#       distroless, non-root (UID 65532): mcp-gateway plus the built-in mcp-fixture and
#       mcp-shell servers. Serves remote backends (sse, streamable-http) and built-in stdio ones.
#
#   docker build --target node -t mcp-gateway:0.1.0-node .
#       the same binaries on Debian with Node.js, Python 3 and uv, so `npx ...` and `uvx ...`
#       stdio backends run inside the pod. Non-root; HOME (/home/mcp) holds the package caches
#       and should be a writable volume when the root filesystem is read-only (the Helm chart
#       mounts an emptyDir there).
#
# The default target (the last stage) is the distroless image.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=22
ARG PYTHON_VERSION=3.12
ARG UV_VERSION=0.13.8

# ---- build ---------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Registry, git checkouts and target/ live in BuildKit cache mounts: a rebuild after a source
# change recompiles only the workspace crates, not the dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && cp target/release/mcp-gateway target/release/mcp-fixture target/release/mcp-shell /out/

# ---- Node.js, copied into the node variant ------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS nodejs

# ---- node variant: Node.js + Python 3 + uv, for npx/uvx stdio backends --------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS node
ARG UV_VERSION
LABEL org.opencontainers.image.title="mcp-gateway (node)" \
      org.opencontainers.image.description="One MCP endpoint for every MCP server; with Node.js, Python and uv for npx/uvx stdio servers." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=nodejs /usr/local/bin/node /usr/local/bin/node
COPY --from=nodejs /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && groupadd --gid 65532 mcp \
    && useradd --no-log-init --uid 65532 --gid 65532 --home-dir /home/mcp --create-home \
       --shell /usr/sbin/nologin mcp \
    && node --version && npx --version && uvx --version
COPY --from=builder /out/ /usr/local/bin/
ENV HOME=/home/mcp \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/mcp
USER 65532:65532
EXPOSE 8900
ENTRYPOINT ["mcp-gateway"]
CMD ["serve", "--host", "0.0.0.0"]

# ---- default: distroless runtime ----------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="mcp-gateway" \
      org.opencontainers.image.description="One MCP endpoint for every MCP server: stdio, SSE and streamable-HTTP backends behind /mcp and /sse." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 8900
ENTRYPOINT ["mcp-gateway"]
CMD ["serve", "--host", "0.0.0.0"]
