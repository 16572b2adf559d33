#!/usr/bin/env bash
# Installs what streamdiff needs to build and test on Debian 12 (run as root or with sudo).
# Every package is from Debian; see the README ("Dependencies") for why each is there.
set -euo pipefail
. "$(dirname "$0")/apt-install-missing.sh"
pkgs=(build-essential cmake ninja-build pkg-config
      libdnnl-dev ocl-icd-opencl-dev opencl-c-headers
      libpng-dev libturbojpeg0-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev ccache zlib1g-dev python3 python3-venv libboost-dev
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libavdevice-dev
      libsdl2-dev libcurl4-openssl-dev libssl-dev ca-certificates)
apt_install_missing "${pkgs[@]}"
echo "streamdiff dependencies installed"
