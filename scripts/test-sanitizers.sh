#!/usr/bin/env bash
# The whole C++ test suite under AddressSanitizer + UndefinedBehaviorSanitizer (the `debug`
# preset: -O0 -g -fsanitize=address,undefined, CPU only). Any sanitizer report fails its test:
# UBSan halts on the first error, LeakSanitizer checks every test process at exit (suppressions
# for third-party libraries only: tests/sanitizers/lsan.supp). Run before every release; about
# 9 minutes to build and 8 to test on 2 cores.
#   scripts/test-sanitizers.sh [extra ctest arguments, e.g. -R Serve]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset debug >/dev/null
cmake --build --preset debug -j"$(nproc)"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export LSAN_OPTIONS=suppressions=$PWD/tests/sanitizers/lsan.supp
ctest --preset debug -j"$(nproc)" --timeout 900 "$@"
