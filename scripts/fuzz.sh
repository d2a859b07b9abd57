#!/usr/bin/env bash
# Fuzzing with libFuzzer: builds the harnesses in fuzz/ in the sanitizer tree build-san/ (clang, ASan + UBSan +
# float-cast-overflow, the library instrumented for libFuzzer; the same tree builds the sanitizer tier's tests,
# so after scripts/test.sh nothing is left to build), makes seed corpora from the repository's test files and
# small excerpts of ../shared, and runs every target for SECONDS (default 10: the smoke run that scripts/test.sh
# calls), one target per core at a time (CTRUST_FUZZ_JOBS=N to change). See docs/robustness.md.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 300 fuzz_gguf
# Corpora grow in build-san/corpus/<target>/ (kept between runs); a crash, sanitizer report, leak, timeout
# (10 s per input) or out-of-memory (2 GB) is written to build-san/crashes/<target>/ and fails the run.
# Without clang the run fails (it never skips): scripts/setup.sh installs it for the sanitizer tree.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-10}
shift || true
say() { echo "[fuzz] $*" >&2; }
# Wall and CPU time (user+sys of finished child processes, bash's `times`) of each step, as in scripts/test.sh.
steps_prefix="[fuzz]"
source "$root/scripts/steps.sh"   # step_done NAME: wall and CPU time of each step

# Packages (clang with them) and the harnesses in the sanitizer tree.
build=${CTRUST_FUZZ_BUILD:-$root/build-san}
CTRUST_BUILD=$build CTRUST_SANITIZE=ON CTRUST_TARGETS=fuzz CTRUST_SETUP_F32=0 bash "$root/scripts/setup.sh"
step_done "sanitizer tree: the harnesses"
if [ ! -d "$build/seeds" ] || [ "$build/make_seeds" -nt "$build/seeds" ]; then
  rm -rf "$build/seeds.new"
  "$build/make_seeds" "$build/seeds.new" >&2
  rm -rf "$build/seeds" && mv "$build/seeds.new" "$build/seeds"
fi

targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in "$root"/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
# Targets run $jobs at a time (default: one per core; each libFuzzer process is single-threaded).
jobs=${CTRUST_FUZZ_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
run_target() {
  local t=$1 st=0
  mkdir -p "$build/corpus/$t" "$build/crashes/$t"
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$t/" "$build/corpus/$t" "$build/seeds/$t" > "$build/crashes/$t/last.log" 2>&1 || st=$?
  echo "$st" > "$build/crashes/$t/last.status"
}
say "running ${#targets[@]} target(s) for ${secs} s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then wait -n || true; running=$((running - 1)); fi
  rm -f "$build/crashes/$t/last.status"
  run_target "$t" &
  running=$((running + 1))
done
wait || true
step_done "seeds and runs"
failed=()
printf '%-24s %10s %8s %8s %8s  %s\n' target execs exec/s cov ft result
for t in "${targets[@]}"; do
  log="$build/crashes/$t/last.log"
  st=$(cat "$build/crashes/$t/last.status" 2>/dev/null || echo "no status")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
  cov=$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
  ft=$( (grep -o 'ft: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
  result=ok
  if [ "$st" != 0 ]; then
    result="FAILED (exit $st; log $log)"
    failed+=("$t")
  fi
  printf '%-24s %10s %8s %8s %8s  %s\n' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "$result"
done
if ((${#failed[@]})); then
  say "error: ${#failed[@]} target(s) failed: ${failed[*]}"
  for t in "${failed[@]}"; do grep -m3 -E 'ERROR|runtime error|SUMMARY|deadly|Test unit written' "$build/crashes/$t/last.log" >&2 || true; done
  exit 1
fi
say "all ${#targets[@]} targets ran ${secs}s without a finding"
