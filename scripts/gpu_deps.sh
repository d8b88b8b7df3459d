#!/bin/sh
# Gathers what the GPU build needs besides libtorch into one folder (default .gpu/), for a GPU
# machine that has CUDA + PyTorch but neither network nor mmt's -dev packages (the device
# machines of docs/gpu.md): the header-only JSON / CLI libraries with their CMake configs, and
# the headers + shared libraries of libpng, libjpeg, libarchive (with its dependencies) and ICU
# from this Debian 12 machine. On a GPU machine with apt, install the packages of
# scripts/setup.sh instead. scripts/gpu_check.sh builds against the folder.
set -eu
dest=${1:-.gpu}
mkdir -p "$dest/include" "$dest/lib" "$dest/share/cmake"
# Not gloo's headers: Debian's (2022) predate the gloo inside PyTorch 2.x wheels (its Store v2
# API), so c10d's ProcessGroupGloo.hpp does not compile against them; the GPU build goes without
# distributed training unless the machine has gloo headers matching its PyTorch (docs/gpu.md).
cp -r /usr/include/nlohmann /usr/include/CLI /usr/include/unicode "$dest/include/"
cp -r /usr/share/cmake/nlohmann_json /usr/share/cmake/CLI11 "$dest/share/cmake/"
for h in png.h pngconf.h pnglibconf.h zlib.h zconf.h jpeglib.h jmorecfg.h jerror.h archive.h archive_entry.h; do
  cp -L "/usr/include/$h" "$dest/include/"
done
cp -L /usr/include/x86_64-linux-gnu/jconfig.h "$dest/include/"
# Libraries by soname; the loader path of gpu_check.sh puts the machine's own first, so these
# only fill gaps (Debian 12's ICU 72 and libjpeg 62 are rarely elsewhere).
for l in libpng16.so.16 libjpeg.so.62 libarchive.so.13 libicuuc.so.72 libicudata.so.72 \
         libnettle.so.8 libacl.so.1 libxml2.so.2 liblz4.so.1 libzstd.so.1 libbz2.so.1.0 liblzma.so.5; do
  cp -L "$(ldconfig -p | awk -v l="$l" '$1 == l { print $NF; exit }')" "$dest/lib/$l"
done
# GoogleTest's sources, for the GPU tests (built there with -DMMT_GTEST_SOURCE).
rm -rf "$dest/googletest" && cp -r /usr/src/googletest/googletest "$dest/googletest"
du -sh "$dest"
