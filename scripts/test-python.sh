#!/usr/bin/env bash
# Builds the Python package from source into a fresh virtualenv (build/pyvenv) the way a user
# installs it, and runs its tests (python/tests) against the installed package, and the live
# server's browser test (tests/browser: selenium + chromium, scripts/install-test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv --clear build/pyvenv
build/pyvenv/bin/pip install -q --upgrade pip
build/pyvenv/bin/pip install -q ./python pytest pillow opencv-python-headless selenium
# From outside the repository, so that `import streamdiff` is the installed package. The browser
# test (tests/browser) runs the server of build/release in chromium.
cd build
OMP_WAIT_POLICY=PASSIVE pyvenv/bin/python -m pytest ../python/tests ../tests/browser -q \
  -p no:cacheprovider
