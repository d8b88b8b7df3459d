#!/usr/bin/env bash
# Retrieval scoring throughput on this machine (docs/performance.md, issue 6):
#  1. exact pairs/s, merged stack, tiny and base presets;
#  2. caching the unimodal layers of the release's mixed-modality stack (5 single_modality +
#     1 merged) against no caching, with the FLOP ratio it should approach;
#  3. rerank k against exact on the same set (time only: the model is untrained; recall costs
#     are measured on trained models, docs/performance.md).
# Shapes: 37 image tokens (36 regions + global), 20 caption tokens.
# usage: bench/run_eval.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
b() { "$build"/bench/mmt_bench_eval "$@" 2>/dev/null; }
mixed="model.layers=single_modality,single_modality,single_modality,single_modality,single_modality,merged"
echo "== exact, merged =="
echo "tiny: $(b --images 50 --captions 250 --set model.preset=tiny)"
echo "base: $(b --images 10 --captions 50 --set model.preset=base)"
echo "== mixed-modality, cached vs uncached =="
echo "tiny cached:   $(b --images 50 --captions 250 --set model.preset=tiny --set $mixed)"
echo "tiny uncached: $(b --images 50 --captions 250 --set model.preset=tiny --set $mixed --no-cache)"
echo "base cached:   $(b --images 10 --captions 50 --set model.preset=base --set $mixed)"
echo "base uncached: $(b --images 10 --captions 50 --set model.preset=base --set $mixed --no-cache)"
echo "== rerank k=16 vs exact, tiny merged, 100 images x 500 captions =="
echo "exact:  $(b --images 100 --captions 500 --set model.preset=tiny)"
echo "rerank: $(b --images 100 --captions 500 --set model.preset=tiny --mode rerank --k 16)"
