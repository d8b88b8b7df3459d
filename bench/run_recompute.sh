#!/usr/bin/env bash
# Activation recomputation (runtime.recompute_layers; docs/performance.md): the peak resident set
# and the training speed of `mmt train` without and with it - configs/demo.json (the tiny preset,
# ~20 text + 5 region tokens) at batch 128 and 512 and with the base preset (6 layers of 768) at
# batch 64, and configs/real/clipart-emoji.json (tiny, 65 patch tokens of 64 px images; skipped
# when scripts/make_real_datasets.sh has not made its data) at batch 256 - with dropout 0.1
# everywhere (the masks the recomputation must draw again). Each run in its own process (peak RSS
# from /usr/bin/time), examples/s from the run's closing line, and the two runs' final weights
# compared byte for byte.
# usage: bench/run_recompute.sh [BUILD_DIR] [WORK_DIR]     about 8 minutes on 2 cores
set -euo pipefail
build=${1:-build} work=${2:-/tmp/mmt_recompute}
mkdir -p "$work"
cases=("tiny-b128|configs/demo.json|--set train.batch_size=128 --set train.steps=80"
       "tiny-b512|configs/demo.json|--set train.batch_size=512 --set train.steps=24"
       "base-b64|configs/demo.json|--set model.preset=base --set train.batch_size=64 --set train.steps=12")
if [ -f data/real/emoji/dataset_emoji.json ]; then
  cases+=("real-b256|configs/real/clipart-emoji.json|--set train.batch_size=256 --set train.steps=12 --set train.warmup_steps=0")
fi
printf '| case | recompute | peak RSS (MB) | ex/s | weights as without |\n|---|---|---:|---:|---|\n'
for c in "${cases[@]}"; do
  IFS='|' read -r name config settings <<< "$c"
  for r in false true; do
    out=$work/$name-$r
    rm -rf "$out"
    # shellcheck disable=SC2086  # settings are words
    /usr/bin/time -f '%M' -o "$work/rss" "$build/mmt" train --config "$config" --out "$out" $settings \
      --set model.dropout=0.1 --set train.log_every=1000 --set train.checkpoint_every=0 \
      --set runtime.recompute_layers=$r > "$work/log" 2>&1
    rss=$(( $(cat "$work/rss") / 1024 ))
    rate=$(grep -o '[0-9]* ex/s' "$work/log" | tail -1 | cut -d' ' -f1)
    same=
    if [ "$r" = true ]; then
      if cmp -s "$work/$name-false/model.safetensors" "$out/model.safetensors"; then same=identical; else same=differ; fi
    fi
    printf '| %s | %s | %d | %s | %s |\n' "$name" "$r" "$rss" "$rate" "$same"
  done
done
