#!/usr/bin/env bash
# Benchmark (not a test): our gateway vs nginx in front of the same two backends,
# each gateway pinned to one core, driven by the same wrk on the other core.
# Prints req/s, p50/p99, the gateway's CPU use, and the ratios ours/nginx.
#
# Backends: one extra nginx (1 worker, pinned with the load generator) serving two
# fixed 200 JSON responses with X-Served-By — cheap and identical for both peers,
# so the gateway is what is measured. Release build.
#
#   ci/bench-gateway.sh                 # defaults below
#   DURATION=20s CONNS=128 ROUNDS=3 ci/bench-gateway.sh
#   SKIP_BUILD=1 ci/bench-gateway.sh     # reuse the release build
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
GW_CORE=${GW_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
REQ_PATH=${REQ_PATH:-/api/v1/tasks}

. ci/lib/nginx.sh
bench_require wrk taskset curl python3

# SKIP_BUILD=1 reuses an existing release build (the build dir is shared and locked).
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p target --example gateway
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/gateway

bench_scratch

# --- backends --------------------------------------------------------------
B1=$(free_port); B2=$(free_port)
mkdir -p "$RUN/backends"
nginx_conf "$RUN/backends" 8192 <<EOF
    default_type application/json;
    server { listen 127.0.0.1:$B1; location / { add_header X-Served-By api-1; return 200 '{"data":[],"meta":{"instance":"api-1"}}'; } }
    server { listen 127.0.0.1:$B2; location / { add_header X-Served-By api-2; return 200 '{"data":[],"meta":{"instance":"api-2"}}'; } }
EOF
nginx_start "$RUN/backends" taskset -c "$LOAD_CORE"
wait_for "http://127.0.0.1:$B1/readyz"
wait_for "http://127.0.0.1:$B2/readyz"

# --- our gateway -------------------------------------------------------------
OURS=$(free_port)
cat >"$RUN/gateway.json" <<EOF
{"upstreams":[{"name":"api-1","addr":"127.0.0.1:$B1"},{"name":"api-2","addr":"127.0.0.1:$B2"}]}
EOF
taskset -c "$GW_CORE" "$BIN" serve "$RUN/gateway.json" "127.0.0.1:$OURS" 1 &
OURS_PID=$!
PIDS+=($OURS_PID)
wait_for "http://127.0.0.1:$OURS$REQ_PATH"

# --- nginx peer ----------------------------------------------------------------
PEER=$(free_port)
mkdir -p "$RUN/peer"
"$BIN" nginx-conf "$PEER" "$RUN/peer" "api-1=127.0.0.1:$B1" "api-2=127.0.0.1:$B2" >"$RUN/peer/nginx.conf"
taskset -c "$GW_CORE" "$NGINX" -p "$RUN/peer" -c "$RUN/peer/nginx.conf" &
PEER_PID=$!
PIDS+=($PEER_PID)
wait_for "http://127.0.0.1:$PEER$REQ_PATH"

# CPU seconds (user+system) used so far by a process and its children threads/workers.
cpu_ticks() { # pid
    local total=0 p
    for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
        if [ -r "/proc/$p/stat" ]; then
            total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
        fi
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)

# wrk latency to milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
        else print v }'
}

measure() { # name url pid -> "rps p50 p99 cpu"
    local url=$2 pid=$3
    taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null
    local t0 t1 out
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url")
    t1=$(cpu_ticks "$pid")
    local rps p50 p99 secs non2xx
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    secs=$(awk -v d="$DURATION" 'BEGIN { sub(/s$/, "", d); print d + 0 }')
    local cpu
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v s="$secs" 'BEGIN { printf "%.2f", (b - a) / hz / s }')
    [ -z "$non2xx" ] || echo "bench-gateway: $1 had $non2xx non-2xx responses" >&2
    echo "$rps $p50 $p99 $cpu"
}

echo "bench-gateway: wrk -t1 -c$CONNS -d$DURATION $REQ_PATH, gateways on core $GW_CORE, wrk+backends on core $LOAD_CORE, $ROUNDS rounds (best kept)"
printf '%-8s %-6s %12s %10s %10s %8s %14s\n' gateway round "req/s" "p50 ms" "p99 ms" "cpu" "req/cpu-s"
best_ours="0 0 0 1"; best_peer="0 0 0 1"
better() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); exit !(x[1] > y[1]) }'; }
for round in $(seq 1 "$ROUNDS"); do
    for who in ours nginx; do
        if [ "$who" = ours ]; then r=$(measure ours "http://127.0.0.1:$OURS$REQ_PATH" "$OURS_PID")
        else r=$(measure nginx "http://127.0.0.1:$PEER$REQ_PATH" "$PEER_PID"); fi
        read -r rps p50 p99 cpu <<<"$r"
        per_cpu=$(awk -v r="$rps" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? r / c : 0) }')
        printf '%-8s %-6s %12s %10s %10s %8s %14s\n' "$who" "$round" "$rps" "$p50" "$p99" "$cpu" "$per_cpu"
        if [ "$who" = ours ]; then better "$r" "$best_ours" && best_ours=$r
        else better "$r" "$best_peer" && best_peer=$r; fi
    done
done

read -r o_rps o_p50 o_p99 o_cpu <<<"$best_ours"
read -r n_rps n_p50 n_p99 n_cpu <<<"$best_peer"
awk -v orps="$o_rps" -v nrps="$n_rps" -v op99="$o_p99" -v np99="$n_p99" -v ocpu="$o_cpu" -v ncpu="$n_cpu" 'BEGIN {
    tput = orps / nrps
    per_core = (orps / ocpu) / (nrps / ncpu)
    printf "ratio ours/nginx: throughput %.2fx, per gateway CPU-second %.2fx, p99 %.2f ms vs %.2f ms (%s)\n",
        tput, per_core, op99, np99, (op99 <= np99 ? "ours equal or lower" : "ours higher")
    printf "target (>= 1.1x per core at equal or lower p99): %s\n",
        (per_core >= 1.1 && op99 <= np99 ? "MET" : "NOT MET")
}'
