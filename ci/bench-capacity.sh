#!/usr/bin/env bash
# Benchmark (not a test): the capacity of the challenge-01 stack on this machine at
# 1, 2 and 4 API instances, the Universal Scalability Law fitted to them, and what
# the course's 10 M req/s would take by that model. Prints the intervals, the
# binding objective per count, σ, κ, the projection, how long the search took and
# how many probes it used. Needs PostgreSQL and Redis (ci/test.sh installs them).
#
#   ci/bench-capacity.sh                               # defaults below
#   PROFILE=profiles/horizontal.toml INSTANCES=1,2 ci/bench-capacity.sh
#   EXTRA="--window 5s --warmup 1s" ci/bench-capacity.sh   # a quicker, coarser search
#   SKIP_BUILD=1 ci/bench-capacity.sh                  # reuse the release build
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-profiles/challenge-01.toml}
INSTANCES=${INSTANCES:-1,2,4}
TARGET_RATE=${TARGET_RATE:-10M}
OUT=${OUT:-results/bench-capacity}
EXTRA=${EXTRA:-}

command -v python3 >/dev/null || { echo "bench-capacity: needs python3" >&2; exit 1; }
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/slolab

mkdir -p "$(dirname "$OUT")"
start=$(date +%s)
# shellcheck disable=SC2086
"$BIN" capacity "$PROFILE" --instances "$INSTANCES" --target-rate "$TARGET_RATE" \
    --out "$OUT" --json $EXTRA >"$OUT.json.tmp" || rc=$?
rc=${rc:-0}
took=$(( $(date +%s) - start ))
mv "$OUT.json.tmp" "$OUT.json"

python3 - "$OUT.json" "$took" "$rc" <<'PY'
import json, sys
a = json.load(open(sys.argv[1])); took = int(sys.argv[2]); rc = int(sys.argv[3])
probes = sum(len(s["probes"]) for s in a["searches"])
print(f"capacity of {a['name']}: {probes} probes in {took // 60} min {took % 60} s (exit {rc}); results in {a['dir']}")
print(f"{'instances':>9}  {'last pass':>10}  {'first fail':>10}  {'probes':>6}  binding")
for s in a["searches"]:
    lo, hi = s["interval_rps"]
    b = s.get("binding") or {}
    f = lambda v: "—" if v is None else f"{v:.0f}"
    print(f"{str(s['instances']):>9}  {f(lo):>10}  {f(hi):>10}  {len(s['probes']):>6}  "
          f"{b.get('name', s['outcome'])} {b.get('measured', '')} vs {b.get('target', '')}")
fit = a.get("scaling")
if fit:
    peak = fit.get("peak_instances")
    print(f"USL: lambda = {fit['lambda']:.0f} req/s, sigma = {fit['sigma']:.4f}, kappa = {fit['kappa']:.6f}, "
          f"R2 = {fit['r_squared']:.3f}, peak " + (f"{fit['ceiling_rps']:.0f} req/s at N = {peak:.1f}" if peak else "none"))
p = a.get("projection")
if p:
    print(f"10M plan (a model): {p['cells']} stack(s) of {p['instances_per_cell']} instances "
          f"({p['cell_rps']:.0f} req/s each), {p['instances_total']} instances in all, "
          f"{p.get('generator_shards')} generator shards ({p.get('generator_cores')} cores)")
    for x in p["assumptions"]:
        print(f"  - {x}")
PY
