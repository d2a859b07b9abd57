#!/usr/bin/env bash
# K-quant comparison of issue 12, point 2 (docs/compression_results.md, "GPTQ into K-quants vs llama-quantize"):
# llama-quantize Q4_K_M / Q3_K_M with and without an imatrix (written by `ctrust imatrix` from ctrust's default
# calibration sample) against ctrust GPTQ into exactly the same per-tensor types (--types-from the llama-quantize
# file), with and without the same imatrix for the K-quant fits, and with it plus ggml's legacy-type fits
# (--legacy-fit ggml). Measures, for every file: its size, WikiText-2
# test perplexity and token KL to the base with llama-perplexity (--kl-divergence, llama.cpp's own arithmetic)
# and with ctrust kld (f32 compute). Files already made are reused (delete OUT to start over).
#
#   BASE    full-precision model (default: SmolLM2-135M-Instruct.F32.gguf in the cache)
#   CHUNKS  chunks of 512 tokens for perplexity/KL (default 8, as docs/compression_results.md; the second half of
#           each chunk is scored)
#   OUT     folder (default ~/.cache/ctrust/kquant_compare/<base name>)
#   TYPES   llama.cpp mixes to compare (default "Q4_K_M Q3_K_M")
#   THREADS threads for every tool (default 2)
# Needs the llama.cpp tools (bash scripts/build_llamacpp.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CTRUST_BIN:-$ROOT/build/ctrust}
CACHE=${CTRUST_CACHE:-$HOME/.cache/ctrust}
SHARED=${CTRUST_SHARED:-$ROOT/../shared}
LLAMA=${CTRUST_LLAMACPP:-$CACHE/llamacpp}/bin
BASE=${BASE:-$CACHE/models/SmolLM2-135M-Instruct.F32.gguf}
CHUNKS=${CHUNKS:-8}
OUT=${OUT:-$CACHE/kquant_compare/$(basename "$BASE" .gguf)}
TYPES=${TYPES:-"Q4_K_M Q3_K_M"}
T=${THREADS:-2}
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
for tool in llama-quantize llama-perplexity; do
  [[ -x $LLAMA/$tool ]] || { echo "ctrust: error: $LLAMA/$tool missing (bash scripts/build_llamacpp.sh)" >&2; exit 1; }
done
mkdir -p "$OUT"
RES=$OUT/results.tsv
printf 'file\tbytes\tllama_ppl\tllama_ppl_err\tllama_kl\tllama_kl_err\tllama_same_top\tctrust_ppl\tctrust_kl\tctrust_kl_err\tctrust_same_top\n' > "$RES"
log() { echo "[kquant_compare $(date +%H:%M:%S)] $*" >&2; }

IM=$OUT/imatrix.gguf
[[ -f $IM ]] || { log "ctrust imatrix"; nice -n 5 "$BIN" imatrix -m "$BASE" -o "$IM" -t "$T" > "$OUT/imatrix.log" 2>&1; }

