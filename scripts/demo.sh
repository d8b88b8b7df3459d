#!/usr/bin/env bash
# `make demo`: pretrain the tiny model on the synthetic world, then print the zero-shot
# retrieval table with chance and the test sets' ceilings beside the model.
set -euo pipefail
mmt=${1:-build/mmt}
cd "$(dirname "$0")/.."
run=runs/demo-$(date +%Y%m%d-%H%M%S)
echo "mmt demo: pretraining the tiny merged-attention model (MLM + ITM) on the synthetic world,"
echo "          then scoring every caption-image pair of two test sets (about 5 minutes on 2 cores)"
"$mmt" train --config configs/demo.json --out "$run"
"$mmt" eval --run "$run"
echo
echo "mmt demo: run directory $run (config.json, metrics.jsonl, model.safetensors, eval.json, eval.md)"
