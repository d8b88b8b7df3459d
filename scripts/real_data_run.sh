#!/usr/bin/env bash
# A real-data pretraining run in one command: builds the offline datasets (openclipart, emoji) and
# the bert-base-uncased vocabulary if missing, then pretrains configs/real/clipart-emoji.json (or
# the config given: configs/real/clipart-emoji-dual.json is its dual-encoder twin,
# configs/real/clipart-emoji-align.json its align-before-fuse variant) into
# runs/<config name>.
# usage: scripts/real_data_run.sh [CONFIG.json] [RUN_DIR] [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
config=configs/real/clipart-emoji.json
if [[ ${1:-} == *.json ]]; then config=$1; shift; fi
run=runs/$(basename "$config" .json)
if [[ $# -gt 0 && ${1:-} != --* ]]; then run=$1; shift; fi
make --no-print-directory build
scripts/make_real_datasets.sh data/real
scripts/make_bert_vocab.sh build/bert-base-uncased-vocab.txt
rm -rf "$run"
build/mmt train --config "$config" --out "$run" "$@"
