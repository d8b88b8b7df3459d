#!/usr/bin/env bash
# Data benchmarks of docs/performance.md: JPEG decode vs Pillow (same files, same core, alternating
# runs), the packed store (random reads and RSS over a >= 2 GB store), region-feature batches per
# second. usage: bench/run_data.sh [BUILD_DIR] [WORK_DIR]   (WORK_DIR gets ~2.1 GB; default /tmp/mmt-bench-data)
set -euo pipefail
build=${1:-build}
work=${2:-/tmp/mmt-bench-data}
mkdir -p "$work"
[[ -d "$work/jpegs" ]] || /usr/bin/python3 bench/make_jpegs.py "$work/jpegs" 200
echo "== JPEG 500x375 -> 224 px (decode, resize, centre crop), one thread; alternating runs =="
for rep in 1 2; do
  taskset -c 0 "$build"/bench/mmt_bench_data jpeg --dir "$work/jpegs"
  taskset -c 0 /usr/bin/python3 bench/pillow_decode.py "$work/jpegs"
  taskset -c 0 /usr/bin/python3 bench/pillow_decode.py "$work/jpegs" --draft
done
echo "== packed store: 2 GB, every entry read once in random order =="
"$build"/bench/mmt_bench_data store --path "$work/store2g.feat" --gb 2.0
echo "== region-feature batches (loader, 2 threads) =="
"$build"/bench/mmt_bench_data loader --store-dir "$work/tiny" --dim 64 --batch 128 --batches 100
"$build"/bench/mmt_bench_data loader --store-dir "$work/base" --dim 2048 --batch 128 --batches 20 --images 1000
