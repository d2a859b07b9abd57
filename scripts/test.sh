#!/usr/bin/env bash
# Runs the test suite: set-up (dependencies, model, release build), then every CTest tier on the release build,
# then the suite without its slow tier under AddressSanitizer + UBSan and a 5-second libFuzzer smoke run of every
# fuzz target. The sanitizer tests and the fuzz harnesses share one clang build (build-san/), compiled at low
# priority while the release tests run (they leave a core idle most of the time).
#   bash scripts/test.sh           everything (the README's command, and CI's)
#   bash scripts/test.sh --quick   the unit, model and golden tiers of the release build, not the slow tier and
#                                  not the sanitizer pass
#   bash scripts/test.sh -L unit   any other ctest arguments are passed on (e.g. -L golden, -R Regex); then
#                                  the sanitizer pass is left out
# CTRUST_SKIP_ASAN=1 skips the sanitizer pass and the fuzz smoke run. Tiers: docs/correctness.md, "Test tiers".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quick=0
args=()
for a in "$@"; do
  if [ "$a" = --quick ]; then quick=1; else args+=("$a"); fi
done
t0=$SECONDS
san=0
if ((quick == 0)) && ((${#args[@]} == 0)) && [ "${CTRUST_SKIP_ASAN:-0}" != 1 ]; then san=1; fi
if ((san)); then
  CTRUST_FUZZ=1 CTRUST_TARGETS="ctrust ctrust_tests" bash "$root/scripts/setup.sh"   # clang too; not the benchmarks
else
  CTRUST_TARGETS="ctrust ctrust_tests" bash "$root/scripts/setup.sh"
fi
echo "[test] set-up and release build: $((SECONDS - t0)) s"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # never spin-wait beside other work (docs/benchmarks.md)
san_pid=
if ((san)); then
  # The sanitizer build (ctrust, the tests, the fuzz harnesses) at nice 15 beside the release tests.
  mkdir -p "$root/build-san"
  CTRUST_SAN_NICE="nice -n 15" CTRUST_SAN_TARGETS="ctrust ctrust_tests fuzz" CTRUST_TARGETS=ctrust \
    bash "$root/scripts/fuzz.sh" --build-only > "$root/build-san/test-build.log" 2>&1 &
  san_pid=$!
  trap '[ -n "$san_pid" ] && kill "$san_pid" 2>/dev/null || true' EXIT
fi
start=$SECONDS
if ((quick)); then
  ctest --test-dir "$root/build" --output-on-failure -j1 -LE slow "${args[@]}"
  echo "[test] quick tiers done in $((SECONDS - start)) s (the slow tier and the sanitizer pass were not run)"
  exit 0
fi
ctest --test-dir "$root/build" --output-on-failure -j1 "${args[@]}"
echo "[test] release build: all tiers done in $((SECONDS - start)) s"
if ((san)); then
  start=$SECONDS
  if ! wait "$san_pid"; then
    san_pid=
    cat "$root/build-san/test-build.log" >&2
    echo "[test] error: the sanitizer build failed" >&2
    exit 1
  fi
  san_pid=
  echo "[test] sanitizer build finished $((SECONDS - start)) s after the release tests"
  start=$SECONDS
  # Sanitizers make the 135M-model tests slow; they run in the release pass above (the slow tier, and every
  # test that loads SmolLM2).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-san" --output-on-failure -j1 -L sanitizer -LE slow -E Smol
  echo "[test] sanitizer pass (label sanitizer, without the slow tier) done in $((SECONDS - start)) s"
  start=$SECONDS
  bash "$root/scripts/fuzz.sh" 5   # libFuzzer smoke run, 5 s per target (docs/robustness.md)
  echo "[test] fuzz smoke run done in $((SECONDS - start)) s"
fi
echo "[test] all done in $((SECONDS - t0)) s"
