#!/usr/bin/env bash
# Benchmark (not a test): one open-model plan at RATE req/s against nginx from 1
# process, then split into 2 and 4 shards (`--shard I/N --start-at T`, processes on
# this machine's loopback, one start for all) and merged with `slolab merge`.
# Prints per setup the delivered rate, late sends and p50/p99 of the merged run,
# then the merge time for 1 h of 1 s intervals × 4 shards (shard files built by
# repeating a real shard's intervals, histograms included).
#
#   ci/bench-shards.sh                         # defaults below
#   RATE=40000 DURATION=20s ci/bench-shards.sh
#   SKIP_BUILD=1 ci/bench-shards.sh            # reuse the release build
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-20000}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
LEAD=${LEAD:-3}   # seconds from now to the shards' common start

. ci/lib/nginx.sh
bench_require python3 curl
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/slolab

bench_scratch
PORT=$(free_port)
nginx_conf "$RUN" 8192 <<EOF2
    server { listen 127.0.0.1:$PORT; location / { return 200 'ok'; } }
EOF2
nginx_start "$RUN"
wait_for "http://127.0.0.1:$PORT/"
URL="http://127.0.0.1:$PORT/"

# One process: the reference.
"$BIN" load --rate "$RATE" -z "$DURATION" -c "$CONNS" --save "$RUN/single.json" "$URL" >/dev/null

# N shards started together, then merged.
shards() { # n
    local n=$1 i pids=() t files=()
    t=$(date -u -d "+$LEAD sec" +%FT%TZ)
    for ((i = 0; i < n; i++)); do
        "$BIN" load --rate "$RATE" -z "$DURATION" -c "$CONNS" --shard "$i/$n" --start-at "$t" \
            --save "$RUN/s$n-$i.json" "$URL" >/dev/null &
        pids+=($!)
        files+=("$RUN/s$n-$i.json")
    done
    for p in "${pids[@]}"; do wait "$p"; done
    "$BIN" merge "${files[@]}" -o "$RUN/merged-$n.json" >/dev/null
}
shards 2
shards 4

python3 - "$RUN" "$RATE" <<'PY'
import json, sys
run, rate = sys.argv[1], float(sys.argv[2])
print(f"{'setup':<10} {'delivered req/s':>16} {'of offered':>10} {'late sends':>11} {'p50 ms':>8} {'p99 ms':>8}")
for name, f in [("1 process", "single.json"), ("2 shards", "merged-2.json"), ("4 shards", "merged-4.json")]:
    r = json.load(open(f"{run}/{f}"))
    t, p = r["totals"], r.get("pacer") or {}
    pct = t["latency"]["percentiles_us"]
    print(f"{name:<10} {t['rps']:>16.0f} {t['rps'] / rate * 100:>9.1f}% {p.get('late_sends', 0):>11} "
          f"{pct['p50'] / 1e3:>8.3f} {pct['p99'] / 1e3:>8.3f}")
PY

# Merge time: 4 shards × 3600 one-second intervals, each shard's intervals
# repeated from a real shard file (so histograms are real ones).
python3 - "$RUN" <<'PY'
import copy, json, sys
run = sys.argv[1]
for i in range(4):
    r = json.load(open(f"{run}/s4-{i}.json"))
    ivs = [iv for iv in r["timeline"] if iv["requests"] > 0] or r["timeline"]
    out = []
    for k in range(3600):
        iv = copy.deepcopy(ivs[k % len(ivs)])
        iv["start_s"], iv["duration_s"] = float(k), 1.0
        out.append(iv)
    r["timeline"] = out
    r["run"]["duration_s"] = 3600.0
    json.dump(r, open(f"{run}/hour-{i}.json", "w"))
PY
start=$(date +%s.%N)
"$BIN" merge "$RUN"/hour-{0,1,2,3}.json -o "$RUN/hour-merged.json" >/dev/null || true
end=$(date +%s.%N)
python3 -c "print(f'merge of 4 shards x 3600 intervals: {float(\"$end\") - float(\"$start\"):.2f} s')"
