#!/usr/bin/env bash
# The benchmark: ./scripts/bench.sh [--quick] [--peers] | --micro
#
# Builds mcp-gateway, mcp-fixture and the load generator (bench/) in release mode, runs every
# configuration on loopback, and prints one table. What each number means: bench/README.md.
#
#   a. direct: mcp-fixture over streamable HTTP alone (the baseline)
#   b. gateway /mcp -> mcp-fixture over stdio
#   c. gateway /mcp -> mcp-fixture over streamable HTTP
#   d. gateway /sse -> mcp-fixture over stdio
#      (a-d at each concurrency, tools/call of `echo`)
#   e. catalog scale: B backends x T tools; time to all ready, tools/list latency and size, RSS
#   f. many stdio backends x 5 tools: time to all ready, GET /metrics and /api/v1/* latency
#   g. many concurrent SSE and streamable-HTTP GET streams: RSS per stream, RSS after close
#   peers (optional): supergateway (npm) and mcp-proxy (PyPI) in front of the same stdio
#      fixture, when installed; --peers installs them into bench/target/peers first
#
# --quick keeps the run under ~3 minutes: shorter windows, smaller catalogs, fewer backends and
# streams. Every setting can be overridden from the environment (see "Settings" below).
# Servers run on one core and the load generator on another (taskset) when there are two or
# more (BENCH_PIN=0: not). Every process started here is stopped on exit, Ctrl-C or failure.
#
# --micro runs the criterion micro-benchmarks of bench/micro instead (the relay's per-message
# work, names, catalog updates, list serialization) with short windows, and prints one line
# per benchmark: BENCH_MICRO_ARGS (default `--warm-up-time 1 --measurement-time 2`) and
# BENCH_MICRO_FILTER (a criterion filter, e.g. `apply/`) go to criterion.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
INSTALL_PEERS=0
MICRO=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --peers) INSTALL_PEERS=1 ;;
        --micro) MICRO=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (usage: $0 [--quick] [--peers] | --micro)" >&2
            exit 2
            ;;
    esac
done

# === Settings ===
if ((QUICK)); then
    : "${BENCH_WARMUP:=0.5}" "${BENCH_DURATION:=2}"
    : "${BENCH_CATALOGS:=20x500 10x5000}" "${BENCH_BACKENDS:=200}" "${BENCH_STREAMS:=2000}"
    : "${BENCH_LIST_SECONDS:=2}"
else
    : "${BENCH_WARMUP:=2}" "${BENCH_DURATION:=10}"
    : "${BENCH_CATALOGS:=100x500 10x5000}" "${BENCH_BACKENDS:=1000}" "${BENCH_STREAMS:=10000}"
    : "${BENCH_LIST_SECONDS:=10}"
fi
: "${BENCH_CONCURRENCY:=1 8 32}"
: "${BENCH_ONLY:=a b c d e f g peers}" # sections to run
: "${BENCH_READY_TIMEOUT:=300}"        # seconds to wait for every backend of a scale run
: "${BENCH_PIN:=1}"                    # 0: no taskset (steadier on a machine busy with other work)
: "${BENCH_SERVER_CPUS:=0}"            # taskset -c list for the servers (gateway, fixtures)
: "${BENCH_LOADGEN_CPUS:=1}"           # and for the load generator
: "${BENCH_PERF:=0}"                   # 1: profile each measured process with perf
: "${BENCH_OUT:=$ROOT/bench/target/results/$(date +%Y%m%dT%H%M%S)}"
# echo, add, slow, cancelled_count, fail, sample, elicit, touch, request_meta
FIXTURE_BUILTIN_TOOLS=9

GW=$ROOT/target/release/mcp-gateway
FX=$ROOT/target/release/mcp-fixture
LG=$ROOT/bench/target/release/mcp-bench
PEERS=$ROOT/bench/target/peers
# The gateway watches its config file's folder: configs get one of their own, so that the
# logs and results written during a run do not wake the watcher (and count as gateway CPU).
CONFIGS=$BENCH_OUT/config
mkdir -p "$BENCH_OUT" "$CONFIGS"

