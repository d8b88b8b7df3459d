#!/bin/bash
# Builds build-gpu/mmt against the installed PyTorch's libtorch and the carried .gpu/ folder
# (scripts/gpu_deps.sh), logging to $1/cmake.log and $1/build.log. Sourced by gpu_check.sh and
# gpu_rerank.sh (docs/gpu.md); exits on failure with the log's errors. Also the time keeping both
# scripts share: left (seconds before DEADLINE, counted from T0) and step (a section header).
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
step() { echo "=== $1 ($(left) s left)"; }
# gpu_build LOGDIR: mmt, and when .gpu/googletest is there the GPU tests and the
# training-step bench (a failure of those two is reported, mmt still counts as built).
gpu_build() {
  local log=$1 G=$PWD/.gpu TP ZLIB TINC GLOO="" TESTS=OFF
  export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:$G/lib:${LD_LIBRARY_PATH:-}
  TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  TINC=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"include"))')
  # c10d's Gloo headers: PyTorch's own where its wheel has them (they match its libtorch), else Debian's.
  [ -f "$TINC/gloo/algorithm.h" ] && GLOO="-DGLOO_INCLUDE_DIR=$TINC"
  [ -d "$G/googletest" ] && TESTS=ON
  ZLIB=$(ldconfig -p | awk '$1 == "libz.so.1" { print $NF; exit }')
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMMT_BUILD_TESTS=$TESTS -DMMT_BUILD_BENCH=$TESTS \
    -DMMT_GTEST_SOURCE="$G/googletest" -DCMAKE_POLICY_VERSION_MINIMUM=3.10 $GLOO \
    -DMMT_REQUIRE_SENTENCEPIECE=OFF -DCMAKE_PREFIX_PATH="$TP;$G" \
    -DPNG_LIBRARY="$G/lib/libpng16.so.16" -DPNG_PNG_INCLUDE_DIR="$G/include" \
    -DZLIB_LIBRARY="$ZLIB" -DZLIB_INCLUDE_DIR="$G/include" \
    -DJPEG_LIBRARY="$G/lib/libjpeg.so.62" -DJPEG_INCLUDE_DIR="$G/include" \
    -DLibArchive_LIBRARY="$G/lib/libarchive.so.13" -DLibArchive_INCLUDE_DIR="$G/include" \
    -DICU_INCLUDE_DIR="$G/include" -DICU_UC_LIBRARY="$G/lib/libicuuc.so.72" -DICU_UC_LIBRARY_RELEASE="$G/lib/libicuuc.so.72" \
    -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$G/lib -Wl,--allow-shlib-undefined" > "$log/cmake.log" 2>&1 \
    || { tail -40 "$log/cmake.log"; exit 1; }
  grep -i "mmt:\|gloo" "$log/cmake.log"
  # -k 0: every source that fails is reported in one go (a device call is too dear for one error a time).
  # A linker that refuses the export map (a runtime symbol a library needs would be hidden: not
  # expected since cmake/ExecutableExports.cmake links the shared libstdc++, never yet run on a
  # GPU) is told, and the build goes on without the map rather than losing the machine's time.
  if ! ninja -C build-gpu -k 0 mmt > "$log/build.log" 2>&1 && grep -q "referenced by DSO" "$log/build.log"; then
    echo "gpu_build: the export map broke the link (referenced by DSO): building with -DMMT_HIDE_EXPORTS=OFF"
    grep "referenced by DSO" "$log/build.log" | head -3
    cmake -S . -B build-gpu -DMMT_HIDE_EXPORTS=OFF >> "$log/cmake.log" 2>&1
  fi
  ninja -C build-gpu -k 0 mmt >> "$log/build.log" 2>&1 || { grep -A6 "error:" "$log/build.log" | head -150; exit 1; }
  if [ $TESTS = ON ]; then
    ninja -C build-gpu -k 0 mmt_gpu_tests mmt_bench_train_step mmt_bench_data > "$log/build-tests.log" 2>&1 \
      || grep -A6 "error:" "$log/build-tests.log" | head -80
  fi
}
