# Sourced by the ci/bench-*.sh scripts: the scratch dir and the processes a
# benchmark starts (stopped by pid on exit), free ports, waiting for a URL, and
# nginx — 1 worker, everything under the scratch dir — as the fixed peer.
#
#   . "$(dirname "$0")/lib/nginx.sh"
#   bench_require wrk curl python3   # exits unless these and nginx are installed
#   bench_scratch                    # RUN=scratch dir, PIDS=(), cleanup on EXIT
#   nginx_conf "$RUN" 4096 <<<"    server { listen 127.0.0.1:$PORT; ... }"
#   nginx_start "$RUN" taskset -c 1  # pid appended to PIDS

# Prefix of every message: the script's name, e.g. `bench-proxy`.
BENCH=$(basename "$0" .sh)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_require() { # tool...
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$BENCH: $tool is required" >&2; exit 1; }
    done
    [ -x "$NGINX" ] || { echo "$BENCH: nginx is required (apt-get install nginx)" >&2; exit 1; }
}

bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$RUN"
}

# Sets RUN (a fresh dir under /tmp) and PIDS (what bench_cleanup stops on exit).
bench_scratch() {
    RUN=$(mktemp -d "/tmp/$BENCH.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}

# nginx cannot report a port-0 bind, so take a free port from the kernel first.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # url: up to 10 s, else the benchmark stops
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$BENCH: $1 did not come up" >&2
    exit 1
}

# Writes DIR/nginx.conf: 1 worker, no access log, pid, logs and temp files in
# DIR, long keep-alive; stdin (server blocks, settings) goes into `http`.
nginx_conf() { # dir worker_connections
    local dir=$1 body
    body=$(cat)
    cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $2; }
http {
    access_log off;
    client_body_temp_path $dir/client_body_temp;
    proxy_temp_path $dir/proxy_temp;
    fastcgi_temp_path $dir/fastcgi_temp;
    uwsgi_temp_path $dir/uwsgi_temp;
    scgi_temp_path $dir/scgi_temp;
    keepalive_requests 1000000;
$body
}
CONF
}

nginx_start() { # dir [wrapper...], e.g. taskset -c 1: runs nginx in the background
    local dir=$1
    shift
    "$@" "$NGINX" -p "$dir" -c "$dir/nginx.conf" &
    PIDS+=($!)
}
