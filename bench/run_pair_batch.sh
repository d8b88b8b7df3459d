#!/usr/bin/env bash
# Exact scoring against eval.pair_batch (pairs per forward pass): pairs/s and the process's peak
# resident memory, untrained models on random inputs, the default scoring threads (one per core).
# Shapes: the tiny preset with a 64 px / 8 px-patch model's 65 image tokens and 12 caption tokens
# (the clip-art run's), with 37 region tokens and 20 caption tokens (the synthetic world's), and the
# base preset with the latter. docs/performance.md.
# usage: bench/run_pair_batch.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
build=${1:-build}
rounds=${2:-1}
rss=$(mktemp)
trap 'rm -f "$rss"' EXIT
b() {
  local s
  s=$(/usr/bin/time -f %M -o "$rss" "$build"/bench/mmt_bench_eval "$@" 2>/dev/null | tail -n 1 |
      /usr/bin/python3 -c 'import json,sys; print("%.0f pairs/s" % json.load(sys.stdin)["pairs_per_s"])')
  echo "$s, peak $(( $(cat "$rss") / 1024 )) MB"
}
for r in $(seq "$rounds"); do
  for pb in 32 64 128 256 512 1024 2048; do
    echo "round $r pair_batch $pb tiny, 65 + 12 tokens, 50 x 250: $(b --images 50 --captions 250 --image-tokens 65 --text-tokens 12 --set model.preset=tiny --set eval.pair_batch=$pb)"
    echo "round $r pair_batch $pb tiny, 37 + 20 tokens, 50 x 250: $(b --images 50 --captions 250 --image-tokens 37 --text-tokens 20 --set model.preset=tiny --set eval.pair_batch=$pb)"
    # base: 1,600 pairs, so every size up to 512 gives each scoring thread several passes
    if [ "$pb" -le 512 ]; then
      echo "round $r pair_batch $pb base, 37 + 20 tokens, 20 x 80: $(b --images 20 --captions 80 --image-tokens 37 --text-tokens 20 --set model.preset=base --set eval.pair_batch=$pb)"
    fi
  done
done
