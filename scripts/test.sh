#!/usr/bin/env bash
# The project's test command: peers, build, Rust tests, end-to-end suite.
#
#   ./scripts/test.sh [PYTEST ARGS...]
#
# Stages (the first failure stops the run and is named in the summary):
#   1. scripts/install-peers.sh          real MCP peers into .peers/ (skipped when up to date)
#   2. cargo build --workspace --all-targets
#   3. cargo nextest run --workspace     (cargo test --workspace without cargo-nextest)
#   4. scripts/fuzz.sh                   each fuzz target for FUZZ_SECONDS (default 20)
#   5. .peers/py2/bin/python -m pytest tests/e2e -q [PYTEST ARGS...]
#
# Environment: E2E_DIRECT=1 runs the e2e suite against the peers without the gateway;
# SKIP_RUST_TESTS=1 skips stage 3 (the build still runs); SKIP_FUZZ=1 skips stage 4.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$ROOT" || exit 1

# rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

START=$(date +%s)
STAGE_LOG="$(mktemp "${TMPDIR:-/tmp}/mcp-gateway-test.XXXXXX")"
trap 'rm -f "$STAGE_LOG"' EXIT
declare -a DONE=()
PASSED=0 FAILED=0 SKIPPED=0

# count_tests STAGE: add the counts a test runner printed (in $STAGE_LOG) to the totals
num() { grep -oE "[0-9]+ $1" <<<"$2" | head -n1 | grep -oE '^[0-9]+' || echo 0; }
count_tests() {
  local line
  case "$1" in
    rust-tests)
      if line=$(grep -E 'tests? run: ' "$STAGE_LOG" | tail -n1) && [[ -n "$line" ]]; then   # nextest
        PASSED=$((PASSED + $(num passed "$line")))
        FAILED=$((FAILED + $(num failed "$line")))
        SKIPPED=$((SKIPPED + $(num skipped "$line")))
      else                                                                                  # cargo test
        while IFS= read -r line; do
          PASSED=$((PASSED + $(num passed "$line")))
          FAILED=$((FAILED + $(num failed "$line")))
          SKIPPED=$((SKIPPED + $(num ignored "$line")))
        done < <(grep -E '^test result: ' "$STAGE_LOG")
      fi ;;
    e2e)
      line=$(grep -E '([0-9]+ (passed|failed|error|errors|skipped|deselected)).* in [0-9.]+s' "$STAGE_LOG" | tail -n1)
      PASSED=$((PASSED + $(num passed "$line")))
      FAILED=$((FAILED + $(num failed "$line") + $(num error "$line")))
      SKIPPED=$((SKIPPED + $(num skipped "$line"))) ;;
  esac
}

summary() {
  printf '\ntest.sh: %s (total %ss)\n' "$1" "$(( $(date +%s) - START ))"
  printf 'summary: %d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
}

stage() {
  local name="$1"; shift
  local t0 rc dt
  t0=$(date +%s)
  printf '\n==> [%s] %s\n' "$name" "$*"
  "$@" 2>&1 | tee "$STAGE_LOG"
  rc=${PIPESTATUS[0]}
  dt=$(( $(date +%s) - t0 ))
  count_tests "$name"
  if [[ $rc -ne 0 ]]; then
    printf '\ntest.sh: FAILED at stage "%s" (exit %d after %ds): %s\n' "$name" "$rc" "$dt" "$*" >&2
    (( FAILED > 0 )) || FAILED=1  # a failed stage counts even when it ran no tests
    summary "${DONE[*]:+${DONE[*]}; }FAILED: $name"
    exit "$rc"
  fi
  DONE+=("$name ok (${dt}s)")
}

stage peers bash "$SCRIPT_DIR/install-peers.sh"
stage build cargo build --workspace --all-targets

# The transport tests against the real server-everything are #[ignore]d for a bare `cargo test`;
# here the peer is installed, so they run too.
export EVERYTHING_BIN="$ROOT/.peers/node/node_modules/.bin/mcp-server-everything"
if [[ "${SKIP_RUST_TESTS:-}" == "1" ]]; then
  DONE+=("rust tests skipped")
elif cargo nextest --version >/dev/null 2>&1; then
  # --no-tests=pass: a workspace without unit tests is not a failure
  stage rust-tests cargo nextest run --workspace --no-tests=pass --run-ignored all
else
  stage rust-tests cargo test --workspace -- --include-ignored
fi

# The fuzz stage counts no tests: it passes or fails as a whole.
if [[ "${SKIP_FUZZ:-}" == "1" ]]; then
  DONE+=("fuzz skipped")
else
  stage fuzz bash "$SCRIPT_DIR/fuzz.sh"
fi

stage e2e "$ROOT/.peers/py2/bin/python" -m pytest tests/e2e -q "$@"

summary "all stages passed: ${DONE[*]}"
