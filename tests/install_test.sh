#!/usr/bin/env bash
# The installed package as a user gets it (ctest: InstallAndExamples). Installs the build into a
# temporary prefix, checks what was installed and what libstreamdiff.so exports, then builds the
# examples as separate projects against it (C and C++ with find_package, C++ static, C with
# pkg-config) and runs them on the committed tiny model.
#   tests/install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

cmake --install "$build" --prefix "$prefix" >"$work/install.log"
lib=$prefix/lib
for f in include/streamdiff/streamdiff.h include/streamdiff/streamdiff.hpp \
         include/streamdiff/media.hpp include/streamdiff/tools.hpp include/streamdiff/hub.hpp \
         include/streamdiff/version.h \
         include/streamdiff/export.h lib/libstreamdiff.a lib/cmake/streamdiff/streamdiffConfig.cmake \
         lib/cmake/streamdiff/streamdiffConfigVersion.cmake lib/pkgconfig/streamdiff.pc bin/streamdiff; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
soname=$(readelf -d "$lib/libstreamdiff.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ -e "$lib/$soname" ] || { echo "no $soname in $lib"; exit 1; }
echo "SONAME $soname"

# Only the API is exported: C functions sd_*, and C++ names in namespace streamdiff.
others=$(nm -D --defined-only -C "$lib/libstreamdiff.so" | awk '{ $1 = ""; $2 = ""; print }' |
  sed 's/^ *//' | grep -v -E '^(sd_[a-z0-9_]+|(typeinfo|typeinfo name|vtable) for streamdiff::.*|streamdiff::.*)$' || true)
if [ -n "$others" ]; then
  echo "libstreamdiff.so exports names outside the API:"
  echo "$others" | head -20
  exit 1
fi
echo "exports: $(nm -D --defined-only "$lib/libstreamdiff.so" | wc -l) API symbols"

"$prefix/bin/streamdiff" --version  # the installed CLI finds the installed library

model=$src/tests/fixtures/tiny_sd
taesd=$src/tests/fixtures/taesd/tiny
input=$src/tests/fixtures/stream/frames/frame_00.png

cmake -S "$src/examples/c" -B "$work/c" "${gen[@]}" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/c" >/dev/null
"$work/c/stylize" "$model" "$taesd" "$input" "$work/c.png" "oil painting" 3

PKG_CONFIG_PATH=$lib/pkgconfig cc -std=c11 -Wall -Wextra -Werror "$src/examples/c/stylize.c" \
  $(PKG_CONFIG_PATH=$lib/pkgconfig pkg-config --cflags --libs streamdiff) \
  -Wl,-rpath,"$lib" -o "$work/stylize_pkgconfig"
"$work/stylize_pkgconfig" "$model" "$taesd" "$input" "$work/pc.png" "oil painting" 2

cmake -S "$src/examples/cpp" -B "$work/cpp" "${gen[@]}" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cpp" >/dev/null
"$work/cpp/morph" "$model" "$taesd" "$input" "$work/morph" 4
[ -f "$work/morph_003.png" ] || { echo "morph wrote no 4th frame"; exit 1; }

cmake -S "$src/examples/cpp" -B "$work/cpp_static" "${gen[@]}" -DCMAKE_PREFIX_PATH="$prefix" \
  -DSTREAMDIFF_STATIC=ON >/dev/null
cmake --build "$work/cpp_static" >/dev/null
if ldd "$work/cpp_static/morph" | grep -q libstreamdiff; then
  echo "the static example links libstreamdiff.so"
  exit 1
fi
"$work/cpp_static/morph" "$model" "$taesd" "$input" "$work/static" 2
echo "install test passed"
