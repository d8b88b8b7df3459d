#!/bin/bash
# GPU checks of training (issue 8), in one go, for a machine with one NVIDIA GPU, CUDA and
# PyTorch 2.x (docs/gpu.md). Builds mmt, the GPU tests and the training-step bench against
# PyTorch's libtorch, then, most important first, each under the deadline:
#   1. the GPU tests (tests/gpu/gpu_test.cpp),
#   2. base-preset training steps (bf16 and fp32, batch 256 to 4096, fused layer kernels on and
#      off, steps read one late or each at once): examples/s and TFLOP/s against the card's measured bf16 matrix peak
#      (bench/train_step_bench.cpp),
#   3. a Kineto trace of three base bf16 steps (kernel times: scripts/trace_summary.py),
#   4. `mmt train` end to end on the base preset, batch threads automatic,
#   5. `exact` scoring of that run's model at 2,048 (the CUDA default) and 8,192 pairs a pass,
#   6. the NCCL process group (cmake -DMMT_NCCL=ON) built and run as a group of one rank,
#   7. synthetic batch building at 1 to 15 threads (bench/data_bench.cpp `synthetic`).
#   8. `exact` on a Flickr30k-sized test set (1,000 images x 5,000 captions) with step 4's model.
# Results, logs and the trace go in $OUT/results.tar.gz (a device machine returns 8 files at most).
# Usage: OUT=DIR scripts/gpu_train_check.sh [deadline seconds, default 480] 2>&1 | tee DIR/console.log
# (console.log is kept beside the archive). Needs .gpu/ (scripts/gpu_deps.sh). STEPS="1 2 4"
# runs only those steps (default all; 5 and 8 need 4's model).
set -u
T0=$(date +%s)
DEADLINE=${1:-480}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
source scripts/gpu_build.sh  # gpu_build, left, step
STEPS=${STEPS:-1 2 3 4 5 6 7 8}
want() { [[ " $STEPS " == *" $1 "* ]]; }

step "machine"
nvidia-smi -L; nproc; python3 -c 'import torch;print("torch", torch.__version__)'

step "build"
gpu_build "$OUT"
echo "built in $(($(date +%s) - T0)) s"
MMT=build-gpu/mmt BENCH=build-gpu/bench/mmt_bench_train_step

if want 1; then
step "1. GPU tests (NCCL in step 6; the libtorch-warning test in a process of its own: it crashed once)"
timeout 150 build-gpu/tests/mmt_gpu_tests --gtest_filter='-*Nccl*:*Warning*' 2>&1 | tail -25
timeout 30 build-gpu/tests/mmt_gpu_tests --gtest_filter='*Warning*' 2>&1 | tail -4; echo "exit status ${PIPESTATUS[0]}"
tests/check_executable_exports.sh build-gpu/mmt build-gpu/tests/mmt_gpu_tests $BENCH
fi

BASE="--config configs/demo.json --set model.preset=base --set model.image_input=patches --set model.patch_size=16 --set data.synth.image_size=96"
run_bench() {  # name, then bench arguments
  local name=$1; shift
  [ "$(left)" -lt 100 ] && { echo "skipped $name"; return; }
  timeout 90 $BENCH $BASE --set runtime.device=cuda --steps 20 --warmup 5 "$@" > "$OUT/bench-$name.json" 2> "$OUT/bench-$name.log" \
    || tail -5 "$OUT/bench-$name.log"
  echo "$name: $(grep 'mmt train step' "$OUT/bench-$name.log")"
}
if want 2; then
step "2. base training steps (12 text + 37 image tokens)"
run_bench bf16-b1024-device --set runtime.precision=bf16 --set train.batch_size=1024 --batches device
# The same without the fused q/k/v product and joint attention (the CPU's path): what they give.
run_bench bf16-b1024-unfused --set runtime.precision=bf16 --set train.batch_size=1024 --batches device --set runtime.fused_layers=off
# Larger batches amortise the ~1,500 launches per step (the host's share): how far that goes.
run_bench bf16-b2048-device --set runtime.precision=bf16 --set train.batch_size=2048 --batches device
run_bench bf16-b4096-device --set runtime.precision=bf16 --set train.batch_size=4096 --batches device
# Activation recomputation (runtime.recompute_layers): what one more forward pass of the layers costs.
run_bench bf16-b4096-recompute --set runtime.precision=bf16 --set train.batch_size=4096 --batches device --set runtime.recompute_layers=true
# The largest batch the goal was measured at, again (a second process: the spread between runs),
# and twice it (~40 GB of activations on an H200).
run_bench bf16-b4096-again --set runtime.precision=bf16 --set train.batch_size=4096 --batches device
run_bench bf16-b8192-device --set runtime.precision=bf16 --set train.batch_size=8192 --batches device
fi

if want 3 && [ "$(left)" -gt 100 ]; then
  step "3. profile: 3 steps, base bf16, batch 1024"
  timeout 90 $BENCH $BASE --set runtime.device=cuda --set runtime.precision=bf16 --set train.batch_size=1024 --batches device \
    --steps 5 --warmup 5 --profile "$OUT/trace.json" > /dev/null 2> "$OUT/profile.log" || tail -5 "$OUT/profile.log"
  [ -f "$OUT/trace.json" ] && python3 scripts/trace_summary.py "$OUT/trace.json" 3 | tee "$OUT/trace-summary.txt" | head -70
  [ -f "$OUT/trace.json" ] && gzip -f "$OUT/trace.json"
