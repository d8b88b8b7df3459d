#!/usr/bin/env bash
# The benchmarks of docs/performance.md that need neither a trained run nor scratch data (`make
# bench`; about 25 minutes on 2 cores, estimated from the parts). The others, by hand: bench/run_data.sh (2.1 GB of scratch
# files), bench/run_distributed.sh (N processes), bench/run_eval_threads.sh RUN_DIR (a trained run),
# bench/run_hard_temperature.sh (hard ITM negatives over seeds: 10 training runs, docs/losses.md).
# usage: bench/run_all.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
echo "== training step: mmt vs plain PyTorch (tiny preset, batch 128) =="
bench/run_train_step.sh "$build" 3
echo "== training step: fp32 vs bf16 on this CPU (tiny and base presets) =="
bench/run_precision.sh "$build" 3
echo "== losses: contrastive ITM vs classification (tiny preset) =="
bench/run_losses.sh "$build"
echo "== the align head's cost: mixed stack, random and hard ITM negatives =="
bench/run_align.sh "$build"
echo "== activation recomputation: peak memory and speed without and with it =="
bench/run_recompute.sh "$build"
echo "== retrieval scoring: exact, caching, rerank =="
bench/run_eval.sh "$build"
echo "== exact scoring against eval.pair_batch =="
bench/run_pair_batch.sh "$build"
