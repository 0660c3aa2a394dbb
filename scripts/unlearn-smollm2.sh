#!/usr/bin/env bash
# The real-model unlearning run behind docs/unlearning.md: plant a fictional biography and the
# MIT license in SmolLM2-135M with `lethe train`, show the target reproduces them, unlearn them
# with NPO, and report VerbMem, retain perplexity and Min-K% AUC before and after, in f32 and
# in the served format. Takes several minutes on 2 cores.
#   scripts/unlearn-smollm2.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/unlearn-run}
mkdir -p "$work"
lethe=target/release/lethe
cargo build --release --quiet
grep -E '"id": "(bio-venkataraman|mit-license)"' eval/forget.jsonl > "$work/plant.jsonl"
base=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

echo "== base model: extraction probes"
$lethe audit --model $base --forget "$work/plant.jsonl"
echo "== plant: lethe train (MLP weights, AdamW lr 1e-4)"
$lethe train --model $base --data "$work/plant.jsonl" --out "$work/target.gguf" --steps 20 --lr 1e-4 --train mlp
echo "== target model: extraction probes"
$lethe audit --model "$work/target.gguf" --forget "$work/plant.jsonl"
echo "== unlearn: NPO"
$lethe unlearn --model "$work/target.gguf" --forget "$work/plant.jsonl" --method npo --steps 40 --lr 1e-4 \
  --train mlp --target-verbmem 0.2 --eval-every 5 --out "$work/unlearned.gguf" --report "$work/report.json"
echo "== unlearned model (as served): extraction probes"
$lethe audit --model "$work/unlearned.gguf" --forget "$work/plant.jsonl"
