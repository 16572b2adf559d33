#!/usr/bin/env bash
# What the tests need beyond the build (run as root or with sudo; CI runs it): a real browser
# for the server's page test (Debian's chromium and its WebDriver), the ffmpeg tool for the pipe
# tests, and a virtual X display for the --preview test.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs=(chromium chromium-driver ffmpeg xvfb xauth)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "streamdiff test dependencies installed"
