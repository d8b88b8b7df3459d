#!/usr/bin/env bash
# Times the demo's training step in mmt and in the plain PyTorch reference, side by side on this
# machine, alternating runs (the machine's speed drifts), and prints medians and the ratio.
# usage: bench/run_train_step.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
steps=48  # a multiple of the 8-batch bucketing pool: both programs see the same examples
dump=$(mktemp -d)
trap 'rm -rf "$dump"' EXIT
py=/usr/bin/python3  # Debian's python3-torch

mmt_runs=() ref1_runs=() ref2_runs=()
for r in $(seq "$rounds"); do
  out=$("$build"/bench/mmt_bench_train_step --steps $steps --dump "$dump" 2>/dev/null)
  echo "mmt      : $out"
  mmt_runs+=("$(echo "$out" | $py -c 'import json,sys; print(json.load(sys.stdin)["examples_per_s"])')")
  out=$(OPENBLAS_NUM_THREADS=2 $py bench/reference_train_step.py "$dump" --steps $steps --threads 1)
  echo "reference: $out"
  ref1_runs+=("$(echo "$out" | $py -c 'import json,sys; print(json.load(sys.stdin)["examples_per_s"])')")
  out=$($py bench/reference_train_step.py "$dump" --steps $steps --threads 2)
  echo "reference: $out"
  ref2_runs+=("$(echo "$out" | $py -c 'import json,sys; print(json.load(sys.stdin)["examples_per_s"])')")
done
$py - "${mmt_runs[*]}" "${ref1_runs[*]}" "${ref2_runs[*]}" <<'PY'
import statistics, sys
mmt, r1, r2 = (list(map(float, a.split())) for a in sys.argv[1:4])
m, a, b = statistics.median(mmt), statistics.median(r1), statistics.median(r2)
best = max(a, b)
print(f"median examples/s: mmt {m:.0f} | reference (1 torch + 2 BLAS threads) {a:.0f} | reference (2 torch threads) {b:.0f}")
print(f"mmt / best reference = {m / best:.2f}x")
PY
