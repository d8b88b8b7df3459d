#!/usr/bin/env bash
# Exact scoring of a trained run with eval.threads = 1 (one thread; OpenBLAS's threads share the
# matrix products) against the default (one scoring thread per core, each with single-threaded
# BLAS), alternating; prints each round's seconds and pairs/s, and checks the recall is the same.
# The run is copied first: mmt eval writes eval.json into the run folder.
# usage: bench/run_eval_threads.sh RUN_DIR [ROUNDS] [BUILD_DIR] [TEST_SET]
set -euo pipefail
run=${1:?usage: bench/run_eval_threads.sh RUN_DIR [ROUNDS] [BUILD_DIR] [TEST_SET]}
rounds=${2:-3}
build=${3:-build}
set_name=${4:-binding}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$run" "$tmp/run"
for r in $(seq "$rounds"); do
  for t in 1 0; do
    line=$("$build"/mmt eval --run "$tmp/run" --set eval.test_sets="$set_name" eval.threads="$t" 2>&1 | grep "^### $set_name")
    recall=$(/usr/bin/python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["test_sets"][sys.argv[2]]; print(t["image_retrieval"]["r1"], t["text_retrieval"]["r1"])' "$tmp/run/eval.json" "$set_name")
    echo "round $r eval.threads=$t: ${line#\#\#\# } | image R@1, text R@1: $recall"
  done
done
