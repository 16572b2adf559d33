#!/usr/bin/env bash
# Builds one libFuzzer binary per target of tests/fuzz/fuzz_targets.h into build/fuzz/ and runs
# each one for SECONDS (default 60) on its seed corpus, then prints a line per target.
#
#   tests/fuzz/run.sh [SECONDS]
#
# Environment:
#   SD_FUZZ_TARGETS="safetensors image_png"  only these targets (names without "fuzz_")
#   SD_FUZZ_RUNS=N          stop a target after N executions (libFuzzer -runs), SECONDS still caps
#   SD_FUZZ_BUILD_ONLY=1    build, do not run
#   SD_FUZZ_LOCK=FILE       take flock FILE around each compile, link and run (to share a small
#                           machine with other builds; default: no lock)
#   CXX=clang++             the compiler (clang with libFuzzer)
#
# The engine's sources (src/, without CUDA) and the server's (apps/serve/) are compiled once into
# build/fuzz/libsd_fuzz.a (only sources newer than their object are recompiled; delete
# build/fuzz/obj after changing a header). Seeds come from tests/fuzz/corpus/<name>/ and
# tests/fuzz/regressions/<name>/ and are never written; new inputs go to
# build/fuzz/corpus/<name>/ and crashes to build/fuzz/artifacts/<name>/.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/build/fuzz"
CXX="${CXX:-clang++}"
LOCK="${SD_FUZZ_LOCK:-}"
cd "$ROOT"

# Runs one step, under the lock file SD_FUZZ_LOCK when one is given.
step() {
  if [[ -n "$LOCK" ]]; then
    flock "$LOCK" "$@"
  else
    "$@"
  fi
}

SAN="-fsanitize=address,undefined"
CXXFLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer -Wno-pass-failed -fopenmp -march=native $SAN
  -Iinclude -Isrc -Iapps -Iapps/serve -I/usr/include/libpng16
  -DSD_VERSION=\"fuzz\" -DSD_SOURCE_DIR=\""$ROOT"\")
LIBS=(-ldnnl -lturbojpeg -lpng16 -lz -lavformat -lavcodec -lswscale -lavutil -lcurl -lcrypto
  -lpthread)

mkdir -p "$OUT/obj" "$OUT/gen"

# The server's embedded web page, as CMake generates it.
if [[ ! -f "$OUT/gen/web_assets.cpp" ]]; then
  files=$(cd apps/serve/web && ls | paste -sd'|')
  cmake -DROOT="$ROOT/apps/serve/web" -DOUT="$OUT/gen/web_assets.cpp" -DFILES="$files" \
    -P cmake/embed_web_assets.cmake
fi

# One object per library source, instrumented for coverage but without libFuzzer's main.
sources=$(find src -name '*.cpp' -not -path 'src/backend/cuda/*' | sort)
sources="$sources $(ls apps/serve/*.cpp) $OUT/gen/web_assets.cpp"
objects=()
for src in $sources; do
  obj="$OUT/obj/$(echo "${src#"$ROOT"/}" | tr '/' '_').o"
  objects+=("$obj")
  [[ -f "$obj" && "$obj" -nt "$src" ]] && continue
  extra=()
  case "$src" in
    *flash_attention_avx2.cpp) extra=(-mavx2 -mfma) ;;
    *flash_attention_avx512.cpp) extra=(-mavx2 -mfma -mavx512f) ;;
    *clip_builtin_vocab.cpp)
      extra=(-DSD_CLIP_BPE_GZ_PATH=\""$ROOT/data/clip/bpe_simple_vocab_16e6.txt.gz"\") ;;
  esac
  echo "compile $src"
  step "$CXX" "${CXXFLAGS[@]}" -fsanitize=fuzzer-no-link "${extra[@]}" -c "$src" -o "$obj"
done
lib="$OUT/libsd_fuzz.a"
if [[ ! -f "$lib" ]] || [[ -n "$(find "${objects[@]}" -newer "$lib")" ]]; then
  rm -f "$lib"
  step ar rcs "$lib" "${objects[@]}"
fi

# The targets' code, shared by every binary.
tobj="$OUT/obj/fuzz_targets.o"
if [[ ! -f "$tobj" || tests/fuzz/fuzz_targets.cpp -nt "$tobj" || tests/fuzz/fuzz_targets.h -nt "$tobj" ]]; then
  echo "compile tests/fuzz/fuzz_targets.cpp"
  step "$CXX" "${CXXFLAGS[@]}" -fsanitize=fuzzer-no-link -c tests/fuzz/fuzz_targets.cpp -o "$tobj"
fi

all=$(grep -oE '^int fuzz_[a-z0-9_]+' tests/fuzz/fuzz_targets.h | sed 's/^int fuzz_//')
targets="${SD_FUZZ_TARGETS:-$all}"
for t in $targets; do
  bin="$OUT/fuzz_$t"
  if [[ ! -f "$bin" || "$tobj" -nt "$bin" || "$lib" -nt "$bin" || tests/fuzz/fuzz_main.cpp -nt "$bin" ]]; then
    echo "link $bin"
    step "$CXX" "${CXXFLAGS[@]}" -fsanitize=fuzzer -DSD_FUZZ_TARGET="fuzz_$t" \
      tests/fuzz/fuzz_main.cpp "$tobj" "$lib" "${LIBS[@]}" -o "$bin"
  fi
done
[[ -n "${SD_FUZZ_BUILD_ONLY:-}" ]] && exit 0

summary=()
for t in $targets; do
  mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t" "$OUT/logs"
  seeds=()
  for d in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do [[ -d "$d" ]] && seeds+=("$d"); done
  before=$(ls "$OUT/corpus/$t" | wc -l)
  crashes_before=$(ls "$OUT/artifacts/$t" | wc -l)
  runs=()
  [[ -n "${SD_FUZZ_RUNS:-}" ]] && runs=(-runs="$SD_FUZZ_RUNS")
  log="$OUT/logs/$t.log"
  echo "run fuzz_$t for up to ${SECONDS_PER_TARGET}s"
  rc=0
  OMP_NUM_THREADS=1 step "$OUT/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" "${runs[@]}" \
    -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" \
    "$OUT/corpus/$t" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE 'in [0-9]+' |
    grep -oE '[0-9]+' || echo 0)
  rate=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  [[ "$secs" -gt 0 ]] && rate=$((execs / secs))
  new=$(($(ls "$OUT/corpus/$t" | wc -l) - before))
  crashes=$(($(ls "$OUT/artifacts/$t" | wc -l) - crashes_before))
  line=$(printf '%-22s executions %10s  exec/s %7s  new corpus %5s  findings %s (rc %s)' \
    "$t" "${execs:-0}" "$rate" "$new" "$crashes" "$rc")
  echo "$line"
  summary+=("$line")
done
echo
echo "summary (logs in $OUT/logs, findings in $OUT/artifacts):"
printf '%s\n' "${summary[@]}"
