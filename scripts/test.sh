#!/usr/bin/env bash
# Runs the test suite: set-up (dependencies, model, release build), CTest on the release build (every tier, with the
# Python module's pytest suite as the test Python.pytest), then the sanitizer tree build-san/ (one clang build with
# ASan + UBSan + float-cast-overflow whose library is also instrumented for libFuzzer): its sanitizer tier
# (ctest -L sanitizer: parsers, tokenizers, store, answer parsing, kernels, the robustness reproducers) and the
# libFuzzer smoke run (scripts/fuzz.sh 10) from the same objects.
#   bash scripts/test.sh           everything (the README's command, and CI's)
#   bash scripts/test.sh --quick   the unit, model and golden tiers of the release build, not the slow tier and
#                                  not the sanitizer tree
#   bash scripts/test.sh --sanitize-all   only the full sanitizer sweep: every test file in build-san-all/, every
#                                  test but the slow tier and the SmolLM2/Qwen/Gemma ones (not part of CI; its
#                                  last result is in docs/correctness.md)
#   bash scripts/test.sh -L unit   any other ctest arguments are passed on (e.g. -L golden, -R Regex); then
#                                  the sanitizer tree is left out
# CTRUST_SKIP_ASAN=1 skips the sanitizer tree (its tests and the fuzz smoke run). The set-up installs
# llama-cpp-python's server (pip builds llama.cpp, ~157 s of CPU, once per Python environment) for the remote
# backend's RemoteServer.* tests, which fail without it; CTRUST_REMOTE=0 installs nothing and skips them (--quick
# neither installs nor runs them: they are in the slow tier). Tiers and measured durations:
# docs/correctness.md, "Test tiers" and "CI time".
# Each step prints its wall time and the CPU time (user+sys) of its processes: on a machine shared with other
# work the wall time grows with the load, the CPU time hardly does (quiet 2-core wall time ~ CPU time / 2).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quick=0 san_all=0
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --sanitize-all) san_all=1 ;;
    *) args+=("$a") ;;
  esac
done
steps_prefix="[test]"
source "$root/scripts/steps.sh"   # step_done NAME: wall and CPU time of each step
total_wall=$step_wall total_cpu=$step_cpu
# One thread per test and one test per core (CTRUST_TEST_JOBS): most tests are small and partly serial, so two
# single-thread tests keep both cores busier than one test with two threads (docs/correctness.md, "Test tiers").
# Tests that check thread-count independence set their own counts; each test has its own scratch folder.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # never spin-wait beside other work (docs/benchmarks.md)
# The cores, not nproc alone: nproc answers OMP_NUM_THREADS (1 here).
jobs=${CTRUST_TEST_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
san_env=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
if ((san_all)); then
  # The full sanitizer sweep: every test file, every test but the slow tier and the 135M-2B models' tests.
  CTRUST_BUILD="$root/build-san-all" CTRUST_SANITIZE=ON CTRUST_SANITIZE_TESTS=all CTRUST_TARGETS="ctrust ctrust_tests" \
    CTRUST_SETUP_F32=0 bash "$root/scripts/setup.sh"
  step_done "sanitizer tree with every test file"
  env "${san_env[@]}" ctest --test-dir "$root/build-san-all" --output-on-failure -j"$jobs" -LE slow -E 'Smol|Qwen|Gemma' "${args[@]}"
  step_done "full sanitizer sweep"
  exit 0
fi
# Not the benchmark programs. When the sanitizer tree will run, its clang installs in the background meanwhile.
clang=0
if ((!quick)) && [ "${CTRUST_SKIP_ASAN:-0}" != 1 ] && ((${#args[@]} == 0)); then clang=1; fi
# llama-cpp-python's server for the RemoteServer.* tests (slow tier): not for --quick. The tests read CTRUST_REMOTE
# too: 0 makes them skip instead of fail.
if ((quick)); then remote=0; else remote=${CTRUST_REMOTE:-1}; fi
export CTRUST_REMOTE=$remote
CTRUST_CLANG=$clang CTRUST_TARGETS="ctrust ctrust_tests" bash "$root/scripts/setup.sh"
step_done "set-up and release build"
if ((quick)); then
  ctest --test-dir "$root/build" --output-on-failure -j"$jobs" -LE slow "${args[@]}"
  step_done "quick tiers (the slow tier and the sanitizer tree were not run)"
  exit 0
fi
ctest --test-dir "$root/build" --output-on-failure -j"$jobs" "${args[@]}"
step_done "release build: all tiers"
if [ "${CTRUST_SKIP_ASAN:-0}" != 1 ] && ((${#args[@]} == 0)); then
  CTRUST_BUILD="$root/build-san" CTRUST_SANITIZE=ON CTRUST_TARGETS="ctrust ctrust_tests fuzz" CTRUST_SETUP_F32=0 \
    bash "$root/scripts/setup.sh"
  step_done "sanitizer tree (clang): library, CLI, the tier's tests, the fuzz harnesses"
  env "${san_env[@]}" ctest --test-dir "$root/build-san" --output-on-failure -j"$jobs" -L sanitizer
  step_done "sanitizer tier"
  bash "$root/scripts/fuzz.sh" 10   # libFuzzer smoke run, 10 s per target; fails without clang (docs/robustness.md)
  step_done "fuzz smoke run (12 targets x 10 s, two at a time)"
fi
step_wall=$total_wall step_cpu=$total_cpu
step_done "everything"
