#!/usr/bin/env bash
# Runs the test suite: set-up (dependencies, model, build), then CTest on the release build, then the suite
# without its slow tier under AddressSanitizer + UBSan (a second build in build-asan/), then the libFuzzer
# smoke run (scripts/fuzz.sh 10, a clang build in build-fuzz/).
#   bash scripts/test.sh           everything (the README's command, and CI's)
#   bash scripts/test.sh --quick   the unit, model and golden tiers of the release build, not the slow tier and
#                                  not the sanitizer pass
#   bash scripts/test.sh -L unit   any other ctest arguments are passed on (e.g. -L golden, -R Regex); then
#                                  the sanitizer pass and the fuzz smoke run are left out
# CTRUST_SKIP_ASAN=1 skips the sanitizer pass. Tiers and measured durations: docs/correctness.md, "Test tiers".
# A fresh clone on 2 cores (CI): 2,002 s before the build and scheduling changes of 2026-12-02, about 1,200-1,300 s
# estimated after them from measured CPU times (docs/correctness.md, "CI time").
# Each step prints its wall time and the CPU time (user+sys) of its processes: on a machine shared with other
# work the wall time grows with the load, the CPU time hardly does (quiet 2-core wall time ~ CPU time / 2).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quick=0
args=()
for a in "$@"; do
  if [ "$a" = --quick ]; then quick=1; else args+=("$a"); fi
done
steps_prefix="[test]"
source "$root/scripts/steps.sh"   # step_done NAME: wall and CPU time of each step
total_wall=$step_wall total_cpu=$step_cpu
CTRUST_TARGETS="ctrust ctrust_tests" bash "$root/scripts/setup.sh"   # not the benchmark programs
step_done "set-up and release build"
# One thread per test and one test per core (CTRUST_TEST_JOBS): most tests are small and partly serial, so two
# single-thread tests keep both cores busier than one test with two threads (docs/correctness.md, "Test tiers").
# Tests that check thread-count independence set their own counts; each test has its own scratch folder.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # never spin-wait beside other work (docs/benchmarks.md)
# The cores, not nproc alone: nproc answers OMP_NUM_THREADS (1 here).
jobs=${CTRUST_TEST_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
if ((quick)); then
  ctest --test-dir "$root/build" --output-on-failure -j"$jobs" -LE slow "${args[@]}"
  step_done "quick tiers (the slow tier and the sanitizer pass were not run)"
  exit 0
fi
ctest --test-dir "$root/build" --output-on-failure -j"$jobs" "${args[@]}"
step_done "release build: all tiers"
if [ "${CTRUST_SKIP_ASAN:-0}" != 1 ] && ((${#args[@]} == 0)); then
  CTRUST_BUILD="$root/build-asan" CTRUST_SANITIZE=ON CTRUST_TARGETS="ctrust ctrust_tests" CTRUST_SETUP_F32=0 \
    bash "$root/scripts/setup.sh"
  step_done "sanitizer build"
  # Sanitizers make the 135M-model tests slow; they run in the release pass above (the slow tier, and every
  # test that loads SmolLM2).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-asan" --output-on-failure -j"$jobs" -LE slow -E Smol
  step_done "sanitizer pass (label sanitizer, without the slow tier)"
fi
if ((${#args[@]} == 0)); then
  bash "$root/scripts/fuzz.sh" 10   # libFuzzer smoke run, 10 s per target; fails without clang (docs/robustness.md)
  step_done "fuzz smoke run (clang build and 10 s per target)"
fi
step_wall=$total_wall step_cpu=$total_cpu
step_done "everything"
