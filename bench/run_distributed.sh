#!/usr/bin/env bash
# Data-parallel scaling on this machine (docs/performance.md, issue 8): the same training (tiny
# preset, synthetic world, global batch 128, 150 steps) as 1 process using every core (torch 1
# thread + OpenBLAS on all cores, the fastest single-process setting here) and as N processes over
# Gloo (torchrun's environment set by hand), each with cores / N OpenBLAS threads. Alternates the
# two R times (machine noise is +-20 %) and prints examples/s of each, the share of rank 0's time in
# the gradient all-reduce (waiting for the slower rank included) and the median ratio.
# Nothing else should run on the machine meanwhile.
# usage: bench/run_distributed.sh [BUILD_DIR] [N] [R] ["--set k=v ..." for both, e.g. runtime.dist_bucket_mb=0]
set -euo pipefail
build=${1:-build}
n=${2:-2}
reps=${3:-3}
extra=${4:-}
mmt=$(realpath "$build"/mmt)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
args="train --config configs/demo.json --set train.steps=150 --set train.warmup_steps=15 --set train.log_every=50
      --set train.checkpoint_every=0 --set data.synth.num_test_images=20 --set runtime.threads=1 $extra"
rate() { sed -n 's/.* steps in .* (\([0-9]*\) ex\/s.*/\1/p' "$1"; }
ratios=()
for rep in $(seq 1 "$reps"); do
  rm -rf "$work/one" "$work/many"
  $mmt $args --out "$work/one" 2>"$work/one.log"
  one=$(rate "$work/one.log")
  port=$((20000 + RANDOM % 20000))
  for r in $(seq 1 $((n - 1))); do
    RANK=$r WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port $mmt $args --out "$work/many" \
      2>"$work/rank$r.log" &
  done
  RANK=0 WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port $mmt $args --out "$work/many" \
    2>"$work/rank0.log"
  wait
  many=$(rate "$work/rank0.log")
  share=$(grep -o '[0-9]*% in the gradient all-reduce' "$work/rank0.log")
  ratio=$(awk -v a="$one" -v b="$many" 'BEGIN { printf "%.2f", b / a }')
  ratios+=("$ratio")
  echo "run $rep: 1 process $one ex/s | $n processes $many ex/s ($share) | ${ratio}x"
done
echo "1 process: $(grep -o 'threads: .*' "$work/one.log" | head -1); $n processes: $(grep -o 'threads: .*' "$work/rank0.log" | head -1) each"
printf '%s\n' "${ratios[@]}" | sort -n | awk -v n="$n" '{ v[NR] = $1 } END { printf "scaling 1 -> %d processes: median %.2fx of %d runs\n", n, v[int((NR + 1) / 2)], NR }'
