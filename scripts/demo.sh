#!/usr/bin/env bash
# ctrust's main job on real models (installs and builds whatever is missing first).
# Today: load stories260K and SmolLM2-135M-Instruct, generate text, measure WikiText-2 perplexity.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
ctrust="$root/build/ctrust"
shared=${CTRUST_SHARED:-$root/../shared}
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
stories="$shared/models/stories260K/stories260K-f32.gguf"
smol="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
wiki="$shared/data/wikitext-2-raw/wiki.test.raw"

echo "== stories260K: greedy story from BOS"
"$ctrust" generate -m "$stories" -n 64
echo "== stories260K: the same model from its llama2.c checkpoint"
"$ctrust" generate -m "$shared/models/stories260K/stories260K.bin" \
  --tokenizer "$shared/models/stories260K/tok512.bin" -n 32
echo "== SmolLM2-135M-Instruct"
"$ctrust" info "$smol" | head -n 7
"$ctrust" generate -m "$smol" -p "The capital of France is" -n 24
echo "== SmolLM2-135M-Instruct: WikiText-2 test perplexity, ctx 512, first ${CHUNKS:-16} chunks"
"$ctrust" perplexity -m "$smol" -f "$wiki" --ctx 512 --chunks "${CHUNKS:-16}"
