#!/usr/bin/env bash
# ctrust's main job on real models (installs and builds whatever is missing first):
#   load real models -> compress SmolLM2-135M-Instruct with GPTQ -> evaluate baseline and variant item by item
#   -> show what changed (accuracy, flips, KL, perplexity).
# Re-running is cheap: the variant is reused and the evaluations resume from the results store.
# Environment: CHUNKS (perplexity/KL chunks, default 8), LIMIT (items per task, default 60), DEMO_DB.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
ctrust="$root/build/ctrust"
shared=${CTRUST_SHARED:-$root/../shared}
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
stories="$shared/models/stories260K/stories260K-f32.gguf"
smol="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
variant="$cache/variants/SmolLM2-135M-Instruct.gptq-3bit-g64.gguf"
wiki="$shared/data/wikitext-2-raw/wiki.test.raw"
db=${DEMO_DB:-$cache/demo.db}
chunks=${CHUNKS:-8}
limit=${LIMIT:-60}
tasks=arc_easy,piqa,hellaswag

echo "== stories260K: greedy story from BOS (GGUF, then the llama2.c checkpoint)"
"$ctrust" generate -m "$stories" -n 48
"$ctrust" generate -m "$shared/models/stories260K/stories260K.bin" \
  --tokenizer "$shared/models/stories260K/tok512.bin" -n 24
echo "== stories260K: WikiText-2 test perplexity, ctx 512, first $chunks chunks"
"$ctrust" perplexity -m "$stories" -f "$wiki" --ctx 512 --chunks "$chunks"

echo "== SmolLM2-135M-Instruct"
"$ctrust" info "$smol" | head -n 7
"$ctrust" generate -m "$smol" -p "The capital of France is" -n 24

echo "== compress: GPTQ 3-bit, group 64, 32 calibration sequences of 256 tokens from wiki.valid"
mkdir -p "$(dirname "$variant")"
if [[ ! -s "$variant" ]]; then
  "$ctrust" compress -m "$smol" --method gptq --bits 3 --group-size 64 --seed 0 -o "$variant" | tail -n 3
else
  echo "(reusing $variant)"
fi

echo "== evaluate baseline and variant on $tasks, first $limit items each (results store: $db)"
"$ctrust" eval -m "$smol" --tasks "$tasks" --limit "$limit" --name smollm2 --db "$db"
"$ctrust" eval -m "$variant" --tasks "$tasks" --limit "$limit" --name smollm2-gptq3 --db "$db"

echo "== what changed, item by item"
"$ctrust" compare smollm2 smollm2-gptq3 --db "$db"

echo "== token-level KL divergence and perplexity ratio on WikiText-2 test, ctx 512, first $chunks chunks"
"$ctrust" kld --base "$smol" -m "$variant" -f "$wiki" --ctx 512 --chunks "$chunks"
