#!/usr/bin/env bash
# shellcheck disable=SC2034  # (file-wide) the settings below are read by bench/from_start.sh
# What hard ITM negatives and their temperature do to retrieval, over seeds (docs/losses.md, "Hard
# negatives are often not negatives"). From one start - the align table's in-batch model, 2,400
# steps of `single_modality*3,merged` with the align head - 600 more steps each with random
# negatives, hard negatives at T = 1 (ALBEF's sampling) and at T = 4 (train.itm_hard_temperature),
# for every seed given (train.seed: other batches and masks, same start), then exact ITM retrieval
# (`mmt eval`) on the easy and binding test sets. Prints one table row per run (with its ITM accuracy at
# the end of training) and, per setting, the mean and spread over the seeds (bench/from_start.sh).
# usage: bench/run_hard_temperature.sh [BUILD_DIR] [WORK_DIR] [SEEDS...]   (default seeds 1 2 3)
# About 30 minutes for three seeds on 2 cores (machine B: 9.5 for the start, ~2 a run); the start is
# trained once and reused, finished runs are not run again.
set -euo pipefail
default_work=runs/hard_temperature  # WORK_DIR when not given
base=(--config configs/demo.json --set 'model.layers=single_modality*3,merged' --set model.align=true
      --set train.align_weight=1)
start_steps=2400 more_steps=600
more=()
names=(random hard_t1 hard_t4)
declare -A settings=(
  [random]=""
  [hard_t1]="--set train.itm_negatives=hard"
  [hard_t4]="--set train.itm_negatives=hard --set train.itm_hard_temperature=4"
)
# shellcheck source=bench/from_start.sh
source "$(dirname "$0")/from_start.sh"
