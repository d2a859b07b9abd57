#!/usr/bin/env bash
# Long fuzzing runs bounded by CPU time, not wall time: each target runs (libFuzzer, the harness built by
# scripts/fuzz.sh in build-san/) until its own process has used CPU_SECONDS of CPU (user + system, read from
# /proc), then gets SIGINT and prints libFuzzer's final statistics. On a shared machine a wall-clock bound
# (-max_total_time) says little about how much fuzzing was done; this is the bound docs/robustness.md records.
#   scripts/fuzz_cpu.sh CPU_SECONDS TARGET...      e.g. scripts/fuzz_cpu.sh 3600 fuzz_gguf fuzz_safetensors
# Targets run one after another; run two copies of the script for two cores. CTRUST_FUZZ_IDLE=1 runs them at
# SCHED_IDLE (only the CPU nothing else wants); libFuzzer's per-input timeout is wall time, so a starved process
# needs a longer one: CTRUST_FUZZ_TIMEOUT (seconds, default 10; a timeout found this way is re-run alone). Logs: build-san/crashes/<target>/cpu<N>.log; a finding is
# written to build-san/crashes/<target>/ and makes the script exit 1. Build the harnesses first
# (`scripts/fuzz.sh 1 TARGET` builds and seeds them).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cpu=${1:?usage: fuzz_cpu.sh CPU_SECONDS TARGET...}
shift
build=${CTRUST_FUZZ_BUILD:-$root/build-san}
tick=$(getconf CLK_TCK)
status=0
for t in "$@"; do
  [ -x "$build/$t" ] || { echo "ctrust: error: $build/$t is not built (run scripts/fuzz.sh 1 $t)" >&2; exit 2; }
  mkdir -p "$build/corpus/$t" "$build/crashes/$t"
  log="$build/crashes/$t/cpu$cpu.log"
  prefix=()
  [ "${CTRUST_FUZZ_IDLE:-0}" = 1 ] && prefix=(chrt --idle 0)
  start=$(date -u +%FT%TZ)
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "${prefix[@]}" "$build/$t" -timeout="${CTRUST_FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$t/" "$build/corpus/$t" "$build/seeds/$t" > "$log" 2>&1 &
  pid=$!
  used=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ -r "/proc/$pid/stat" ]; then
      # fields 14 and 15 of /proc/PID/stat: utime and stime in clock ticks (the command name is in parentheses)
      used=$(awk -v t="$tick" '{ sub(/^.*\) /, ""); print int(($12 + $13) / t) }' "/proc/$pid/stat" 2>/dev/null || echo "$used")
      if ((used >= cpu)); then kill -INT "$pid" 2>/dev/null || true; break; fi
    fi
    sleep 5
  done
  st=0; wait "$pid" || st=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
  ft=$( (grep -o 'ft: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
  corpus=$(find "$build/corpus/$t" -type f | wc -l)
  # libFuzzer exits 72 (-interrupted_exitcode) on SIGINT: that is the normal end here
  finding=0
  if [ "$st" != 0 ] && [ "$st" != 72 ] && [ "$st" != 130 ]; then finding=1; status=1; fi
  if grep -qE 'ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error|Test unit written' "$log"; then finding=1; status=1; fi
  echo "$t start=$start end=$(date -u +%FT%TZ) cpu_s=$used execs=${execs:--} cov=${cov:--} ft=${ft:--} corpus=$corpus exit=$st finding=$finding"
done
exit $status
