#!/bin/sh
# Reproduces every table and the chart of BENCHMARKS.md in one command, into one folder:
#   side-by-side run of all scenarios (tools/bench.py: results.json, results.md, results.csv,
#   chart.svg, results.txt) and the criterion benches (engine, offload, codecs: criterion-*.txt).
#
#   tools/reproduce.sh [--quick] [OUTDIR]      (as root, after the README's set-up)
#
# --quick: one short round of everything (a smoke run; its figures are not for comparison).
# BENCH_ARGS: more options for tools/bench.py (e.g. "--scenarios classic-ptp,fast-ptp").
# Progress goes to stderr; OUTDIR defaults to bench-results-<UTC date and time>.
set -eu

quick=""
if [ "${1:-}" = "--quick" ]; then
    quick=1
    shift
fi
out=${1:-bench-results-$(date -u +%Y%m%dT%H%M%SZ)}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"

say() { echo "reproduce: $*" >&2; }

say "building (release)"
cargo build --release

if [ -n "$quick" ]; then
    side="--quick"
    crit="--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10"
else
    side="--rounds 3 --duration 3 --ping-count 100"
    crit="--quick"
fi

say "side-by-side benchmark (every scenario; results in $out)"
# shellcheck disable=SC2086
python3 tools/bench.py $side ${BENCH_ARGS:-} --json "$out/results.json" --markdown "$out/results.md" \
    --csv "$out/results.csv" --chart "$out/chart.svg" > "$out/results.txt"

for b in engine offload codecs; do
    say "criterion: $b"
    # shellcheck disable=SC2086
    cargo bench --bench "$b" -- $crit > "$out/criterion-$b.txt" 2>&1 || {
        say "cargo bench --bench $b failed: see $out/criterion-$b.txt"
        exit 1
    }
done
say "criterion: engine flood (worker CPU per frame)"
# shellcheck disable=SC2086
cargo bench --bench engine -- flood $crit > "$out/criterion-engine-flood.txt" 2>&1 || {
    say "cargo bench --bench engine -- flood failed: see $out/criterion-engine-flood.txt"
    exit 1
}

say "done: $out (results.md and chart.svg are BENCHMARKS.md's side-by-side table and chart)"
