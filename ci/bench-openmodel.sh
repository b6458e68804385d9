#!/usr/bin/env bash
# Benchmark (not a test): how closely `slolab load`'s open model keeps its
# schedule on each I/O backend. nginx (one worker, `return 200`) on core 0, the
# generator on core 1; RATE requests/s for SECONDS_PER_RUN over CONNECTIONS
# connections, io_uring and epoll alternating for ROUNDS rounds. Prints, per
# run, late sends (> 10 ms behind schedule), the p99 and worst lag of sends
# behind their scheduled time, and latency (from the scheduled time) next to
# service time (from the actual send). A generator that sends in bursts shows
# it as latency above the server's service time at a rate the server keeps up with.
#
#   cargo build --release -p slolab && ci/bench-openmodel.sh
#   RATE=20000 SECONDS_PER_RUN=4 CONNECTIONS=20 ROUNDS=2 ci/bench-openmodel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-20000}
SECS=${SECONDS_PER_RUN:-4}
CONNS=${CONNECTIONS:-20}
ROUNDS=${ROUNDS:-2}
SLOLAB=${SLOLAB:-build/release/slolab}
. ci/lib/nginx.sh
bench_require python3
[ -x "$SLOLAB" ] || { echo "$BENCH: $SLOLAB missing; run: cargo build --release -p slolab" >&2; exit 1; }
if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=0; GEN_CPU=1; else SERVER_CPU=0; GEN_CPU=0; fi
bench_scratch
PORT=$(free_port)
nginx_conf "$RUN" 4096 <<CONF
    server { listen 127.0.0.1:$PORT; location / { return 200 "ok"; } }
CONF
nginx_start "$RUN" taskset -c "$SERVER_CPU"
URL="http://127.0.0.1:$PORT/"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
echo "open model: $RATE req/s for ${SECS}s on $CONNS connections; nginx on core $SERVER_CPU, slolab on core $GEN_CPU"
for round in $(seq "$ROUNDS"); do
    for io in uring epoll; do
        taskset -c "$GEN_CPU" "$SLOLAB" load --rate "$RATE" -z "${SECS}s" -c "$CONNS" --threads 1 \
            --io "$io" --save "$RUN/$io.json" "$URL" > /dev/null 2> "$RUN/$io.err" || {
            echo "round $round $io failed: $(tail -1 "$RUN/$io.err")"; continue; }
        python3 - "$RUN/$io.json" "$round" "$io" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p, lat, svc = d["pacer"], d["totals"]["latency"], d["totals"]["service_time"]
q = lambda s, k: s["percentiles_us"][k]
print(f"round {sys.argv[2]} {sys.argv[3]:5s}  sent {p['sent']}/{p['scheduled']}  late {p['late_sends']}"
      f"  lag p99 {p['p99_lag_us']} µs max {p['max_lag_us']} µs"
      f"  latency p50/p99 {q(lat, 'p50')}/{q(lat, 'p99')} µs  service p50/p99 {q(svc, 'p50')}/{q(svc, 'p99')} µs")
PY
    done
done
