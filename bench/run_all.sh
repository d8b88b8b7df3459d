#!/usr/bin/env bash
# All benchmarks of docs/performance.md. usage: bench/run_all.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
echo "== training step: mmt vs plain PyTorch (tiny preset, batch 128) =="
bench/run_train_step.sh "$build" 3
echo "== losses: contrastive ITM vs classification (tiny preset) =="
bench/run_losses.sh "$build"
echo "== exact scoring against eval.pair_batch =="
bench/run_pair_batch.sh "$build"