# === --micro: criterion's benchmarks, then one line each (name, median, [low .. high]) ===
if ((MICRO)); then
    : "${BENCH_MICRO_ARGS:=--warm-up-time 1 --measurement-time 2}" "${BENCH_MICRO_FILTER:=}"
    echo "building and running bench/micro; criterion's full output: $BENCH_OUT/micro.txt" >&2
    status=0
    # shellcheck disable=SC2086 # the arguments are words for criterion
    (cd "$ROOT/bench" && cargo bench -p mcp-gateway-micro -- $BENCH_MICRO_ARGS $BENCH_MICRO_FILTER) \
        2>"$BENCH_OUT/micro.log" | tee "$BENCH_OUT/micro.txt" | awk '
            # A name stands alone on its line when long, else before "time:" on the same one.
            /time:/ {
                name = $0; sub(/ *time:.*/, "", name)
                if (name == "") name = prev
                match($0, /\[.*\]/); split(substr($0, RSTART + 1, RLENGTH - 2), t, " ")
                printf "%-66s %9s %-2s  [%s %s .. %s %s]\n", name, t[3], t[4], t[1], t[2], t[5], t[6]
                next
            }
            /^\(/ { print; next }
            /^[^ ]/ && !/^Found / { prev = $0 }' || status=$?
    ((status == 0)) || tail -n 20 "$BENCH_OUT/micro.log" >&2
    exit "$status"
fi

RESULTS=$BENCH_OUT/results.jsonl
: >"$RESULTS"
STARTED=$SECONDS

log() { printf '[bench %3ds] %s\n' "$((SECONDS - STARTED))" "$*" >&2; }

# === Processes: every one started here is tracked and stopped on exit ===
PIDS=()

# The pid and every descendant of a process (a gateway's stdio backends run in their own
# process groups, so killing a group would miss them). One `ps` for the whole tree.
tree() {
    ps -e -o pid=,ppid= 2>/dev/null | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            found[root] = 1; print root
            do {
                more = 0
                for (p in parent) if (!(p in found) && (parent[p] in found)) { found[p] = 1; print p; more = 1 }
            } while (more)
        }'
}

