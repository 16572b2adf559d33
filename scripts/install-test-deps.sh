#!/usr/bin/env bash
# What the tests need beyond the build (run as root or with sudo; CI runs it): a real browser
# for the server's page test (Debian's chromium and its WebDriver), the ffmpeg tool for the pipe
# tests, and a virtual X display for the --preview test.
set -euo pipefail
. "$(dirname "$0")/apt-install-missing.sh"
pkgs=(chromium chromium-driver ffmpeg xvfb xauth)
apt_install_missing "${pkgs[@]}"
echo "streamdiff test dependencies installed"
