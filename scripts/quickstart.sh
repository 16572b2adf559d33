#!/usr/bin/env bash
# Installs the dependencies, builds Release, and runs the main job available so far: a TAESD
# round trip (encode an image to latents, decode it back).
#   scripts/quickstart.sh [--model PATH] [--input IMG] [--output OUT.png] [more taesd options]
# Without --model it uses the committed random-weight TAESD test model (the output then shows
# noise-like colours: the weights are random); without --input the test portrait.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake --preset release -G Ninja >/dev/null
cmake --build --preset release -j "$(nproc)" --target streamdiff
args=("$@")
has() { for a in "${args[@]}"; do [ "$a" = "$1" ] && return 0; done; return 1; }
has --model || args+=(--model "$root/tests/fixtures/taesd/full")
has --input || has --latents-in || args+=(--input "$root/tests/fixtures/taesd/input_512x512.png")
has --output || args+=(--output "$root/roundtrip.png")
exec "$root/build/release/streamdiff" taesd "${args[@]}"