stop() {
    local pid=$1 all i
    kill -0 "$pid" 2>/dev/null || return 0
    all=$(tree "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # Whatever is left of the tree (the process itself past 5 s, orphaned children).
    for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop "$pid"; done
    PIDS=()
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

forget() { # stop one tracked process and stop tracking it
    local pid=$1 kept=() p
    stop "$pid"
    for p in "${PIDS[@]}"; do [[ $p != "$pid" ]] && kept+=("$p"); done
    PIDS=("${kept[@]}")
}

# Command prefixes. Not functions: `function &` would fork a subshell, and $! would be the
# subshell's pid instead of the server's.
if ((BENCH_PIN)) && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
    ON_SERVER=(taskset -c "$BENCH_SERVER_CPUS")
    ON_LOADGEN=(taskset -c "$BENCH_LOADGEN_CPUS")
    PINNING="servers on CPU $BENCH_SERVER_CPUS, load generator on CPU $BENCH_LOADGEN_CPUS"
else
    ON_SERVER=(env)
    ON_LOADGEN=(env)
    PINNING="not pinned ($(nproc) cores)"
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# Waits (bounded) until something accepts connections on 127.0.0.1:$1.
wait_port() {
    local port=$1 i
    for ((i = 0; i < 300; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "nothing listens on port $port after 30 s"
    return 1
}

# With BENCH_PERF=1, `perf record` samples the measured process (--pid) while a run lasts;
# the data and a flat profile (by symbol) go to $BENCH_OUT/perf/.
PERF_PID=""
RUNS=0
perf_start() { # name, pid
    ((BENCH_PERF)) && command -v perf >/dev/null || return 0
    mkdir -p "$BENCH_OUT/perf"
    perf record -F 999 -g -p "$2" -o "$BENCH_OUT/perf/$1.data" >/dev/null 2>&1 &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
}
perf_stop() { # name
    [[ -n $PERF_PID ]] || return 0
    local i
    kill -INT "$PERF_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do # perf writes its data on SIGINT
        kill -0 "$PERF_PID" 2>/dev/null || break
        sleep 0.1
    done
    forget "$PERF_PID"
    PERF_PID=""
    perf report -i "$BENCH_OUT/perf/$1.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
        grep '%' | head -80 | sed -E 's/[ -]+$//' | cut -c1-200 >"$BENCH_OUT/perf/$1.txt" || true
}

# Runs the load generator, appending its JSON line; a failed run is recorded, not fatal.
bench() {
    local label=$1 line args name pid="" c="" i
    shift
    args=("$@")
    for ((i = 0; i < ${#args[@]} - 1; i++)); do
        case "${args[i]}" in
            --pid) pid=${args[i + 1]} ;;
            -c) c="-c${args[i + 1]}" ;;
        esac
    done
    RUNS=$((RUNS + 1))
    name=$(printf '%02d %s %s%s' "$RUNS" "$label" "$1" "$c" | tr -c 'A-Za-z0-9' '-' | tr -s '-')
    [[ -n $pid ]] && perf_start "$name" "$pid"
    line=""
    "${ON_LOADGEN[@]}" "$LG" "$@" --label "$label" >"$BENCH_OUT/line.json" 2>>"$BENCH_OUT/loadgen.log" &&
        line=$(cat "$BENCH_OUT/line.json")
    perf_stop "$name"
    if [[ -n $line ]]; then
        echo "$line" >>"$RESULTS"
        echo "$line" | jq -c 'del(.error_samples) | with_entries(select(.value != null))' >&2
    else
        log "FAILED: $label: $* (see $BENCH_OUT/loadgen.log)"
        jq -nc --arg label "$label" --arg error "$(tail -n 3 "$BENCH_OUT/loadgen.log")" \
            '{mode: "failed", label: $label, error: $error}' >>"$RESULTS"
    fi
}

# Waits (bounded) until the gateway on port $1 has $2 backends ready; not a result.
wait_ready() {
    "${ON_LOADGEN[@]}" "$LG" ready --url "http://127.0.0.1:$1" --expect "$2" --timeout 60 \
        >/dev/null 2>>"$BENCH_OUT/loadgen.log"
}

# Waits (bounded) until the server on port $1 lists `echo`: a peer starts its backend lazily.
wait_tool() {
    "${ON_LOADGEN[@]}" "$LG" call --url "http://127.0.0.1:$1/mcp" --warmup 0 --duration 0.2 \
        >/dev/null 2>>"$BENCH_OUT/loadgen.log"
}

# Starts mcp-fixture over streamable HTTP on $1; sets FIXTURE_PID.
start_fixture_http() {
    local port=$1
    shift
    "${ON_SERVER[@]}" "$FX" --transport http --port "$port" "$@" 2>>"$BENCH_OUT/fixture.log" &
    FIXTURE_PID=$!
    PIDS+=("$FIXTURE_PID")
    wait_port "$port"
}

# Starts the gateway with config $1 on port $2; sets GATEWAY_PID and GATEWAY_START_NS.
start_gateway() {
    local config=$1 port=$2 name
    name=$(basename "$config" .yaml)
    GATEWAY_START_NS=$(date +%s%N)
    "${ON_SERVER[@]}" "$GW" serve --config "$config" --port "$port" --log-level warn \
        2>"$BENCH_OUT/gateway-$name.log" >/dev/null &
    GATEWAY_PID=$!
    PIDS+=("$GATEWAY_PID")
    wait_port "$port"
}

# The `gateway:` block: limits far above what the benchmark drives.
gateway_block() {
    cat <<'EOF'
gateway:
  maxSessions: 100000
  maxConnections: 100000
  maxRequestsPerSession: 1024
  maxRequestsPerBackend: 100000
  queueTimeout: 60s
  startupTimeout: 300s
  requestTimeout: 60s
  shutdownGrace: 1s
EOF
}

# === Sections ===

# a-d. Throughput. All servers are started first and stay up (idle ones cost nothing), and
# the rows run interleaved by concurrency (a, b, d, c at c=1, then at c=8, ...), so that each
# ratio compares runs taken seconds apart, not minutes: on a shared machine the background
# load drifts. Then g (many streams) on the stdio gateway.
run_throughput() {
    local direct_port direct_pid stdio_port stdio_pid backend_port backend_pid http_port http_pid
    local config c transport
    if want a; then
        direct_port=$(free_port)
        start_fixture_http "$direct_port" --name direct
        direct_pid=$FIXTURE_PID
    fi
    if want b || want d || want g; then
        config=$CONFIGS/stdio.yaml
        {
            gateway_block
            printf 'mcpServers:\n  fixture:\n    command: %s\n    args: ["--name", "fixture"]\n' "$FX"
        } >"$config"
        stdio_port=$(free_port)
        start_gateway "$config" "$stdio_port"
        stdio_pid=$GATEWAY_PID
        wait_ready "$stdio_port" 1
    fi
    if want c; then
        backend_port=$(free_port)
        start_fixture_http "$backend_port" --name fixture
        backend_pid=$FIXTURE_PID
        config=$CONFIGS/http.yaml
        {
            gateway_block
            printf 'mcpServers:\n  fixture:\n    type: streamable-http\n    url: http://127.0.0.1:%s/mcp\n' \
                "$backend_port"
        } >"$config"
        http_port=$(free_port)
        start_gateway "$config" "$http_port"
        http_pid=$GATEWAY_PID
        wait_ready "$http_port" 1
    fi
    for c in $BENCH_CONCURRENCY; do
        if want a; then
            log "$DIRECT, c=$c"
            bench "$DIRECT" call --url "http://127.0.0.1:$direct_port/mcp" -c "$c" "${CALL[@]}" \
                --pid "$direct_pid"
        fi
        if want b; then
            log "b. gateway /mcp -> stdio, c=$c"
            bench "b. gateway /mcp -> stdio" call --url "http://127.0.0.1:$stdio_port/mcp" \
                --tool fixture__echo -c "$c" "${CALL[@]}" --pid "$stdio_pid"
        fi
        if want d; then
            log "d. gateway /sse -> stdio, c=$c"
            bench "d. gateway /sse -> stdio" call --transport sse --url "http://127.0.0.1:$stdio_port/sse" \
                --tool fixture__echo -c "$c" "${CALL[@]}" --pid "$stdio_pid"
        fi
        if want c; then
            log "c. gateway /mcp -> HTTP, c=$c"
            bench "c. gateway /mcp -> HTTP" call --url "http://127.0.0.1:$http_port/mcp" \
                --tool fixture__echo -c "$c" "${CALL[@]}" --pid "$http_pid" --backend-pid "$backend_pid"
        fi
    done
    if want g; then
        for transport in sse mcp; do
            log "g. $BENCH_STREAMS concurrent $transport streams"
            bench "g. $BENCH_STREAMS concurrent streams" streams --transport "$transport" \
                --url "http://127.0.0.1:$stdio_port/$transport" --count "$BENCH_STREAMS" --hold 1 \
                --pid "$stdio_pid"
        done
    fi
    cleanup
}

# Peers in front of the same stdio fixture, when on PATH or installed by --peers.
peer_bin() { command -v "$1" 2>/dev/null || { [[ -x $2 ]] && echo "$2"; } || true; }

peer_rows() { # label, port, pid of a peer serving /mcp with the fixture's tools unprefixed
    local label=$1 port=$2 pid=$3 c
    PIDS+=("$pid")
    if wait_port "$port" && wait_tool "$port"; then
        for c in $BENCH_CONCURRENCY; do
            log "$label, c=$c"
            bench "$label" call --url "http://127.0.0.1:$port/mcp" -c "$c" "${CALL[@]}" --pid "$pid"
        done
    fi
    forget "$pid"
}

run_peers() {
    local supergateway mcp_proxy port
    supergateway=$(peer_bin supergateway "$PEERS/node_modules/.bin/supergateway")
    mcp_proxy=$(peer_bin mcp-proxy "$PEERS/venv/bin/mcp-proxy")
    if [[ -n $supergateway ]]; then
        port=$(free_port)
        "${ON_SERVER[@]}" "$supergateway" --stdio "$FX --name fixture" --outputTransport streamableHttp \
            --stateful --port "$port" --logLevel none >"$BENCH_OUT/supergateway.log" 2>&1 &
        peer_rows "peer: supergateway /mcp -> stdio" "$port" $!
    fi
    if [[ -n $mcp_proxy ]]; then
        port=$(free_port)
        "${ON_SERVER[@]}" "$mcp_proxy" --host 127.0.0.1 --port "$port" --log-level WARNING -- \
            "$FX" --name fixture >"$BENCH_OUT/mcp-proxy.log" 2>&1 &
        peer_rows "peer: mcp-proxy /mcp -> stdio" "$port" $!
    fi
}

# e. B stdio backends of T synthetic tools each: start-up, then tools/list.
run_catalog() {
    local size=$1 backends tools label config port i
    backends=${size%x*}
    tools=${size#*x}
    label="e. catalog $backends backends x $tools tools"
    config=$CONFIGS/catalog-$size.yaml
    {
        gateway_block
        echo "mcpServers:"
        for ((i = 0; i < backends; i++)); do
            printf '  fx%04d:\n    command: %s\n    args: ["--name", "fx%04d", "--synthetic-tools", "%d"]\n' \
                "$i" "$FX" "$i" "$((tools - FIXTURE_BUILTIN_TOOLS))"
        done
    } >"$config"
    port=$(free_port)
    log "$label: starting"
    start_gateway "$config" "$port"
    bench "$label" ready --url "http://127.0.0.1:$port" --expect "$backends" \
        --since-ns "$GATEWAY_START_NS" --timeout "$BENCH_READY_TIMEOUT" --pid "$GATEWAY_PID"
    log "$label: tools/list"
    bench "$label" list --url "http://127.0.0.1:$port/mcp" --duration "$BENCH_LIST_SECONDS" \
        --min-iterations 3 --max-iterations 200 --pid "$GATEWAY_PID"
    forget "$GATEWAY_PID"
}

# f. Many stdio backends of 5 tools: start-up, then the ops endpoints and tools/list.
run_backends() {
    local label="f. $BENCH_BACKENDS stdio backends x 5 tools" config port i path
    config=$CONFIGS/backends-$BENCH_BACKENDS.yaml
    {
        gateway_block
        echo "mcpServers:"
        for ((i = 0; i < BENCH_BACKENDS; i++)); do
            printf '  fx%04d:\n    command: %s\n    args: ["--name", "fx%04d"]\n' "$i" "$FX" "$i"
            printf '    tools: {include: [echo, add, fail, touch, request_meta]}\n'
        done
    } >"$config"
    port=$(free_port)
    log "$label: starting"
    start_gateway "$config" "$port"
    bench "$label" ready --url "http://127.0.0.1:$port" --expect "$BENCH_BACKENDS" \
        --since-ns "$GATEWAY_START_NS" --timeout "$BENCH_READY_TIMEOUT" --pid "$GATEWAY_PID"
    for path in /metrics /api/v1/backends /api/v1/tools; do
        bench "$label" get --url "http://127.0.0.1:$port$path" --count 50 --duration 5 --pid "$GATEWAY_PID"
    done
    bench "$label" list --url "http://127.0.0.1:$port/mcp" --duration 1 --min-iterations 3 \
        --pid "$GATEWAY_PID"
    forget "$GATEWAY_PID"
}

want() { [[ " $BENCH_ONLY " == *" $1 "* ]]; }

# === Build ===
log "building in release mode (mcp-gateway, mcp-fixture, bench/)"
(cd "$ROOT" && cargo build --release --quiet -p mcp-gateway -p mcp-fixture --bins)
cargo build --release --quiet --manifest-path "$ROOT/bench/Cargo.toml"
if ((INSTALL_PEERS)); then
    log "installing peers into $PEERS"
    mkdir -p "$PEERS"
    npm install --prefix "$PEERS" --no-audit --no-fund --silent supergateway@4 ||
        log "supergateway not installed"
    if ! { [[ -x $PEERS/venv/bin/pip ]] || python3 -m venv "$PEERS/venv"; } ||
        ! "$PEERS/venv/bin/pip" install --quiet mcp-proxy; then
        log "mcp-proxy not installed"
    fi
fi
BUILD_S=$((SECONDS - STARTED))

# === Run ===
# Many streams and backends need many file descriptors, here and in the gateway.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited ]] && ((BENCH_STREAMS + 512 > NOFILE)); then
    log "ulimit -n is $NOFILE: streams reduced from $BENCH_STREAMS to $((NOFILE - 512))"
    BENCH_STREAMS=$((NOFILE - 512))
fi
REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock servers 2>/dev/null) ]]; then
    REVISION="$REVISION+changes"
fi
log "$(nproc) cores; $PINNING; results in $BENCH_OUT"
CALL=(--warmup "$BENCH_WARMUP" --duration "$BENCH_DURATION")
DIRECT="a. direct: fixture over HTTP"
RUN_STARTED=$SECONDS

jq -nc --argjson quick "$QUICK" --arg pinning "$PINNING" --arg revision "$REVISION" --arg cores "$(nproc)" \
    '{mode: "setup", quick: ($quick == 1), pinning: $pinning, cores: $cores, revision: $revision}' >>"$RESULTS"
# `if`, not `&&`: set -e does not apply inside an && list.
run_throughput
if want peers; then run_peers; fi
if want e; then
    for size in $BENCH_CATALOGS; do run_catalog "$size"; done
fi
if want f; then run_backends; fi
cleanup

# === The table ===
{
    echo
    echo "mcp-gateway benchmark, $(date -u +%Y-%m-%dT%H:%MZ), revision $REVISION$( ((QUICK)) && echo ', --quick')"
    echo "$(nproc) cores, $PINNING; tools/call of echo, ${BENCH_DURATION} s measured after ${BENCH_WARMUP} s warm-up"
    echo
    "$LG" report "$RESULTS" --baseline "$DIRECT"
    echo
    echo "wall time: $((SECONDS - RUN_STARTED)) s running, $BUILD_S s building; raw results: $RESULTS"
} | tee "$BENCH_OUT/table.txt"
