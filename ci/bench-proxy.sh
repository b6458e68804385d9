#!/usr/bin/env bash
# Benchmark (not a test): the chaos fault proxy with no toxic vs a direct
# connection to the same nginx `return 200`, same wrk load, alternating rounds;
# plus a peer, a bare `copy_bidirectional` tokio proxy, to tell the proxy's own
# cost from what any extra hop costs on this machine. Prints p50 latency (1
# connection, so no queueing) and throughput (CONNS connections), the p50 added
# by the proxy in µs, and the throughput ratios.
# Targets: ≤ 50 µs added at p50, ≥ 90 % of direct throughput. Release build.
# On a small machine where wrk, nginx and the proxy share the cores, every hop
# costs CPU that nginx `return 200` would otherwise use: compare with the peer.
# So it also drives the same fixed offered load (open model, `slolab load
# --rate`, OFFERED_SHARE of the proxied path's measured maximum) through both
# paths and prints what each delivered and its p99: whether the proxy loses
# requests or adds tail latency at a load it can carry, apart from what a hop
# costs in CPU.
#
#   ci/bench-proxy.sh
#   DURATION=10s CONNS=64 ROUNDS=3 ci/bench-proxy.sh
#   SKIP_BUILD=1 ci/bench-proxy.sh          # reuse the release build
#   OFFERED_SHARE=0.7 ci/bench-proxy.sh     # fixed load at 70 % of the proxied max (default 50 %)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
OFFERED_SHARE=${OFFERED_SHARE:-0.5}

. ci/lib/nginx.sh
bench_require wrk curl python3

[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p chaos --example proxy -p slolab
BUILD_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$BUILD_DIR/release/examples/proxy
SLOLAB=$BUILD_DIR/release/slolab

bench_scratch

# --- upstream: nginx, 1 worker, `return 200` --------------------------------
PORT=$(free_port)
nginx_conf "$RUN" 4096 <<CONF
    server { listen 127.0.0.1:$PORT; location / { return 200 'ok'; } }
CONF
nginx_start "$RUN"
DIRECT="http://127.0.0.1:$PORT/"
wait_for "$DIRECT"

# --- the proxy, no toxic ----------------------------------------------------
"$BIN" 127.0.0.1:0 "127.0.0.1:$PORT" >"$RUN/proxy.addr" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$RUN/proxy.addr" ] && break; sleep 0.1; done
PROXIED="http://$(head -1 "$RUN/proxy.addr")/"
wait_for "$PROXIED"
"$BIN" --plain 127.0.0.1:0 "127.0.0.1:$PORT" >"$RUN/plain.addr" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$RUN/plain.addr" ] && break; sleep 0.1; done
PLAIN="http://$(head -1 "$RUN/plain.addr")/"
wait_for "$PLAIN"

# wrk's p50 in µs and its req/s, from `wrk --latency`.
measure() { # url conns
    wrk -t1 -c"$2" -d"$DURATION" --latency "$1" | python3 -c '
import re, sys
text = sys.stdin.read()
unit = {"us": 1, "ms": 1000, "s": 1000000}
m = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)", text, re.M)
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
print(float(m.group(1)) * unit[m.group(2)], float(rps.group(1)))'
}

median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

d_p50=(); p_p50=(); c_p50=(); d_rps=(); p_rps=(); c_rps=()
for round in $(seq 1 "$ROUNDS"); do
    read -r p50 _ < <(measure "$DIRECT" 1);         d_p50+=("$p50")
    read -r p50 _ < <(measure "$PROXIED" 1);        p_p50+=("$p50")
    read -r p50 _ < <(measure "$PLAIN" 1);          c_p50+=("$p50")
    read -r _ rps < <(measure "$DIRECT" "$CONNS");  d_rps+=("$rps")
    read -r _ rps < <(measure "$PROXIED" "$CONNS"); p_rps+=("$rps")
    read -r _ rps < <(measure "$PLAIN" "$CONNS");   c_rps+=("$rps")
    echo "round $round: p50 µs direct ${d_p50[-1]}, fault proxy ${p_p50[-1]}, plain ${c_p50[-1]}; req/s direct ${d_rps[-1]}, fault proxy ${p_rps[-1]}, plain ${c_rps[-1]}" >&2
