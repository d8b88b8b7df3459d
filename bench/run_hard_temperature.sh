#!/usr/bin/env bash
# What hard ITM negatives and their temperature do to retrieval, over seeds (docs/losses.md, "Hard
# negatives are often not negatives"). From one start - the align table's in-batch model, 2,400
# steps of `single_modality*3,merged` with the align head - 600 more steps each with random
# negatives, hard negatives at T = 1 (ALBEF's sampling) and at T = 4 (train.itm_hard_temperature),
# for every seed given (train.seed: other batches and masks, same start), then exact ITM retrieval
# (`mmt eval`) on the easy and binding test sets. Prints one table row per run (with its ITM accuracy at
# the end of training) and, per setting, the mean and spread over the seeds.
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
for name in random hard_t1 hard_t4; do
  for seed in "${seeds[@]}"; do
    dir=$work/$name-s$seed
    [ -f "$dir/eval.json" ] && continue
    # shellcheck disable=SC2086
    "$mmt" train "${base[@]}" --set train.init="$start" --set train.steps=600 --set train.seed="$seed" \
      ${settings[$name]} --out "$dir" --auto-resume 2> "$dir.log"
    "$mmt" eval --run "$dir" 2>> "$dir.log" > /dev/null
  done
done
# One row per run - its last logged ITM accuracy, the exact-ITM recalls of its eval.json - then per
# setting the mean +- sd over the seeds.
python3 - "$work" "${seeds[@]}" <<'EOF' | tee "$work/table.md"
import json, statistics, sys
work, seeds = sys.argv[1], sys.argv[2:]
digits = [2, 1, 1, 1, 1]
head = ("| {} | {} | ITM acc. at the end | easy image R@1 | easy RSUM | binding image R@1 | binding RSUM |\n"
        "|---|---|---|---|---|---|---|")
def values(run):
    acc = [json.loads(line)["itm_acc"] for line in open(run + "/metrics.jsonl") if '"itm_acc"' in line]
    sets = json.load(open(run + "/eval.json"))["test_sets"]
    out = [acc[-1]]
    for name in ("easy", "binding"):
        i, t = sets[name]["image_retrieval"], sets[name]["text_retrieval"]
        out += [i["r1"], i["rsum"] + t["rsum"]]
    return out
def line(setting, seed, cells):
    return f"| {setting} | {seed} | " + " | ".join(cells) + " |"
print(head.format("setting", "seed"))
start = values(work + "/start")
print(line("(the start)", "", [""] + [f"{v:.1f}" for v in start[1:]]))
runs = {}
for name in ("random", "hard_t1", "hard_t4"):
    for seed in seeds:
        runs.setdefault(name, []).append(values(f"{work}/{name}-s{seed}"))
        print(line(name, seed, [f"{v:.{d}f}" for v, d in zip(runs[name][-1], digits)]))
print("\n" + head.format("setting (mean +- sd)", "seeds"))
for name, rows in runs.items():
    cols = list(zip(*rows))
    print(line(name, len(rows), [f"{statistics.mean(c):.{d}f} +- {statistics.stdev(c):.{d}f}" if len(c) > 1 else f"{c[0]:.{d}f}"
                                 for c, d in zip(cols, digits)]))
EOF
