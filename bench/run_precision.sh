#!/usr/bin/env bash
# The training step in fp32 and in bf16 autocast on this CPU, alternating (the machine's speed
# drifts), with runtime.threads on auto (1 torch thread for fp32, the cores for bf16): medians and
# the ratio, for the tiny preset (batch 128) and the base preset (batch 32). bf16 only pays on a
# CPU with bf16 instructions (avx512_bf16, amx_bf16); elsewhere mmt warns and it is slower.
# docs/performance.md, "bf16 on a CPU".
# usage: bench/run_precision.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
py=/usr/bin/python3
run() {  # precision, then bench arguments
  local p=$1; shift
  "$build"/bench/mmt_bench_train_step --set runtime.precision="$p" "$@" 2>/dev/null |
    $py -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["examples_per_s"])'
}
grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo "this CPU has bf16 instructions" \
  || echo "this CPU has no bf16 instructions: expect bf16 to be slower"
for model in tiny base; do
  if [ $model = tiny ]; then args=(--steps 24 --warmup 3); else args=(--steps 6 --warmup 2 --set model.preset=base --set train.batch_size=32); fi
  fp32=() bf16=()
  for r in $(seq "$rounds"); do
    fp32+=("$(run fp32 "${args[@]}")"); bf16+=("$(run bf16 "${args[@]}")")
    echo "$model round $r: fp32 ${fp32[-1]} ex/s, bf16 ${bf16[-1]} ex/s"
  done
  $py - "$model" "${fp32[*]}" "${bf16[*]}" <<'PY'
import statistics, sys
name, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"{name}: median examples/s fp32 {statistics.median(a):.0f}, bf16 {statistics.median(b):.0f}: "
      f"bf16 / fp32 = {statistics.median(b) / statistics.median(a):.2f}x")
PY
done
