#!/usr/bin/env bash
# Scale curves: snapshot build, add 10 -> live, Check latency and memory against the size of
# the forget list, one fresh process per point (examples/scale.rs), then the figure.
#
#   bench/scale.sh                                   # text layers at 1k, 10k, 100k; semantic at 1k, 10k
#   SIZES="1000 10000" SEMANTIC_SIZES="1000" bench/scale.sh
#
# Output: target/bench/scale/*.json (one per point), bench/results/scale.json (all points, with
# the machine and date) and docs/img/scale.png (bench/plot.py, matplotlib in
# target/bench/plot-venv, installed from bench/plot-requirements.txt).
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 10000 100000"}
SEMANTIC_SIZES=${SEMANTIC_SIZES:-"1000 10000"}
OUT=${OUT:-target/bench/scale}
mkdir -p "$OUT" docs/img bench/results
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --example scale
fi
cp target/release/examples/scale "$OUT/scale"
for n in $SIZES; do
  [ -s "$OUT/text-$n.json" ] || "$OUT/scale" --docs "$n" --out "$OUT/text-$n.json"
done
for n in $SEMANTIC_SIZES; do
  [ -s "$OUT/semantic-$n.json" ] || "$OUT/scale" --docs "$n" --semantic --out "$OUT/semantic-$n.json"
done
jq -s '{machine: {nproc: '"$(nproc)"', cpu: "'"$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"'",
        ram_gb: '"$(awk '/MemTotal/{printf "%.1f", $2/1048576}' /proc/meminfo)"'}, date: "'"$(date -u +%F)"'",
        points: .}' "$OUT"/text-*.json "$OUT"/semantic-*.json >bench/results/scale.json
if [ ! -x target/bench/plot-venv/bin/python ]; then
  python3 -m venv target/bench/plot-venv
  target/bench/plot-venv/bin/pip install --quiet -r bench/plot-requirements.txt
fi
target/bench/plot-venv/bin/python bench/plot.py bench/results/scale.json docs/img/scale.png
