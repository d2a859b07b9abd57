#!/usr/bin/env bash
# ctrust's main job on real models (installs and builds whatever is missing first):
#   load real models -> compress SmolLM2-135M-Instruct with GPTQ -> evaluate baseline and variant item by item
#   -> show what changed (accuracy, flips, KL, perplexity).
# Each step prints its elapsed time and the expected total; long steps print progress lines on stderr (a plain
# line every few seconds when stderr is not a terminal, e.g. piped into a log).
# Re-running is cheap: the build is incremental, the variant is reused and the evaluations resume from the
# results store.
# Environment: CHUNKS (perplexity/KL chunks, default 8), LIMIT (items per task, default 60), DEMO_DB.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${CTRUST_SHARED:-$root/../shared}
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
ctrust="$root/build/ctrust"
stories="$shared/models/stories260K/stories260K-f32.gguf"
smol="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
variant="$cache/variants/SmolLM2-135M-Instruct.gptq-3bit-g64.gguf"
wiki="$shared/data/wikitext-2-raw/wiki.test.raw"
db=${DEMO_DB:-$cache/demo.db}
chunks=${CHUNKS:-8}
limit=${LIMIT:-60}
tasks=arc_easy,piqa,hellaswag

# Seconds each step took in a fresh clone on a quiet 2-core VM (2026-12-02, load average 0.6-1.9, ccache off, a
# new model cache: docs/benchmarks.md, "The demo"); the Debian packages were already installed there, so a machine
# without them adds the package download and install time to the set-up step. A re-run's set-up takes seconds.
declare -A expect=([setup]=160 [stories]=1 [smollm2]=1 [compress]=48 [eval]=48 [compare]=1 [kld]=21)
total_expected=0
for k in "${!expect[@]}"; do total_expected=$((total_expected + expect[$k])); done
t_start=$SECONDS
n_step=0
step() {  # step KEY "title"
  n_step=$((n_step + 1))
  echo
  echo "== [$n_step/7] $2"
  echo "   (took ~${expect[$1]} s on a quiet 2-core VM; $((SECONDS - t_start)) s elapsed of ~${total_expected} s there)"
  t_step=$SECONDS
  cpu_mark
  cpu_step=$(cpu_seconds)
}
# CPU seconds used by the commands so far (user + system of finished children): with the wall time it shows
# whether a step was slow because the machine was busy.
# (`times` runs in this shell, not in a $(...) subshell, which would have no children of its own.)
times_file=$(mktemp)
trap 'rm -f "$times_file"' EXIT
cpu_seconds() {
  awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%d", s }' \
    "$times_file"
}
cpu_mark() { times > "$times_file"; }
done_step() { cpu_mark; echo "   step done in $((SECONDS - t_step)) s (CPU $(( $(cpu_seconds) - cpu_step )) s)"; }

step setup "set-up: Debian packages, SmolLM2-135M-Instruct, build of the ctrust program only"
CTRUST_TARGETS=ctrust CTRUST_SETUP_F32=0 bash "$root/scripts/setup.sh"
done_step

step stories "stories260K: greedy story from BOS (GGUF, then the llama2.c checkpoint), WikiText-2 perplexity"
"$ctrust" generate -m "$stories" -n 48
"$ctrust" generate -m "$shared/models/stories260K/stories260K.bin" \
  --tokenizer "$shared/models/stories260K/tok512.bin" -n 24
echo "-- WikiText-2 test perplexity, ctx 512, first $chunks chunks"
"$ctrust" perplexity -m "$stories" -f "$wiki" --ctx 512 --chunks "$chunks"
done_step

step smollm2 "SmolLM2-135M-Instruct: what the file holds, and one chat answer (--chat applies its chat template)"
"$ctrust" info "$smol" | head -n 7
"$ctrust" generate -m "$smol" --chat -p "What is the capital of France?" -n 24
done_step

step compress "compress: GPTQ 3-bit, group 64, 32 calibration sequences of 256 tokens from wiki.valid (cleaned)"
mkdir -p "$(dirname "$variant")"
if [[ ! -s "$variant" ]]; then
  # Written to a temporary name first: an interrupted run does not leave a half-written variant behind.
  "$ctrust" compress -m "$smol" --method gptq --bits 3 --group-size 64 --seed 0 -o "$variant.part" | tail -n 4
  mv "$variant.part" "$variant"
else
  echo "(reusing $variant)"
fi
done_step

step eval "evaluate baseline and variant on $tasks, $limit items each (results store: $db)"
"$ctrust" eval -m "$smol" --tasks "$tasks" --limit "$limit" --name smollm2 --db "$db"
"$ctrust" eval -m "$variant" --tasks "$tasks" --limit "$limit" --name smollm2-gptq3 --db "$db"
done_step

step compare "what changed, item by item"
"$ctrust" compare smollm2 smollm2-gptq3 --db "$db"
done_step

step kld "token-level KL divergence and perplexity ratio on WikiText-2 test, ctx 512, first $chunks chunks"
"$ctrust" kld --base "$smol" -m "$variant" -f "$wiki" --ctx 512 --chunks "$chunks"
done_step

echo
cpu_mark
echo "== demo done in $((SECONDS - t_start)) s, CPU $(cpu_seconds) s (~${total_expected} s on a quiet 2-core VM)"
