#!/usr/bin/env bash
# Installs what streamdiff needs to build and test on Debian 12 (run as root or with sudo).
# Every package is from Debian; see the README ("Dependencies") for why each is there.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs=(build-essential cmake ninja-build pkg-config
      libdnnl-dev ocl-icd-opencl-dev opencl-c-headers
      libpng-dev libturbojpeg0-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev ccache zlib1g-dev python3 python3-venv libboost-dev
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libavdevice-dev
      libsdl2-dev libcurl4-openssl-dev libssl-dev ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "streamdiff dependencies installed"
