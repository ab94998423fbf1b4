#!/usr/bin/env bash
# Fuzz smoke run: builds the cargo-fuzz targets in fuzz/ and runs each one for a bounded time
# from its seeds, so that a parser change that panics, breaks a property or hangs on odd input
# fails the test command. Called by scripts/test.sh as the `fuzz` stage.
#
#   ./scripts/fuzz.sh [TARGET...]        (default: every target in fuzz/Cargo.toml)
#
# Environment: FUZZ_SECONDS per target (default 20). Uses the nightly toolchain if present; installs
# cargo-fuzz when missing. Builds into fuzz/target, never the main target/. A crash, failed
# assertion or hang (an input taking over 10 s) exits non-zero and prints the saved input's
# path under fuzz/artifacts/TARGET/ with the command that replays it.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
FUZZ_DIR="$ROOT/fuzz"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Fail at once instead of letting rustup try to download a missing toolchain.
export RUSTUP_AUTO_INSTALL=0

SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: FUZZ_SECONDS must be a positive number of seconds, not '$SECONDS_PER_TARGET'" >&2
  exit 2
fi

# Nightly where it is installed. Without it, the machine's own toolchain with RUSTC_BOOTSTRAP:
# with no sanitizer (-s none, below) the build needs no unstable flag that cargo-fuzz would not
# also accept there.
if cargo +nightly --version >/dev/null 2>&1; then
  TOOLCHAIN=(+nightly)
else
  echo "fuzz.sh: no nightly toolchain; building with $(rustc --version) and RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  TOOLCHAIN=()
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version '^0.13'
fi

# How the targets are built; every `cargo fuzz` call below must use the same options, or it
# rebuilds everything. Cold builds measured on 2 cores shared with other builds (~290 crates):
#   --dev (opt-level 0)                       ~10 min   config_parse   140 exec/s
#   release, opt-level 3, 16 codegen units    ~13 min   config_parse 10600 exec/s
#   release, opt-level 1, 16 codegen units  9-11 min   config_parse  7500 exec/s  <- this
#   the same with AddressSanitizer            ~17 min   config_parse   770 exec/s
# opt-level 1 is set in fuzz/Cargo.toml. 16 codegen units rather than cargo-fuzz's default of
# one, which leaves a core idle while each large crate is compiled. No sanitizer: the gateway
# forbids unsafe code, so ASan finds little here. Debug assertions and overflow checks stay
# on (no -O).
BUILD_ARGS=(-s none --codegen-units 16 --fuzz-dir "$FUZZ_DIR" --target-dir "$FUZZ_DIR/target")

if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo "${TOOLCHAIN[@]}" fuzz list --fuzz-dir "$FUZZ_DIR")
fi
if [[ ${#TARGETS[@]} -eq 0 ]]; then
  echo "fuzz.sh: no fuzz targets found in $FUZZ_DIR" >&2
  exit 1
fi

t0=$(date +%s)
cargo "${TOOLCHAIN[@]}" fuzz build "${BUILD_ARGS[@]}" </dev/null
echo "fuzz.sh: build done in $(( $(date +%s) - t0 ))s"

# A throwaway corpus per run: new inputs go there, the committed seeds are only read.
mkdir -p "$FUZZ_DIR/corpus"
WORK="$(mktemp -d "$FUZZ_DIR/corpus/run.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

status=0
for target in "${TARGETS[@]}"; do
  corpus="$WORK/$target"
  log="$WORK/$target.log"
  seeds="$FUZZ_DIR/seeds/$target"
  mkdir -p "$corpus" "$seeds" "$FUZZ_DIR/artifacts/$target"
  touch "$WORK/$target.start"
  # -timeout: an input running longer is a hang; -max_len bounds what the targets must digest.
  if RUST_BACKTRACE=0 cargo "${TOOLCHAIN[@]}" fuzz run "${BUILD_ARGS[@]}" "$target" "$corpus" "$seeds" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -max_len=4096 \
      -print_final_stats=1 </dev/null >"$log" 2>&1; then
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    rate=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    echo "fuzz.sh: $target ok: $runs inputs in ${SECONDS_PER_TARGET}s ($rate exec/s)"
  else
    status=1
    echo "fuzz.sh: $target FAILED; its output from the failure on:"
    first=$(grep -n -m1 -E 'panicked at|ERROR: libFuzzer' "$log" | cut -d: -f1 || true)
    tail -n +"${first:-1}" "$log" | head -n 80 | sed 's/^/    /'
    found=$(find "$FUZZ_DIR/artifacts/$target" -type f -newer "$WORK/$target.start" 2>/dev/null)
    if [[ -n "$found" ]]; then
      while IFS= read -r artifact; do
        echo "fuzz.sh: $target: failing input saved as ${artifact#"$ROOT"/}"
        echo "fuzz.sh: replay: cargo +nightly fuzz run -s none --codegen-units 16" \
          "--target-dir fuzz/target $target ${artifact#"$ROOT"/}"
      done <<<"$found"
    else
      echo "fuzz.sh: $target: no input was saved (see the output above)"
    fi
  fi
done

echo "fuzz.sh: finished in $(( $(date +%s) - t0 ))s"
exit "$status"
