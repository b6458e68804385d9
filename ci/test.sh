#!/usr/bin/env bash
# The test command: installs what the tests need (PostgreSQL, Redis, nginx, Chromium from
# Debian when missing and we are root), then fmt, clippy, the whole test suite and
# the Kubernetes manifests against the API schemas (ci/validate-k8s.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# The reports' browser check (capacity's report.html in headless Chromium).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "ci/test.sh: installing ${need[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "ci/test.sh: missing ${need[*]}; install them (sudo apt-get install ${need[*]}) — tests that need them will fail" >&2
    fi
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# loadgen's engine and tls tests once on each backend by name (the run above used
# `auto`, which picks by load model): both must classify every outcome alike.
# (`--workspace`, not `-p loadgen`: the same feature set as above, so nothing
# rebuilds; the other crates' `it` binaries run too, with every test filtered out.)
LOADGEN_TEST_IO=uring cargo test --workspace --locked --test it -- engine:: tls::
LOADGEN_TEST_IO=epoll cargo test --workspace --locked --test it -- engine:: tls::
bash ci/validate-k8s.sh
