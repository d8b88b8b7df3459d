#!/bin/bash
# GPU checks in one go, for a machine with one NVIDIA GPU, CUDA and PyTorch 2.x (docs/gpu.md):
# builds mmt against PyTorch's libtorch, then, most important first, each under a deadline:
#   1. the CPU-trained tiny run ($TINY) scored on the GPU in fp32 and bf16 (score matrices to
#      $OUT, compared with the CPU's by scripts/compare_scores.py),
#   2. base-preset training steps in bf16 and fp32: examples/s -> TFLOP/s against the card's
#      measured bf16 matrix peak,
#   3. exact retrieval on a Flickr30k-sized synthetic set (1,000 images x 5,000 captions) with the
#      base preset in bf16, then rerank k = 128 on the same set.
# Usage: scripts/gpu_check.sh [deadline seconds, default 540]. Needs .gpu/ (scripts/gpu_deps.sh)
# where the machine lacks mmt's -dev packages. Logs and results go to $OUT (default out/gpu).
set -u
T0=$(date +%s)
DEADLINE=${1:-540}
OUT=${OUT:-out/gpu}
TINY=${TINY:-runs/gpu-tiny}
mkdir -p "$OUT"
source scripts/gpu_build.sh  # gpu_build, left, step

step "machine"
nvidia-smi -L; nproc; g++ --version | head -1; cmake --version | head -1
python3 - <<'PY' 2>&1 | tee "$OUT/peak.txt"
import torch, time
print("torch", torch.__version__, torch.cuda.get_device_name(0))
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.time()
for _ in range(10): a @ b
torch.cuda.synchronize(); dt = (time.time() - t) / 10
print(f"bf16 matmul 8192^3: {2 * 8192**3 / dt / 1e12:.0f} TFLOP/s")
PY

step "build"
gpu_build "$OUT"
echo "built in $(($(date +%s) - T0)) s"
MMT=build-gpu/mmt

step "1. tiny run: CPU weights scored on the GPU, fp32 and bf16"
for p in fp32 bf16; do
  timeout 60 $MMT eval --run "$TINY" --set eval.test_sets=easy --set runtime.device=cuda --set runtime.precision=$p \
    > "$OUT/tiny-$p.md" 2> "$OUT/tiny-$p.log" || tail -20 "$OUT/tiny-$p.log"
  cp "$TINY/eval-easy-scores.npy" "$OUT/tiny-$p-scores.npy" 2>/dev/null
  grep -A3 "model" "$OUT/tiny-$p.md" | head -2
done

BASE="--config configs/demo.json --set model.preset=base --set model.image_input=patches --set model.patch_size=16 --set data.synth.image_size=96"
step "2. base training steps, bf16 then fp32 (37 image tokens)"
$MMT model summary $BASE --image-tokens 37 --text-tokens 12 2>&1 | tail -1 | tee "$OUT/flops.txt"
for p in bf16 fp32; do
  [ "$(left)" -lt 300 ] && break
  rm -rf runs/gpu-base-$p
  timeout 100 $MMT train $BASE --set train.steps=60 --set train.batch_size=256 --set train.log_every=20 \
    --set train.checkpoint_every=0 --set runtime.device=cuda --set runtime.precision=$p --out runs/gpu-base-$p \
    > "$OUT/train-$p.log" 2>&1 || tail -20 "$OUT/train-$p.log"
  cp runs/gpu-base-$p/metrics.jsonl "$OUT/train-$p-metrics.jsonl" 2>/dev/null
  grep "mmt train: 60 steps" "$OUT/train-$p.log"
done

step "3. exact, 1000 images x 5000 captions, base, bf16"
if [ -f runs/gpu-base-bf16/model.safetensors ]; then
  timeout $(($(left) - 45)) $MMT eval --run runs/gpu-base-bf16 --set eval.test_sets=easy \
    --set data.synth.num_test_images=1000 --set data.synth.captions_per_image=5 --set eval.pair_batch=8192 \
    --set runtime.device=cuda --set runtime.precision=bf16 > "$OUT/exact-1k.md" 2> "$OUT/exact-1k.log"
  echo "exit $?"; tail -3 "$OUT/exact-1k.log"; cat "$OUT/exact-1k.md" | head -8
  cp runs/gpu-base-bf16/eval.json "$OUT/exact-1k.json" 2>/dev/null
  step "rerank k=128 of dual, same set"
  timeout $(($(left) - 5)) $MMT eval --run runs/gpu-base-bf16 --set eval.test_sets=easy --set eval.mode=rerank \
    --set data.synth.num_test_images=1000 --set data.synth.captions_per_image=5 --set eval.pair_batch=8192 \
    --set runtime.device=cuda --set runtime.precision=bf16 > "$OUT/rerank-1k.md" 2> "$OUT/rerank-1k.log"
  echo "exit $?"; tail -2 "$OUT/rerank-1k.log"; head -8 "$OUT/rerank-1k.md"
  cp runs/gpu-base-bf16/eval.json "$OUT/rerank-1k.json" 2>/dev/null
fi
step "done"
