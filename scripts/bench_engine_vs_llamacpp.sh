#!/usr/bin/env bash
# Engine speed beside llama.cpp on the same GGUF files, interleaved so both see the same machine load:
# prefill tok/s (one P-token prompt), decode tok/s (128 greedy steps), 1 and 2 threads, peak RSS;
# ctrust in both compute modes (f32: dequantized weights through OpenBLAS; native: typed kernels).
# P = 512 for SmolLM2-135M; 256 for stories260K, whose context is 512 tokens (prompt + generation must fit).
# Needs the build (scripts/setup.sh) and the reference packages (scripts/setup_ref.sh).
# Usage: bash scripts/bench_engine_vs_llamacpp.sh [REPS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${CTRUST_SHARED:-$root/../shared}
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
build=${CTRUST_BUILD:-$root/build}
reps=${1:-2}
stories_v3="$cache/models/stories260K-f32.v3.gguf"   # current llama.cpp does not read GGUF v1
[[ -s "$stories_v3" ]] || "$build/ctrust" convert -m "$shared/models/stories260K/stories260K-f32.gguf" \
  --type f32 -o "$stories_v3" >/dev/null
for spec in "$stories_v3:256" "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf:512"; do
  m=${spec%:*} p=${spec##*:}
  for t in 1 2; do
    echo "## $(basename "$m"), $t thread(s); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    for c in f32 native; do
      OMP_NUM_THREADS=$t "$build/bench_engine" "$m" --prompt "$p" --gen 128 --reps "$reps" --threads "$t" --compute $c
    done
    python3 "$root/scripts/ref/bench_llamacpp.py" "$m" --prompt "$p" --gen 128 --reps "$reps" --threads "$t"
  done
done