done

# The same fixed offered load through both paths: delivered req/s and p99 µs.
offered() { # url rate
    "$SLOLAB" load --rate "$2" -z "$DURATION" -c "$CONNS" --threads 1 --json "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["outcomes"]["2xx"] / r["duration_s"], r["latency_ms"]["p99"] * 1000)'
}
RATE=$(python3 -c "print(int($(median "${p_rps[@]}") * $OFFERED_SHARE))")
o_d_rps=(); o_p_rps=(); o_c_rps=(); o_d_p99=(); o_p_p99=(); o_c_p99=()
for round in $(seq 1 "$ROUNDS"); do
    read -r rps p99 < <(offered "$DIRECT" "$RATE");  o_d_rps+=("$rps"); o_d_p99+=("$p99")
    read -r rps p99 < <(offered "$PROXIED" "$RATE"); o_p_rps+=("$rps"); o_p_p99+=("$p99")
    read -r rps p99 < <(offered "$PLAIN" "$RATE");   o_c_rps+=("$rps"); o_c_p99+=("$p99")
    echo "offered $RATE req/s, round $round: delivered direct ${o_d_rps[-1]} (p99 ${o_d_p99[-1]} µs), fault proxy ${o_p_rps[-1]} (p99 ${o_p_p99[-1]} µs), plain ${o_c_rps[-1]} (p99 ${o_c_p99[-1]} µs)" >&2
done

python3 - "$(median "${d_p50[@]}")" "$(median "${p_p50[@]}")" "$(median "${c_p50[@]}")" \
    "$(median "${d_rps[@]}")" "$(median "${p_rps[@]}")" "$(median "${c_rps[@]}")" \
    "$CONNS" "$DURATION" "$ROUNDS" "$RATE" "$OFFERED_SHARE" \
    "$(median "${o_d_rps[@]}")" "$(median "${o_p_rps[@]}")" \
    "$(median "${o_d_p99[@]}")" "$(median "${o_p_p99[@]}")" \
    "$(median "${o_c_rps[@]}")" "$(median "${o_c_p99[@]}")" <<'PY'
import sys
dp, pp, cp, dr, pr, cr = map(float, sys.argv[1:7])
conns, duration, rounds, rate, share = sys.argv[7:12]
odr, opr, odp, opp, ocr, ocp = map(float, sys.argv[12:18])
print(f"fault proxy (no toxic) vs direct vs plain copy_bidirectional proxy")
print(f"(nginx return 200; wrk -t1; {duration} x {rounds} alternating rounds; medians)")
print(f"  p50 latency, 1 connection   : direct {dp:.0f} µs, fault proxy {pp:.0f} µs, plain proxy {cp:.0f} µs")
print(f"    added by the fault proxy  : {pp - dp:.0f} µs  (target <= 50 µs; plain proxy adds {cp - dp:.0f} µs)")
print(f"  throughput, {conns} connections: direct {dr:.0f} req/s, fault proxy {pr:.0f} req/s, plain proxy {cr:.0f} req/s")
print(f"    fault proxy / direct      : {pr / dr:.1%}  (target >= 90 %)")
print(f"    fault proxy / plain proxy : {pr / cr:.1%}")
print(f"  fixed offered load {rate} req/s ({float(share):.0%} of the fault proxy's maximum; open model, {conns} connections):")
print(f"    delivered                 : direct {odr:.0f} req/s, fault proxy {opr:.0f} req/s ({opr / odr:.1%}), plain proxy {ocr:.0f} req/s")
print(f"    p99 latency               : direct {odp:.0f} µs, fault proxy {opp:.0f} µs, plain proxy {ocp:.0f} µs")
PY
