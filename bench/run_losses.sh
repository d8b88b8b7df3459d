#!/usr/bin/env bash
# Contrastive ITM (K = 32, 1024) and hard-negative ITM against classification ITM at the same batch, tiny preset, for a
# merged stack (one pass per pair, chunked) and a single-modality one (unimodal scoring path).
# Each configuration runs in its own process so its peak memory is its own.
# usage: bench/run_losses.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
common=(--set train.batch_size=32 --set data.synth.num_train_images=5000 --set data.synth.num_test_images=10)
for attention in merged single_modality; do
  run() { "$build"/bench/mmt_bench_losses --steps 3 "${common[@]}" --set model.attention=$attention "$@" 2>/dev/null; }
  echo "== $attention =="
  echo "classification ITM : $(run)"
  echo "hard-negative ITM  : $(run --set train.itm_negatives=hard)"
  echo "hard, 8 candidates : $(run --set train.itm_negatives=hard --set train.itm_hard_candidates=8)"
  echo "  and itm_swap=both : $(run --set train.itm_negatives=hard --set train.itm_hard_candidates=8 --set train.itm_swap=both)"
  for k in 32 1024; do
    echo "contrastive K=$k   : $(run --set train.itm_weight=0 --set train.itm_contrastive_weight=1 \
      --set train.itm_contrastive_negatives=$k --set train.itm_negative_prob=0 --set train.itm_contrastive_chunk=2048)"
  done
done
# A mixed stack: each caption and image through the 3 single_modality layers once, the pairs through the merged one.
run() { "$build"/bench/mmt_bench_losses --steps 3 "${common[@]}" --set 'model.layers=single_modality*3,merged' "$@" 2>/dev/null; }
echo "== single_modality*3,merged =="
echo "contrastive K=32   : $(run --set train.itm_weight=0 --set train.itm_contrastive_weight=1 \
  --set train.itm_contrastive_negatives=32 --set train.itm_negative_prob=0 --set train.itm_contrastive_chunk=2048)"
