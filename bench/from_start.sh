# shellcheck shell=bash disable=SC2154  # (file-wide) the variables are set by the script that sources this one
# Sourced by bench/run_hard_*.sh and run_itm_swap.sh, whose arguments it reads - [BUILD_DIR]
# [WORK_DIR] [SEEDS...], default build, $default_work and seeds 1 2 3 - and which set: default_work,
# base (mmt train arguments), start_steps, more_steps, more (arguments of the continued runs only),
# names (settings in order) and settings (name -> its --set arguments); optionally table_flags
# (settings_table.py's --text). Trains start_steps of base once into $work/start, then for each
# setting and seed more_steps from that start (train.init, train.seed = the seed), evaluates each
# run with `mmt eval` (exact retrieval on the config's test sets), and prints the table of
# bench/settings_table.py into $work/table-<script>.md. Finished runs are not run again.
build=${1:-build}
work=${2:-$default_work}
shift $(($# > 2 ? 2 : $#))
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
mmt=$build/mmt
mkdir -p "$work"
start=$work/start
if [ ! -f "$start/model.safetensors" ]; then
  "$mmt" train "${base[@]}" --set train.steps="$start_steps" --out "$start" --auto-resume 2> "$work/start.log"
fi
[ -f "$start/eval.json" ] || "$mmt" eval --run "$start" 2>> "$work/start.log" > /dev/null
for name in "${names[@]}"; do
  for seed in "${seeds[@]}"; do
    dir=$work/$name-s$seed
    [ -f "$dir/eval.json" ] && continue
    # shellcheck disable=SC2086
    "$mmt" train "${base[@]}" --set train.init="$start" --set train.steps="$more_steps" --set train.seed="$seed" \
      "${more[@]}" ${settings[$name]} --out "$dir" --auto-resume 2> "$dir.log"
    "$mmt" eval --run "$dir" 2>> "$dir.log" > /dev/null
  done
done
python3 "$(dirname "${BASH_SOURCE[0]}")/settings_table.py" ${table_flags:+"$table_flags"} "$work" "$(IFS=,; echo "${names[*]}")" "${seeds[@]}" |
  tee "$work/table-$(basename "$0" .sh).md"  # one per script: run_hard_candidates and run_itm_swap share a WORK_DIR
