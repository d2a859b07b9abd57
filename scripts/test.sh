#!/usr/bin/env bash
# Runs the test suite: set-up (dependencies, model, build), then CTest on the release build, then the suite
# without its slow tier under AddressSanitizer + UBSan (a second build in build-asan/).
#   bash scripts/test.sh           everything (the README's command, and CI's)
#   bash scripts/test.sh --quick   the unit, model and golden tiers of the release build, not the slow tier and
#                                  not the sanitizer pass (165 s measured on 2 cores at load 15-18)
#   bash scripts/test.sh -L unit   any other ctest arguments are passed on (e.g. -L golden, -R Regex); then
#                                  the sanitizer pass is left out
# CTRUST_SKIP_ASAN=1 skips the sanitizer pass. Tiers: docs/correctness.md, "Test tiers".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quick=0
args=()
for a in "$@"; do
  if [ "$a" = --quick ]; then quick=1; else args+=("$a"); fi
done
CTRUST_TARGETS="ctrust ctrust_tests" bash "$root/scripts/setup.sh"   # not the benchmark programs
# One thread per test and one test per core (CTRUST_TEST_JOBS): the suite's tests are mostly small, and two
# single-thread tests use both cores better than one test with two threads (docs/correctness.md, "Test tiers").
# Tests that check thread-count independence set their own counts; each test has its own scratch folder.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # never spin-wait beside other work (docs/benchmarks.md)
jobs=${CTRUST_TEST_JOBS:-$(nproc)}
start=$SECONDS
if ((quick)); then
  ctest --test-dir "$root/build" --output-on-failure -j"$jobs" -LE slow "${args[@]}"
  echo "[test] quick tiers done in $((SECONDS - start)) s (the slow tier and the sanitizer pass were not run)"
  exit 0
fi
ctest --test-dir "$root/build" --output-on-failure -j"$jobs" "${args[@]}"
echo "[test] release build: all tiers done in $((SECONDS - start)) s"
if [ "${CTRUST_SKIP_ASAN:-0}" != 1 ] && ((${#args[@]} == 0)); then
  start=$SECONDS
  CTRUST_BUILD="$root/build-asan" CTRUST_SANITIZE=ON CTRUST_TARGETS="ctrust ctrust_tests" bash "$root/scripts/setup.sh"
  # Sanitizers make the 135M-model tests slow; they run in the release pass above (the slow tier, and every
  # test that loads SmolLM2).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-asan" --output-on-failure -j"$jobs" -LE slow -E Smol
  echo "[test] sanitizer pass (label sanitizer, without the slow tier) done in $((SECONDS - start)) s"
fi
if ((${#args[@]} == 0)); then
  bash "$root/scripts/fuzz.sh" 10   # libFuzzer smoke run, 10 s per target; fails without clang (docs/robustness.md)
fi
