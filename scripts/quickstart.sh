#!/usr/bin/env bash
# Installs the dependencies, builds Release, and runs streamdiff.
#   scripts/quickstart.sh                       # the real job: pulls sd-turbo (fp16) and TAESD
#                                               # into the Hugging Face cache when they are not
#                                               # there, stylises data/images/portrait.png into
#                                               # out.png; without network, a TAESD round trip
#                                               # with the committed random weights instead
#   scripts/quickstart.sh SUBCOMMAND [ARGS...]  # any streamdiff subcommand, e.g.
#   scripts/quickstart.sh img2img --model stabilityai/sd-turbo --taesd madebyollin/taesd --pull \
#       --prompt "oil painting" --t-index 32 --cfg none --input photo.png --output styled.png
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake --preset release -G Ninja >/dev/null
cmake --build --preset release -j "$(nproc)" --target streamdiff
S="$root/build/release/streamdiff"
[ $# -gt 0 ] && exec "$S" "$@"

model=stabilityai/sd-turbo
taesd=madebyollin/taesd

# Whether the Hub answers at all: a TCP connection to the endpoint's host (behind a proxy,
# assumed yes, and the download says what went wrong).
hub_reachable() {
  [ -n "${https_proxy:-}${HTTPS_PROXY:-}${all_proxy:-}${ALL_PROXY:-}" ] && return 0
  local url="${HF_ENDPOINT:-https://huggingface.co}" port=443
  case "$url" in http://*) port=80 ;; esac
  local host="${url#*://}"
  host="${host%%/*}"
  case "$host" in *:*) port="${host##*:}"; host="${host%%:*}" ;; esac
  timeout 10 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

taesd_demo() {
  # Random weights: the output shows the round trip works, not a meaningful picture.
  "$S" taesd --model "$root/tests/fixtures/taesd/full" \
    --input "$root/tests/fixtures/taesd/input_512x512.png" --output "$root/roundtrip.png"
  echo "TAESD round trip with random weights -> $root/roundtrip.png"
  echo "with network: scripts/quickstart.sh (or: $S pull $model && $S pull $taesd)"
}

cached() { HF_HUB_OFFLINE=1 "$S" pull "$1" >/dev/null 2>&1; }

if ! cached "$model" || ! cached "$taesd"; then
  case "${HF_HUB_OFFLINE:-}" in
    1 | [Oo][Nn] | [Yy][Ee][Ss] | [Tt][Rr][Uu][Ee])
      echo "HF_HUB_OFFLINE is set and $model / $taesd are not in the Hugging Face cache:"
      echo "falling back to the TAESD demo"
      taesd_demo
      exit 0 ;;
  esac
  echo "fetching $model (fp16, about 2.6 GB) and $taesd (about 10 MB) into the Hugging Face cache"
  if ! { "$S" pull "$model" && "$S" pull "$taesd"; }; then
    if hub_reachable; then
      echo "error: the download failed (see above); run scripts/quickstart.sh again to resume" >&2
      exit 1
    fi
    echo "no network: ${HF_ENDPOINT:-https://huggingface.co} cannot be reached, so the models"
    echo "cannot be downloaded; falling back to the TAESD demo"
    taesd_demo
    exit 0
  fi
fi

"$S" img2img --model "$model" --taesd "$taesd" \
  --prompt "an oil painting portrait, thick impressionist brush strokes, vivid colours" \
  --t-index 32 --steps 50 --cfg none --width 512 --height 512 \
  --input "$root/data/images/portrait.png" --output "$root/out.png"
echo
echo "stylised data/images/portrait.png -> $root/out.png"
echo "live, from a camera in the browser:"
echo "  $S serve --model $model --taesd $taesd"
