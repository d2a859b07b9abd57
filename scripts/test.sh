#!/usr/bin/env bash
# Runs the whole test suite: set-up (dependencies, model, build), then CTest on the release build,
# then the same suite under AddressSanitizer + UBSan (a second build in build-asan/).
# CTRUST_SKIP_ASAN=1 skips the sanitizer pass (quicker local runs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
ctest --test-dir "$root/build" --output-on-failure -j1
if [ "${CTRUST_SKIP_ASAN:-0}" != 1 ]; then
  CTRUST_BUILD="$root/build-asan" CTRUST_SANITIZE=ON bash "$root/scripts/setup.sh"
  # Sanitizers make the 135M-model tests slow; they run in the release pass above.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-asan" --output-on-failure -j1 -E 'Smol'
fi
bash "$root/scripts/fuzz.sh" 10   # libFuzzer smoke run, 10 s per target; fails without clang (docs/robustness.md)
