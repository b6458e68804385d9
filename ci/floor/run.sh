#!/usr/bin/env bash
# The floor experiment for issue 2 (not a test, not run by CI): alternating
# rounds of wrk, slolab, and minimal epoll / io_uring generators, each pinned
# to core 1 against nginx (1 worker, core 0, `return 200`) with 50 keep-alive
# connections, as ci/bench-loadgen.sh does. Prints each round's requests per
# CPU-second (user+sys) and the median ratio to wrk per tool.
#
#   cargo build --release -p slolab && ci/floor/run.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
SECS=${2:-5}
SLOLAB=${SLOLAB:-build/release/slolab}
. ci/lib/nginx.sh
bench_require wrk python3
[ -x /usr/bin/time ] || { echo "floor: /usr/bin/time is required" >&2; exit 1; }
(cd ci/floor && cargo build --release -q)
FLOOR=build/release/slolab-floor
bench_scratch
PORT=$(free_port)
nginx_conf "$RUN" 4096 <<CONF
    server { listen 127.0.0.1:$PORT; location / { return 200 "ok"; } }
CONF
nginx_start "$RUN" taskset -c 0
URL="http://127.0.0.1:$PORT/"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

URING="single defer multishot skip fixed clock"
one() { # label, then the command; prints "label requests cpu-seconds"
    local label=$1; shift
    /usr/bin/time -f "%U %S" -o "$RUN/time" taskset -c 1 "$@" > "$RUN/out" 2>/dev/null
    local n
    case $label in
        wrk) n=$(awk '/requests in/ { print $1 }' "$RUN/out") ;;
        slolab) n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcomes"]["2xx"])' "$RUN/out") ;;
        *) n=$(head -1 "$RUN/out") ;;
    esac
    echo "$label $n $(awk '{ print $1 + $2 }' "$RUN/time")"
}
for r in $(seq "$ROUNDS"); do
    {
        one wrk wrk -t1 -c50 -d"${SECS}s" "$URL"
        [ -x "$SLOLAB" ] && one slolab "$SLOLAB" load -z "${SECS}s" -c 50 --threads 1 --json "$URL"
        one epoll "$FLOOR" epoll "$PORT" "$SECS" clock
        one uring "$FLOOR" uring "$PORT" "$SECS" $URING
        one uring-wait16 "$FLOOR" uring "$PORT" "$SECS" $URING wait=16
    } > "$RUN/round.$r"
    echo "round $r: $(awk '{ printf "%s %.0f  ", $1, $2 / $3 }' "$RUN/round.$r")"
done
python3 - "$RUN" "$ROUNDS" <<'PY'
import statistics, sys
run, rounds = sys.argv[1], int(sys.argv[2])
per = {}
for r in range(1, rounds + 1):
    rows = {l.split()[0]: l.split()[1:] for l in open(f"{run}/round.{r}")}
    wrk = int(rows["wrk"][0]) / float(rows["wrk"][1])
    for tool, (n, cpu) in rows.items():
        per.setdefault(tool, []).append(int(n) / float(cpu) / wrk)
for tool, ratios in per.items():
    print(f"{tool:14s} req/CPU-s vs wrk: median {statistics.median(ratios):.2f}x  (rounds {' '.join(f'{x:.2f}' for x in ratios)})")
PY
