#!/usr/bin/env bash
# Tells whether HEAD_REF made things worse than BASE_REF: builds both commits in
# git worktrees, runs the same slolab command with each build on this machine,
# N times each, interleaved (base, head, head, base, ...) so that drift in the
# machine's load falls on both sides alike, then runs `slolab compare`.
#
# usage: ci/compare-commits.sh [options] BASE_REF HEAD_REF -- SLOLAB-ARGS...
#   SLOLAB-ARGS is a `load` or `run` command line without the binary, e.g.
#     load -z 10s -c 20 http://127.0.0.1:8080/tasks   (--save FILE is appended)
#     run profiles/baseline.toml                        (--out DIR is appended)
# options:
#   -r, --repeat N        runs per side (default 3)
#   -o, --out DIR         where results and the report go (default build/compare/results-<time>)
#   -w, --work DIR        worktrees, build dir and binaries (default build/compare)
#   --cargo-profile P     cargo profile to build (default release)
#   --compare-arg ARG     passed to `slolab compare` (repeatable), e.g. --compare-arg=--threshold=10
# Writes OUT/compare.txt, OUT/compare.md (for $GITHUB_STEP_SUMMARY) and OUT/compare.json.
# Exit status: that of `slolab compare` (0 no regression, 4 regression), 1 on any failure.
set -euo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 1; }
die() { echo "compare-commits: $*" >&2; exit 1; }

repeat=3
out=""
work=""
profile=release
compare_args=()
refs=()
while [ $# -gt 0 ]; do
    case "$1" in
        -r|--repeat) repeat="${2:?}"; shift 2 ;;
        --repeat=*) repeat="${1#*=}"; shift ;;
        -o|--out) out="${2:?}"; shift 2 ;;
        --out=*) out="${1#*=}"; shift ;;
        -w|--work) work="${2:?}"; shift 2 ;;
        --work=*) work="${1#*=}"; shift ;;
        --cargo-profile) profile="${2:?}"; shift 2 ;;
        --cargo-profile=*) profile="${1#*=}"; shift ;;
        --compare-arg) compare_args+=("${2:?}"); shift 2 ;;
        --compare-arg=*) compare_args+=("${1#*=}"); shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) refs+=("$1"); shift ;;
    esac
done
[ ${#refs[@]} -eq 2 ] || usage
[ $# -gt 0 ] || die "no slolab command after --"
case "$repeat" in ''|*[!0-9]*|0) die "--repeat wants a positive number, got '$repeat'" ;; esac
slolab_args=("$@")
subcommand="${slolab_args[0]}"
case "$subcommand" in
    load|run) ;;
    *) die "the slolab command must be 'load ...' or 'run PROFILE ...', got '$subcommand'" ;;
esac

repo="$(git rev-parse --show-toplevel)" || die "not inside a git repository"
cd "$repo"
base_sha="$(git rev-parse --verify "${refs[0]}^{commit}")" || die "unknown BASE_REF ${refs[0]}"
head_sha="$(git rev-parse --verify "${refs[1]}^{commit}")" || die "unknown HEAD_REF ${refs[1]}"
work="${work:-$repo/build/compare}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
out="${out:-$work/results-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# Worktrees are removed however the script ends; the binaries stay in $work/bin.
worktrees=()
cleanup() {
    for wt in "${worktrees[@]}"; do
        git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || true
    done
    git -C "$repo" worktree prune >/dev/null 2>&1 || true
}
trap cleanup EXIT

# One target dir for both builds, so the dependencies compile once.
export CARGO_TARGET_DIR="$work/target"
mkdir -p "$work/bin"
profile_dir="$profile"
[ "$profile" = dev ] && profile_dir=debug
build() { # side sha
    local side="$1" sha="$2" wt="$work/src-$1"
    git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
    git -C "$repo" worktree add --detach "$wt" "$sha" >/dev/null
    worktrees+=("$wt")
    echo "compare-commits: building $side ${sha:0:12} ($profile)" >&2
    (cd "$wt" && cargo build --locked --profile "$profile" --bin slolab) >&2
    cp "$CARGO_TARGET_DIR/$profile_dir/slolab" "$work/bin/slolab-$side"
}
build base "$base_sha"
build head "$head_sha"

run_once() { # side rep
    local side="$1" rep="$2" status=0
    local dir="$out/$side/run-$rep"
    mkdir -p "$dir"
    local extra=()
    if [ "$subcommand" = load ]; then
        extra=(--save "$dir/results.json")
    else
        extra=(--out "$dir")
    fi
    echo "compare-commits: $side run $rep/$repeat" >&2
    # Run from the worktree, so relative profile paths and the recorded commit
    # are the side's own.
    (cd "$work/src-$side" && "$work/bin/slolab-$side" "${slolab_args[@]}" "${extra[@]}") \
        >"$dir/stdout.txt" 2>"$dir/stderr.txt" || status=$?
    # 3 is "an SLO was not met": a measurement, not a failure to measure.
    if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
        cat "$dir/stderr.txt" >&2
        die "$side run $rep failed with exit status $status (output in $dir)"
    fi
    find "$dir" -name results.json | grep -q . || die "$side run $rep wrote no results.json under $dir"
}
for rep in $(seq 1 "$repeat"); do
    # ABBA order: neither side always runs first on a warming or cooling machine.
    if [ $((rep % 2)) -eq 1 ]; then
        run_once base "$rep"; run_once head "$rep"
    else
        run_once head "$rep"; run_once base "$rep"
    fi
done

compare=("$work/bin/slolab-head" compare "$out/base" "$out/head" ${compare_args[@]+"${compare_args[@]}"})
status=0
"${compare[@]}" --format md >"$out/compare.md" || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 4 ] || die "slolab compare failed (exit $status)"
"${compare[@]}" --format json >"$out/compare.json" || true
"${compare[@]}" --format text | tee "$out/compare.txt" || true
echo "compare-commits: base ${base_sha:0:12}, head ${head_sha:0:12}; report in $out" >&2
exit "$status"
