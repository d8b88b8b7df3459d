#!/bin/sh
# Fails when an executable exports a symbol it defines itself - other than data it takes over
# from a shared library by copy relocation (std::cout, typeinfo objects, ...), which must be
# exported. An exported function (std::call_once's trampoline, std::ostream's operator<<(int),
# ...) interposes the one inside the shared libraries, which then run ours: with a PyTorch
# wheel's libtorch and the GPU machines' compiler, which linked a static libstdc++, oneDNN and
# c10d crashed in std::call_once and every libtorch warning in stream code (docs/gpu.md).
# cmake/executable_exports.map keeps them hidden; this catches a build without it.
# Usage: check_executable_exports.sh EXE...
status=0
for exe in "$@"; do
  copied=$(readelf -rW "$exe" | awk '$3 ~ /_COPY$/ { sub(/@.*/, "", $5); print $5 }' | sort -u)
  own=$(readelf --dyn-syms -W "$exe" |
        awk '$7 != "UND" && $7 != "Ndx" && ($5 == "GLOBAL" || $5 == "WEAK" || $5 == "UNIQUE") && $8 != "" {
               n = $8; sub(/@.*/, "", n); print n }' | sort -u)
  found=$(printf '%s\n' "$own" | grep -vxF -e "$copied" -e '' || true)  # -e '': no empty line
  if [ -n "$found" ]; then
    echo "$exe exports $(printf '%s\n' "$found" | wc -l) symbol(s) of its own (link it with cmake/executable_exports.map):"
    printf '%s\n' "$found" | head -20 | c++filt | cut -c1-200
    status=1
  fi
done
[ $status = 0 ] && echo "$# executable(s) export no symbol of their own (copy-relocated data only)"
exit $status
