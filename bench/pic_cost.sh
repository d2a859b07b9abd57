#!/usr/bin/env bash
# The cost of position-independent code (the library is compiled with -fPIC when the Python module is built,
# CMakeLists.txt, CTRUST_PYTHON): `ctrust perplexity` on SmolLM2-135M with two CLI binaries, A and B interleaved,
# three rounds, one thread. Prints each run's CPU seconds (user+sys: on a shared machine the wall time follows the
# load, the CPU time hardly does), wall seconds, the compute seconds ctrust reports, and the load average.
#   bash bench/pic_cost.sh NOPIC_CTRUST PIC_CTRUST      e.g. a tree configured with -DCTRUST_PYTHON=OFF vs build/ctrust
# Results: docs/python.md, "Build cost".
set -euo pipefail
(($# == 2)) || { echo "usage: bash bench/pic_cost.sh CTRUST_A CTRUST_B" >&2; exit 2; }
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
text=${CTRUST_SHARED:-$root/../shared}/data/wikitext-2-raw/wiki.test.raw
out=$(mktemp -d)
for model in "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$cache/models/SmolLM2-135M-Instruct.F32.gguf"; do
  for round in 1 2 3; do
    for bin in "$1" "$2"; do
      for mode in native f32; do
        load=$(uptime | sed 's/.*load average: //')
        /usr/bin/time -f "%U %S %e" -o "$out/time" env OMP_NUM_THREADS=1 "$bin" perplexity -m "$model" \
          --compute "$mode" -f "$text" --ctx 256 --chunks 6 -t 1 --json > "$out/pp.json" 2>/dev/null
        read -r u s e < "$out/time"
        secs=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['seconds'], 2))" "$out/pp.json")
        echo "$(basename "$model") round $round $bin $mode: cpu $(python3 -c "print(round($u + $s, 2))") s, wall $e s, compute $secs s, load $load"
      done
    done
  done
done
rm -rf "$out"
