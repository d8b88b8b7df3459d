#!/usr/bin/env bash
# What hard ITM negatives and their temperature do to retrieval, over seeds (docs/losses.md, "Hard
# negatives are often not negatives"). From one start - the align table's in-batch model, 2,400
# steps of `single_modality*3,merged` with the align head - 600 more steps each with random
# negatives, hard negatives at T = 1 (ALBEF's sampling) and at T = 4 (train.itm_hard_temperature),
# for every seed given (train.seed: other batches and masks, same start), then exact ITM retrieval
# (`mmt eval`) on the easy and binding test sets. Prints one table row per run and, per setting,
# the mean and spread over the seeds.
# usage: bench/run_hard_temperature.sh [BUILD_DIR] [WORK_DIR] [SEEDS...]   (default seeds 1 2 3)
# About 30 minutes for three seeds on 2 cores (machine B: 9.5 for the start, ~2 a run); the start is
# trained once and reused, finished runs are not run again.
set -euo pipefail
build=${1:-build}
work=${2:-runs/hard_temperature}
shift $(($# > 2 ? 2 : $#))
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
mmt=$build/mmt
base=(--config configs/demo.json --set 'model.layers=single_modality*3,merged' --set model.align=true
      --set train.align_weight=1)
mkdir -p "$work"
start=$work/start
if [ ! -f "$start/model.safetensors" ]; then
  "$mmt" train "${base[@]}" --set train.steps=2400 --out "$start" --auto-resume 2> "$work/start.log"
fi
[ -f "$start/eval.json" ] || "$mmt" eval --run "$start" 2>> "$work/start.log" > /dev/null
declare -A settings=(
  [random]=""
  [hard_t1]="--set train.itm_negatives=hard"
  [hard_t4]="--set train.itm_negatives=hard --set train.itm_hard_temperature=4"
)
row() {  # run dir -> "easy image R@1, easy RSUM, binding image R@1, binding RSUM"
  python3 - "$1/eval.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))["test_sets"]
out = []
for name in ("easy", "binding"):
    i, t = e[name]["image_retrieval"], e[name]["text_retrieval"]
    out += [i["r1"], i["rsum"] + t["rsum"]]
print(" ".join(f"{v:.1f}" for v in out))
EOF
}
printf "| setting | seed | easy image R@1 | easy RSUM | binding image R@1 | binding RSUM |\n|---|---|---|---|---|---|\n"
{
echo "| (the start) | | $(row "$start" | sed 's/ / | /g') |"
for name in random hard_t1 hard_t4; do
  for seed in "${seeds[@]}"; do
    dir=$work/$name-s$seed
    if [ ! -f "$dir/eval.json" ]; then
      # shellcheck disable=SC2086
      "$mmt" train "${base[@]}" --set train.init="$start" --set train.steps=600 --set train.seed="$seed" \
        ${settings[$name]} --out "$dir" --auto-resume 2> "$dir.log"
      "$mmt" eval --run "$dir" 2>> "$dir.log" > /dev/null
    fi
    echo "| $name | $seed | $(row "$dir" | sed 's/ / | /g') |"
  done
done
} | tee "$work/table.md"
python3 - "$work/table.md" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 6 and cells[1].isdigit():
        rows.setdefault(cells[0], []).append([float(c) for c in cells[2:]])
print("\n| setting | seeds | easy image R@1 | easy RSUM | binding image R@1 | binding RSUM |\n|---|---|---|---|---|---|")
for name, vals in rows.items():
    cols = list(zip(*vals))
    fmt = lambda c: f"{statistics.mean(c):.1f} +- {statistics.stdev(c):.1f}" if len(c) > 1 else f"{c[0]:.1f}"
    print(f"| {name} (mean +- sd) | {len(vals)} | " + " | ".join(fmt(c) for c in cols) + " |")
EOF