fi

if want 4 && [ "$(left)" -gt 90 ]; then
  step "4. mmt train end to end: base bf16, batch 1024, 100 steps, batch threads auto (cores - 1)"
  rm -rf runs/gpu-e2e
  timeout 80 $MMT train $BASE --set train.steps=100 --set train.batch_size=1024 --set train.log_every=20 \
    --set train.checkpoint_every=0 --set runtime.device=cuda --set runtime.precision=bf16 \
    --out runs/gpu-e2e > "$OUT/train-e2e.log" 2>&1 || tail -20 "$OUT/train-e2e.log"
  grep "mmt train: 100 steps\|built ahead" "$OUT/train-e2e.log"; cp runs/gpu-e2e/metrics.jsonl "$OUT/train-e2e-metrics.jsonl" 2>/dev/null
  cut -c1-200 "$OUT/train-e2e-metrics.jsonl" 2>/dev/null
fi

if want 5 && [ -f runs/gpu-e2e/model.safetensors ]; then
  step "5. exact scoring of the end-to-end model, 300 images x 1,500 captions, bf16: 2,048 vs 8,192 pairs a pass"
  for pb in 2048 8192; do
    [ "$(left)" -lt 110 ] && break
    timeout 45 $MMT eval --run runs/gpu-e2e --set eval.test_sets=easy --set data.synth.num_test_images=300 \
      --set data.synth.captions_per_image=5 --set eval.pair_batch=$pb --set runtime.device=cuda \
      --set runtime.precision=bf16 > "$OUT/exact-pb$pb.md" 2> "$OUT/exact-pb$pb.log" || tail -5 "$OUT/exact-pb$pb.log"
    echo "pair_batch $pb: $(grep -o '[0-9]* images x [0-9]* captions, [0-9.]* s ([0-9]* pairs/s)' "$OUT/exact-pb$pb.md" | head -1)"
  done
fi
if want 5; then
step "5b. more training-step configurations"
# Each step read before the next is queued (the trainer reads it one step late): the host's waits.
run_bench bf16-b1024-each --set runtime.precision=bf16 --set train.batch_size=1024 --batches device --read-each-step
run_bench fp32-b1024-device --set runtime.precision=fp32 --set train.batch_size=1024 --batches device
run_bench bf16-b256-device --set runtime.precision=bf16 --set train.batch_size=256 --batches device
fi
if want 6 && [ "$(left)" -gt 60 ]; then
  step "6. NCCL: the process group built (-DMMT_NCCL=ON, last: a failure here costs nothing above), one rank"
  cmake -S . -B build-gpu -DMMT_NCCL=ON > "$OUT/cmake-nccl.log" 2>&1; grep -i "nccl" "$OUT/cmake-nccl.log" | head -5
  timeout $(( $(left) - 25 )) ninja -C build-gpu mmt_gpu_tests > "$OUT/build-nccl.log" 2>&1 \
    || grep -A6 "error:" "$OUT/build-nccl.log" | head -60
  timeout 20 build-gpu/tests/mmt_gpu_tests --gtest_filter='*Nccl*' 2>&1 | tail -12
  echo "exit status ${PIPESTATUS[0]} (139: the teardown crash of 2026-12-04 is back)"
fi
if want 7 && [ "$(left)" -gt 40 ]; then
  step "7. synthetic batch building by thread count (base preset, batch 1024)"
  timeout 35 build-gpu/bench/mmt_bench_data synthetic $BASE \
    --set train.batch_size=1024 --batches 32 --threads 1 4 8 15 > "$OUT/bench-synthetic.json" 2>&1
  cat "$OUT/bench-synthetic.json"
fi
if want 8 && [ -f runs/gpu-e2e/model.safetensors ] && [ "$(left)" -gt 100 ]; then
  step "8. exact scoring on a Flickr30k-sized test set: 1,000 images x 5,000 captions, bf16, step 4's model"
  timeout $(( $(left) - 10 )) $MMT eval --run runs/gpu-e2e --set eval.test_sets=easy --set data.synth.num_test_images=1000 \
    --set data.synth.captions_per_image=5 --set runtime.device=cuda --set runtime.precision=bf16 \
    > "$OUT/exact-flickr-size.md" 2> "$OUT/exact-flickr-size.log" || tail -5 "$OUT/exact-flickr-size.log"
  grep -o '[0-9]* images x [0-9]* captions, [0-9.]* s ([0-9]* pairs/s)' "$OUT/exact-flickr-size.md" | head -1
fi
step "done"
# At most 8 files come back from a device machine: everything in one archive.
tar czf /tmp/gpu-results.tar.gz -C "$OUT" . && mv /tmp/gpu-results.tar.gz "$OUT/results.tar.gz"
find "$OUT" -maxdepth 1 -type f ! -name results.tar.gz ! -name '*.gz' ! -name console.log -delete
