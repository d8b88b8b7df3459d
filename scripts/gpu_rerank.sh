#!/bin/bash
# Second GPU check (docs/gpu.md, docs/performance.md): rerank k = 128 against exact on a
# 1,000-image x 5,000-caption synthetic set with trained tiny models - a merged-attention model
# (MLM + ITM) as the re-scorer, and as first stages its own dual stage or a trained dot-product
# dual encoder (InfoNCE). Also brings back the GPU score matrices of the CPU-trained run
# $TINY for a numeric CPU/GPU comparison, and times base-preset training at a larger batch.
# Everything lands in $OUT/results.tar.gz. Usage: scripts/gpu_rerank.sh [deadline s, default 480]
set -u
T0=$(date +%s); DEADLINE=${1:-480}; OUT=${OUT:-out/gpu}; TINY=${TINY:-runs/gpu-tiny}
R=$OUT/r; mkdir -p "$R"
source scripts/gpu_build.sh  # gpu_build, left, step
pack() { tar -C "$R" -czf "$OUT/results.tar.gz" . ; }
trap pack EXIT

step build
gpu_build "$R"
MMT=build-gpu/mmt
GPU="--set runtime.device=cuda --set runtime.precision=fp32"  # fp32 unless a line asks for bf16 (auto would be bf16)
SET1K="--set eval.test_sets=easy --set data.synth.num_test_images=1000 --set data.synth.captions_per_image=5 --set eval.pair_batch=8192"

step "tiny CPU run on the GPU: score matrices"
for p in fp32 bf16; do
  $MMT eval --run "$TINY" --set eval.test_sets=easy $GPU --set runtime.precision=$p > /dev/null 2> "$R/tiny-$p.log"
  cp "$TINY/eval-easy-scores.npy" "$R/tiny-$p-scores.npy"
done

step "train: merged tiny (MLM + ITM) and a dot-product dual encoder, 1000 steps each"
$MMT train --config configs/demo.json --set train.checkpoint_every=0 $GPU --out runs/g-merged > "$R/train-merged.log" 2>&1
$MMT train --config configs/demo.json --set model.kind=dual_encoder --set model.attention=single_modality \
  --set model.dual_score=dot --set model.embed_dim=128 --set train.itm_weight=0 --set train.mlm_weight=0 \
  --set train.dual_contrastive_weight=1 --set train.itm_negative_prob=0 --set train.checkpoint_every=0 $GPU \
  --out runs/g-dual > "$R/train-dual.log" 2>&1
tail -2 "$R/train-merged.log" "$R/train-dual.log"

step "1k x 5k: dual encoder, exact merged, rerank (own dual, dual encoder) k=128"
ev() { name=$1; shift; timeout $(($(left) - 30)) $MMT eval $SET1K $GPU "$@" > "$R/$name.md" 2> "$R/$name.log"; echo "$name exit $?"; cp "${RUN}/eval.json" "$R/$name.json"; grep -A4 "R@1" "$R/$name.md" | sed -n 3p; }
RUN=runs/g-dual ev dual-encoder --run runs/g-dual
cp runs/g-dual/eval-easy-scores.npy runs/dual-first-stage.npy
RUN=runs/g-merged ev merged-exact --run runs/g-merged
RUN=runs/g-merged ev merged-rerank-own --run runs/g-merged --set eval.mode=rerank --set eval.rerank_k=128
RUN=runs/g-merged ev merged-rerank-dualenc --run runs/g-merged --set eval.mode=rerank --set eval.rerank_k=128 --set eval.first_stage=runs/dual-first-stage.npy
RUN=runs/g-merged ev merged-exact-bf16 --run runs/g-merged --set runtime.precision=bf16

step "base training, bf16, batch 1024"
BASE="--config configs/demo.json --set model.preset=base --set model.image_input=patches --set model.patch_size=16 --set data.synth.image_size=96"
[ "$(left)" -gt 60 ] && timeout $(($(left) - 10)) $MMT train $BASE --set train.steps=30 --set train.batch_size=1024 --set train.log_every=10 \
  --set train.checkpoint_every=0 $GPU --set runtime.precision=bf16 --out runs/g-base1024 > "$R/train-base1024.log" 2>&1
tail -1 "$R/train-base1024.log"; cp runs/g-base1024/metrics.jsonl "$R/train-base1024.jsonl" 2>/dev/null
step done
