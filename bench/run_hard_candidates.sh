#!/usr/bin/env bash
# shellcheck disable=SC2034  # (file-wide) the settings below are read by bench/from_start.sh
# Hard ITM negatives drawn among K random candidates (train.itm_hard_candidates; docs/losses.md) on a
# merged stack, where scoring is the cost: each row turned negative is scored with K images instead
# of the whole batch. From one start - configs/demo.json (merged, tiny) at batch 64, 2,400 steps,
# random negatives - 400 more steps each with random negatives, hard negatives scored over every
# other image of the batch (K = 0, the default) and over K = 16, 8 and 4 drawn at random, for every seed given
# (train.seed: other batches and masks, same start), then exact ITM retrieval (`mmt eval`) on the
# easy and binding test sets. Prints one row per run (its ITM accuracy at the end, its training
# minutes) and per setting the mean and spread over the seeds (bench/from_start.sh).
# usage: bench/run_hard_candidates.sh [BUILD_DIR] [WORK_DIR] [SEEDS...]   (default seeds 1 2 3)
# About 40 minutes for three seeds on 2 cores (machine B: 3.3 for the start; a run 0.5 (random) to
# 5.2 (K = 0) minutes of training and 20 s of evaluation); finished runs are not run again.
set -euo pipefail
default_work=runs/hard_candidates  # WORK_DIR when not given
base=(--config configs/demo.json --set train.batch_size=64 --set train.log_every=50)
start_steps=2400 more_steps=400
more=(--set train.warmup_steps=0)
names=(random hard_all hard_k16 hard_k8 hard_k4)
declare -A settings=(
  [random]=""
  [hard_all]="--set train.itm_negatives=hard"
  [hard_k16]="--set train.itm_negatives=hard --set train.itm_hard_candidates=16"
  [hard_k8]="--set train.itm_negatives=hard --set train.itm_hard_candidates=8"
  [hard_k4]="--set train.itm_negatives=hard --set train.itm_hard_candidates=4"
)
# shellcheck source=bench/from_start.sh
source "$(dirname "$0")/from_start.sh"
