#!/bin/sh
# cmake/ExecutableExports.cmake under a compiler that links libstdc++ statically, as the GPU
# machines' /opt/gcc does (simulated: the compiler with -static-libstdc++ added): a toy project
# with a shared library that uses the C++ runtime, like libtorch, must configure with the shared
# runtime found, link, load libstdc++.so.6, export nothing of its own, and run.
# Usage: static_runtime_check.sh SOURCE_DIR WORK_DIR CXX [CMAKE_GENERATOR]
set -eu
src=$1 work=$2 cxx=$3 gen=${4:-}
rm -rf "$work" && mkdir -p "$work/proj/cmake"
cp "$src/cmake/ExecutableExports.cmake" "$src/cmake/executable_exports.map" "$work/proj/cmake/"
printf '#!/bin/sh\nexec %s "$@" -static-libstdc++\n' "$cxx" > "$work/cxx-static" && chmod +x "$work/cxx-static"
cat > "$work/proj/lib.cpp" <<'CPP'
#include <sstream>
#include <string>
std::string describe(int n) { std::ostringstream s; s << "n=" << n; return s.str(); }
CPP
cat > "$work/proj/main.cpp" <<'CPP'
#include <iostream>
#include <map>
#include <string>
std::string describe(int n);
int main() { std::map<std::string, int> m{{"a", 3}}; std::cout << describe(m["a"]) << std::endl; }
CPP
cat > "$work/proj/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.22)
project(static_runtime CXX)
include(cmake/ExecutableExports.cmake)
add_library(describe SHARED lib.cpp)
add_executable(prog main.cpp)
target_link_libraries(prog describe)
CMAKE
cmake -S "$work/proj" -B "$work/build" ${gen:+-G "$gen"} -DCMAKE_CXX_COMPILER="$work/cxx-static" > "$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log"; exit 1; }
grep "links libstdc++ statically; linking .*libstdc++.so" "$work/cmake.log" \
  || { echo "FAIL: the static runtime was not detected"; cat "$work/cmake.log"; exit 1; }
cmake --build "$work/build" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
readelf -d "$work/build/prog" | grep -q "NEEDED.*libstdc++.so" \
  || { echo "FAIL: prog does not load libstdc++.so"; exit 1; }
out=$("$work/build/prog")
[ "$out" = "n=3" ] || { echo "FAIL: prog printed '$out'"; exit 1; }
"$src/tests/check_executable_exports.sh" "$work/build/prog"
