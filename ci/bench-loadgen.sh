#!/usr/bin/env bash
# Benchmark (not a test): slolab load vs wrk, hey and oha (each if installed)
# against nginx (one worker pinned to core 0, `return 200`), every generator
# pinned to core 1 with 50 keep-alive connections. Prints requests/s, requests
# per CPU-second of the generator (user+sys from /usr/bin/time), peak RSS, and
# each ratio to wrk from this same run; then slolab's peak RSS for a
# 1,000,000-request run against a 10,000-request one. slolab runs on both of its
# backends: `slolab` is the default (`--io auto`: epoll for back-to-back sends)
# and `sl-uring` is io_uring (`--io uring`).
# `floor` (FLOOR=0 leaves it out) is ci/floor's cheapest io_uring loop: send,
# parse, two clock reads, nothing else. It is not a load generator; it shows
# where the kernel's loopback TCP cost puts the ceiling on this machine in this
# run, which moves with steal time more than any generator does.
# The tools run in ROUNDS interleaved rounds and the ratios are medians of the
# per-round ratios: on a shared or virtual machine (steal time) a single pair of
# runs can be off by 20 % either way.
#
#   cargo build --release -p slolab && ci/bench-loadgen.sh
#   SECONDS_PER_RUN=10 CONNECTIONS=50 ROUNDS=5 SLOLAB=build/release/slolab ci/bench-loadgen.sh
#
# Other processes on the machine skew absolute figures; compare ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECONDS_PER_RUN:-10}
CONNS=${CONNECTIONS:-50}
export CONNS # the floor reads it
ROUNDS=${ROUNDS:-3}
SLOLAB=${SLOLAB:-build/release/slolab}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "bench-loadgen: nginx is required" >&2; exit 1; }
[ -x "$SLOLAB" ] || { echo "bench-loadgen: $SLOLAB missing; run: cargo build --release -p slolab" >&2; exit 1; }
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench-loadgen: /usr/bin/time is required (apt-get install time)" >&2; exit 1; }
if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=0; GEN_CPU=1; else SERVER_CPU=0; GEN_CPU=0; fi

FLOOR_BIN=build/release/slolab-floor
if [ "${FLOOR:-1}" = 1 ] && [ ! -x "$FLOOR_BIN" ]; then
    (cd ci/floor && cargo build --release -q) || echo "bench-loadgen: ci/floor did not build; no floor row" >&2
fi

work=$(mktemp -d)
nginx_pid=""
cleanup() {
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# nginx cannot report a port-0 bind, so take a free port from the kernel first.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
    uwsgi_temp_path $work; scgi_temp_path $work;
    server { listen 127.0.0.1:$port; location / { return 200 "ok"; } }
}
CONF
taskset -c "$SERVER_CPU" "$NGINX" -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
URL="http://127.0.0.1:$port/"
echo "nginx pid $nginx_pid on $URL (core $SERVER_CPU); generators on core $GEN_CPU; ${SECS}s, $CONNS connections, $ROUNDS rounds"
echo

# run NAME REQUEST-COUNT-EXTRACTOR CMD...: runs CMD pinned under /usr/bin/time
# and appends "round name requests wall user sys rss" to $work/rows.
run() {
    local name=$1 extract=$2; shift 2
    "$TIME" -f "%e %U %S %M" -o "$work/$name.time" taskset -c "$GEN_CPU" "$@" > "$work/$name.out" 2> "$work/$name.err" || {
        echo "$name failed:"; tail -5 "$work/$name.err"; return 0; }
    local requests wall user sys rss
    requests=$($extract "$work/$name.out")
    read -r wall user sys rss < <(tail -1 "$work/$name.time")
    echo "$round $name $requests $wall $user $sys $rss" >> "$work/rows"
    awk -v n="$name" -v r="$requests" -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" 'BEGIN {
        c = u + s; if (c <= 0) c = 0.01
        printf "  %-8s %10d requests  %9.0f req/s  %9.0f req/CPU-s  %7d KB peak RSS  (cpu %ss user + %ss sys)\n", n, r, r / w, r / c, m, u, s }'
}
count_wrk() { awk '/requests in/ { print $1 }' "$1"; }
count_responses() { awk '/\[2[0-9][0-9]\]/ { gsub(/[^0-9]/, " ", $0); split($0, a, " "); s += a[2] } END { print s + 0 }' "$1"; }
count_first() { head -1 "$1"; }
count_slolab() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcomes"]["2xx"])' "$1"; }

: > "$work/rows"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    run slolab count_slolab "$SLOLAB" load -z "${SECS}s" -c "$CONNS" --threads 1 --json "$URL"
    run sl-uring count_slolab "$SLOLAB" load -z "${SECS}s" -c "$CONNS" --threads 1 --io uring --json "$URL"
    command -v wrk >/dev/null && run wrk count_wrk wrk -t1 -c "$CONNS" -d "${SECS}s" "$URL"
    command -v hey >/dev/null && run hey count_responses hey -z "${SECS}s" -c "$CONNS" "$URL"
    command -v oha >/dev/null && run oha count_responses oha -z "${SECS}s" -c "$CONNS" --no-tui "$URL"
    if [ "${FLOOR:-1}" = 1 ] && [ -x "$FLOOR_BIN" ]; then
        run floor count_first "$FLOOR_BIN" uring "$port" "$SECS" single defer link skip fixed pollfirst clock
    fi
done

echo
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    rnd, name, n, wall, user, sys_ = line.split()[:6]
    rss = int(line.split()[6])
    n, wall, cpu = int(n), float(wall), max(float(user) + float(sys_), 0.01)
    per = lambda t: float(t) * 1e6 / max(n, 1)
    rows.setdefault(int(rnd), {})[name] = (n / wall, n / cpu, rss, per(user), per(sys_))
names = []
for r in rows.values():
    names += [k for k in r if k not in names]
print("medians over rounds:      req/s   req/CPU-s  peak RSS   user µs/req  sys µs/req")
for name in names:
    got = [r[name] for r in rows.values() if name in r]
    med = lambda i: statistics.median(g[i] for g in got)
    print(f"  {name:8s} {med(0):12.0f} {med(1):11.0f} {max(g[2] for g in got):7d} KB {med(3):11.2f} {med(4):11.2f}")
if not any("wrk" in r for r in rows.values()):
    print("wrk not installed: no ratios")
    sys.exit(0)
print()
for name in names:
    if name == "wrk":
        continue
    cpu = [r[name][1] / r["wrk"][1] for r in rows.values() if name in r and "wrk" in r]
    rps = [r[name][0] / r["wrk"][0] for r in rows.values() if name in r and "wrk" in r]
    print(f"{name:8s} req/CPU-s vs wrk: {statistics.median(cpu):.2f}x (rounds {' '.join(f'{x:.2f}' for x in cpu)})"
          f"   req/s vs wrk: {statistics.median(rps):.2f}x")
PY

echo
echo "slolab peak RSS by request count (memory must not grow with requests):"
for n in 10000 1000000; do
    "$TIME" -f "%e %U %S %M" -o "$work/rss-$n.time" taskset -c "$GEN_CPU" \
        "$SLOLAB" load -n "$n" -c "$CONNS" --threads 1 --json "$URL" > "$work/rss-$n.out"
    read -r wall user sys rss < <(tail -1 "$work/rss-$n.time")
    printf "  -n %-8s %7s KB peak RSS  (%s 2xx in %ss)\n" "$n" "$rss" "$(count_slolab "$work/rss-$n.out")" "$wall"
done
