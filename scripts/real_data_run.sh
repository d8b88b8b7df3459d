#!/usr/bin/env bash
# A real-data pretraining run in one command: builds the offline datasets (openclipart, emoji) and
# the bert-base-uncased vocabulary if missing, then pretrains configs/real/clipart-emoji.json.
# usage: scripts/real_data_run.sh [RUN_DIR] [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/clipart-emoji}; shift || true
make --no-print-directory build
scripts/make_real_datasets.sh data/real
scripts/make_bert_vocab.sh build/bert-base-uncased-vocab.txt
rm -rf "$run"
build/mmt train --config configs/real/clipart-emoji.json --out "$run" "$@"
