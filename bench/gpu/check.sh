#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU (H100/H200) and this repository, configures and
# builds the release preset, runs the CUDA tests and the GPU benchmark, and records the GPU.
# Meant to finish within 5 minutes. Outputs go to $OUT when it is set (else build/gpu-check):
#   check.log (everything), nvidia-smi.txt, tests.xml (gtest report), bench.txt.
# Usage: bench/gpu/check.sh            (from anywhere; exits non-zero if a step failed)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-build/gpu-check}"
mkdir -p "$out"
log="$out/check.log"
: >"$log"
status=0
budget=${CHECK_BUDGET_S:-290}  # all steps together stay under 5 minutes
say() { echo "== $*" | tee -a "$log"; }
# run LIMIT_S STEP_NAME COMMAND...: runs a step under a time limit (cut to what is left of the
# budget), logging its output.
run() {
  local limit=$1 name=$2
  shift 2
  local left=$((budget - SECONDS))
  if [ "$left" -lt 10 ]; then
    say "$name: skipped, the ${budget} s budget is spent"
    status=1
    return 1
  fi
  [ "$limit" -le "$left" ] || limit=$left
  say "$name (limit $limit s)"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  say "$name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

say "gpu check of $(git rev-parse --short HEAD 2>/dev/null || echo 'unknown commit'), $(date -u)"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi >"$out/nvidia-smi.txt" 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit \
    --format=csv >>"$out/nvidia-smi.txt" 2>&1
  cat "$out/nvidia-smi.txt" >>"$log"
else
  say "nvidia-smi not found"
fi
command -v nvcc >/dev/null && nvcc --version | tail -2 | tee -a "$log"

# Debian dependencies: install what is missing when a package mirror answers, else go on.
if command -v apt-get >/dev/null && timeout 30 apt-get update -qq >/dev/null 2>&1; then
  run 120 "install-deps" bash scripts/install-deps.sh
else
  say "apt unreachable: using the packages already installed"
fi

jobs=$(nproc)
run 90 "configure" cmake --preset release -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90 &&
  run 240 "build (-j$jobs)" cmake --build build/release -j"$jobs" \
    --target streamdiff_tests streamdiff_bench
if [ -x build/release/streamdiff_tests ]; then
  run 120 "CUDA tests" build/release/streamdiff_tests --gtest_filter='Cuda*' \
    --gtest_output="xml:$out/tests.xml"
fi
if [ -x build/release/streamdiff_bench ]; then
  run 150 "GPU benchmark" build/release/streamdiff_bench cuda
  grep -A200 "^== cuda" "$log" >"$out/bench.txt" || true
fi
say "gpu check finished: $([ $status -eq 0 ] && echo OK || echo FAILED) in ${SECONDS} s"
exit $status
