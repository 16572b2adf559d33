#!/usr/bin/env bash
# Installs the dependencies, builds Release, and runs streamdiff.
#   scripts/quickstart.sh                       # demo: TAESD round trip of the test portrait with
#                                               # the committed random-weight TAESD -> roundtrip.png
#   scripts/quickstart.sh img2img --model DIR --prompt "..." --input IMG --output OUT.png
#   scripts/quickstart.sh SUBCOMMAND [ARGS...]  # any streamdiff subcommand
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake --preset release -G Ninja >/dev/null
cmake --build --preset release -j "$(nproc)" --target streamdiff
if [ $# -eq 0 ]; then
  # Random weights: the output shows the round trip works, not a meaningful picture.
  set -- taesd --model "$root/tests/fixtures/taesd/full" \
    --input "$root/tests/fixtures/taesd/input_512x512.png" --output "$root/roundtrip.png"
fi
exec "$root/build/release/streamdiff" "$@"
