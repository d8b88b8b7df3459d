#!/bin/sh
# Fails when an executable exports an instantiation of std::call_once's trampoline
# (std::once_flag::_Prepare_execution). Such a weak symbol interposes the copy inside libtorch
# when libtorch comes from a PyTorch wheel (built by another compiler): oneDNN's primitive cache
# and c10d then ran our copy, which reads another thread-local than theirs, and crashed
# (std::promise in the synthetic batcher did it: docs/gpu.md). Usage: check_exported_call_once.sh EXE...
status=0
for exe in "$@"; do
  found=$(nm -DC "$exe" | grep -E ' [WVTi] .*(_Prepare_execution|call_once)') || true
  if [ -n "$found" ]; then
    echo "$exe exports std::call_once instantiations (std::promise / std::future / std::call_once on a type libtorch shares):"
    echo "$found" | cut -c1-300
    status=1
  fi
done
[ $status = 0 ] && echo "no exported std::call_once instantiation in $# executable(s)"
exit $status