files=()
for ty in $TYPES; do
  l=$(echo "$ty" | tr 'A-Z' 'a-z')
  [[ -f $OUT/llama-$l.gguf ]] || { log "llama-quantize $ty"; nice -n 5 "$LLAMA/llama-quantize" "$BASE" "$OUT/llama-$l.gguf" "$ty" "$T" > "$OUT/llama-$l.log" 2>&1; }
  [[ -f $OUT/llama-$l-im.gguf ]] || { log "llama-quantize $ty --imatrix"; nice -n 5 "$LLAMA/llama-quantize" --imatrix "$IM" "$BASE" "$OUT/llama-$l-im.gguf" "$ty" "$T" > "$OUT/llama-$l-im.log" 2>&1; }
  [[ -f $OUT/gptq-$l.gguf ]] || { log "ctrust gptq --types-from llama-$l"; nice -n 5 "$BIN" compress -m "$BASE" --method gptq --types-from "$OUT/llama-$l.gguf" -o "$OUT/gptq-$l.gguf" -t "$T" --json > "$OUT/gptq-$l.json" 2> "$OUT/gptq-$l.err"; }
  [[ -f $OUT/gptq-$l-im.gguf ]] || { log "ctrust gptq --types-from llama-$l --imatrix"; nice -n 5 "$BIN" compress -m "$BASE" --method gptq --types-from "$OUT/llama-$l.gguf" --imatrix "$IM" -o "$OUT/gptq-$l-im.gguf" -t "$T" --json > "$OUT/gptq-$l-im.json" 2> "$OUT/gptq-$l-im.err"; }
  [[ -f $OUT/gptq-$l-im-lf.gguf ]] || { log "ctrust gptq --types-from llama-$l --imatrix --legacy-fit ggml"; nice -n 5 "$BIN" compress -m "$BASE" --method gptq --types-from "$OUT/llama-$l.gguf" --imatrix "$IM" --legacy-fit ggml -o "$OUT/gptq-$l-im-lf.gguf" -t "$T" --json > "$OUT/gptq-$l-im-lf.json" 2> "$OUT/gptq-$l-im-lf.err"; }
  files+=("llama-$l" "llama-$l-im" "gptq-$l" "gptq-$l-im" "gptq-$l-im-lf")
done

# Baselines: llama.cpp's logits of the base (its KL file) and ctrust's (top-k baseline).
[[ -f $OUT/base.kld ]] || { log "llama-perplexity base"; nice -n 5 "$LLAMA/llama-perplexity" -m "$BASE" -f "$TEXT" -c 512 --chunks "$CHUNKS" -t "$T" --kl-divergence-base "$OUT/base.kld" > "$OUT/base.ppl.log" 2>&1; }
[[ -f $OUT/base.ctrust ]] || { log "ctrust kld base"; nice -n 5 "$BIN" kld --base "$BASE" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --save-base "$OUT/base.ctrust" -t "$T" > "$OUT/base.ctrust.log" 2>&1; }
base_ppl=$(grep -o 'Final estimate: PPL = [0-9.]* +/- [0-9.]*' "$OUT/base.ppl.log" | awk '{print $5"\t"$7}')
printf 'base\t%s\t%s\t0\t0\t1\t\t\t\t\n' "$(stat -c %s "$BASE")" "$base_ppl" >> "$RES"

for f in "${files[@]}"; do
  g=$OUT/$f.gguf
  [[ -f $OUT/$f.kl.log ]] || { log "llama-perplexity --kl-divergence $f"; nice -n 5 "$LLAMA/llama-perplexity" -m "$g" --kl-divergence-base "$OUT/base.kld" --kl-divergence -t "$T" > "$OUT/$f.kl.log" 2>&1; }
  [[ -f $OUT/$f.ctrust.log ]] || { log "ctrust kld $f"; nice -n 5 "$BIN" kld --load-base "$OUT/base.ctrust" -m "$g" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$T" > "$OUT/$f.ctrust.log" 2> "$OUT/$f.ctrust.err"; }
  # Both tools print llama.cpp's statistics block; the same patterns read both.
  python3 - "$f" "$g" "$OUT/$f.kl.log" "$OUT/$f.ctrust.log" >> "$RES" <<'EOF'
import os, re, sys
name, gguf, llama_log, ctrust_log = sys.argv[1:5]
def stats(path):
    t = open(path).read()
    def grab(pat):
        m = re.search(pat, t)
        return list(m.groups()) if m else ['', '']
    return (grab(r'Mean PPL\(Q\)\s*:\s*([0-9.]+)\s*±\s*([0-9.]+)'), grab(r'Mean\s+KLD:\s*([0-9.]+)\s*±\s*([0-9.]+)'),
            grab(r'Same top p:\s*([0-9.]+)\s*±\s*([0-9.]+)'))
lp, lk, ls = stats(llama_log)
cp, ck, cs = stats(ctrust_log)
print('\t'.join(str(x) for x in [name, os.path.getsize(gguf), lp[0], lp[1], lk[0], lk[1], ls[0], cp[0], ck[0], ck[1], cs[0]]))
EOF
done
log "results: $RES"
column -t -s $'\t' "$RES"
