#!/usr/bin/env bash
# `make demo`: a part of the mini-study (configs/studies/mini.json, docs/study.md): its base cell
# (tiny merged-attention model, MLM + MRM + ITM, on the synthetic Conceptual-Captions analogue)
# and the modality-specific-attention cell, seed 1, 600 steps each; then the base model's zero-shot
# retrieval table with chance and the test sets' ceilings, the study's attention table, and what the
# base model ranks highest for one caption (mmt retrieve).
# The runs land in runs/studies/mini, so a later `mmt study run configs/studies/mini.json`
# skips them.
set -euo pipefail
mmt=${1:-build/mmt}
cd "$(dirname "$0")/.."
out=${MMT_DEMO_OUT:-runs/studies/mini}
echo "mmt demo: two cells of the mini-study - merged vs modality-specific attention - each pretrained"
echo "          600 steps on the synthetic world, then every caption-image pair of two test sets scored"
echo "          (about 4 minutes on 2 cores)"
"$mmt" study run configs/studies/mini.json --out "$out" --cells base,attention=single_modality --seeds 1
echo
cat "$out/cells/base/seed-1/eval.md"
"$mmt" study report "$out" 2>/dev/null | awk '/^## attention/{on=1} /^## loss/{on=0} on' | grep -v '^!\['
echo
echo "mmt demo: what the base model ranks highest for one caption (mmt retrieve; --image N goes the other way):"
"$mmt" retrieve --run "$out/cells/base/seed-1" "there is a red star" --top 3 2>/dev/null | tail -n +2
echo
echo "mmt demo: runs in $out/cells/*/seed-1 (config.json, metrics.jsonl, model.safetensors, eval.json);"
echo "          the whole study: mmt study run configs/studies/mini.json && mmt study report $out"
