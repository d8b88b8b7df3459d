#!/usr/bin/env bash
# shellcheck disable=SC2034  # (file-wide) the settings below are read by bench/from_start.sh
# Which side an ITM negative swaps (train.itm_swap; docs/losses.md): the image (mmt's default, the
# release's), the caption, either - one of them per row at random - or both: a marked row keeps its
# pair and adds one negative of each side, as ALBEF's ITM does with hard negatives (ALBEF marks
# every row: itm_negative_prob = 1, hard_k8_both_all). Ranking images for a caption (text -> image)
# is what image swaps train; ranking captions for an image, what caption swaps train. both trains
# on up to twice the rows, so image swaps for 800 steps (hard_k8_800, random_800) are its control at
# about its training time. From the start bench/run_hard_candidates.sh uses (configs/demo.json, merged, tiny,
# batch 64, 2,400 steps, random negatives; the same WORK_DIR reuses it and its random and hard_k8
# runs), 400 more steps for each setting and every seed given, then exact ITM retrieval (`mmt
# eval`) on the easy and binding test sets; one row per run and per setting the mean and spread over
# the seeds (bench/from_start.sh).
# usage: bench/run_itm_swap.sh [BUILD_DIR] [WORK_DIR] [SEEDS...]   (default seeds 1 2 3)
# About 67 minutes for three seeds on 2 cores from nothing, 57 with the start and the image-swap
# runs of run_hard_candidates.sh in WORK_DIR; finished runs are not run again.
set -euo pipefail
default_work=runs/hard_candidates  # WORK_DIR when not given
base=(--config configs/demo.json --set train.batch_size=64 --set train.log_every=50)
start_steps=2400 more_steps=400
more=(--set train.warmup_steps=0)
table_flags=--text  # text R@1 too: what caption swaps train
names=(random random_caption random_either random_both random_800 hard_k8 hard_k8_caption hard_k8_either hard_k8_both hard_k8_both_all hard_k8_800)
hard_k8="--set train.itm_negatives=hard --set train.itm_hard_candidates=8"
declare -A settings=(
  [random]=""
  [random_caption]="--set train.itm_swap=caption"
  [random_either]="--set train.itm_swap=either"
  [random_both]="--set train.itm_swap=both"  # the two added rows' partners drawn uniformly
  [random_800]="--set train.steps=800"  # random image swaps for twice the steps: random_both's rows
  [hard_k8]="$hard_k8"
  [hard_k8_caption]="$hard_k8 --set train.itm_swap=caption"
  [hard_k8_either]="$hard_k8 --set train.itm_swap=either"
  [hard_k8_both]="$hard_k8 --set train.itm_swap=both"
  [hard_k8_both_all]="$hard_k8 --set train.itm_swap=both --set train.itm_negative_prob=1"
  [hard_k8_800]="$hard_k8 --set train.steps=800"  # image swaps for twice the steps: both's training time
)
# shellcheck source=bench/from_start.sh
source "$(dirname "$0")/from_start.sh"
