#!/usr/bin/env bash
# Regenerate the McpBackend CRD from the Rust types and copy it where it is shipped:
#
#   crds/mcpbackends.yaml                      the source of truth (`mcp-gateway crd`)
#   charts/mcp-gateway/crds/mcpbackends.yaml   installed by Helm before the templates
#   deploy/crds/mcpbackends.yaml               part of the plain manifests (kubectl apply -k deploy/)
#
#   ./scripts/sync-crd.sh          (after `cargo build`; MCP_GATEWAY_BIN overrides the binary)
#
# tests/e2e/test_chart.py fails while any copy differs from crds/mcpbackends.yaml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${MCP_GATEWAY_BIN:-$ROOT/target/debug/mcp-gateway}"

[[ -x "$BIN" ]] || { echo "sync-crd: $BIN not found: run 'cargo build' first" >&2; exit 1; }

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
"$BIN" crd >"$tmp"
[[ -s "$tmp" ]] || { echo "sync-crd: '$BIN crd' printed nothing" >&2; exit 1; }

for dest in crds charts/mcp-gateway/crds deploy/crds; do
  mkdir -p "$ROOT/$dest"
  cp "$tmp" "$ROOT/$dest/mcpbackends.yaml"
  echo "sync-crd: wrote $dest/mcpbackends.yaml"
done
