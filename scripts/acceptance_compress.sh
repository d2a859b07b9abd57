#!/usr/bin/env bash
# Acceptance table of issue 4 (docs/compression_results.md): compresses SmolLM2-135M-Instruct with every method
# and measures WikiText-2 test perplexity (ctx 512, llama.cpp protocol, first $CHUNKS chunks) and token-level KL
# against the baseline, one variant after the other, one thread each.
#
#   BASE    model to compress and compare against (default: the Q4_1 GGUF in the cache; ctrust dequantizes it
#           to f32 at load, so it is the same model as the F32 copy)
#   CHUNKS  perplexity chunks of 512 tokens (default 8; the second half of each chunk is scored)
#   OUT     folder for the variants, logs and results.tsv (default ~/.cache/ctrust/acceptance)
#   ONLY    optional regex: run only the variants whose name matches
#   CALIB_OPTS  extra calibration options for every compress call, e.g. "--calib-raw" (the text the table of
#           docs/compression_results.md was made from before issue 12) or "--calib-chat"
# Calibration: the project defaults, 32 sequences x 256 tokens of wikitext-2 valid (cleaned: sentences with <unk>
# dropped, @-@ @,@ @.@ undone), seed 0 (1 and 2 for the seed study). Group 64 instead of 128: SmolLM2's hidden
# size 576 is not divisible by 128.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CTRUST_BIN:-$ROOT/build/ctrust}
CACHE=${CTRUST_CACHE:-$HOME/.cache/ctrust}
SHARED=${CTRUST_SHARED:-$ROOT/../shared}
BASE=${BASE:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}
CHUNKS=${CHUNKS:-8}
OUT=${OUT:-$CACHE/acceptance}
ONLY=${ONLY:-.}
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
RES=$OUT/results.tsv
[ -f "$RES" ] || printf 'variant\tppl\tppl_stderr\tppl_ratio\tkl_mean\tkl_stderr\tsame_top\tcompress_s\tsparsity_or_error\n' > "$RES"

# The baseline's top-256 log-probs on the same chunks (KL against it is a lower bound, see docs/results.md).
KB=$OUT/base.c$CHUNKS.kldb
if [ ! -f "$KB" ]; then
  nice "$BIN" kld --base "$BASE" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --save-base "$KB" -t 1
fi

run() {  # name, compress options...
  local name=$1; shift
  [[ $name =~ $ONLY ]] || return 0
  grep -q "^$name	" "$RES" && { echo "skip $name (done)"; return 0; }
  local f=$OUT/$name.gguf model=$BASE cs=0 extra=-
  if [ "$name" != baseline ]; then
    local t0=$(date +%s.%N)
    # shellcheck disable=SC2086  # CALIB_OPTS is a list of options
    nice "$BIN" compress -m "$BASE" -o "$f" "$@" ${CALIB_OPTS:-} -t 1 --json > "$OUT/$name.compress.json"
    cs=$(python3 -c "import json;print(round(json.load(open('$OUT/$name.compress.json'))['seconds'],1))")
    extra=$(python3 - "$OUT/$name.compress.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
t = j["tensors"]
n = sum(x["out"] * x["in"] for x in t)
sp = sum(x["sparsity"] * x["out"] * x["in"] for x in t) / n
err = [x["rel_error"] for x in t if x["rel_error"] >= 0]
print(f"sparsity={sp:.4f}" + (f",mean_rel_err={sum(err)/len(err):.5f}" if err else ""))
EOF
)
    model=$f
  fi
  nice "$BIN" kld --load-base "$KB" -m "$model" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t 1 --json > "$OUT/$name.kld.json"
  python3 - "$OUT/$name.kld.json" "$name" "$cs" "$extra" >> "$RES" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
print("\t".join([sys.argv[2], f"{j['ppl_b']:.4f}", f"{j['ppl_b_stderr']:.4f}", f"{j['ppl_ratio']:.5f}",
                 f"{j['kl_mean']:.5f}", f"{j['kl_stderr']:.5f}", f"{j['same_top']:.4f}", sys.argv[3], sys.argv[4]]))
EOF
  tail -1 "$RES"
  [ "$name" = baseline ] || [ -n "${KEEP:-}" ] || rm -f "$f"
}

# In order of importance (the run can be cut short; finished variants are skipped when it is run again).
run baseline
for m in rtn gptq awq; do run $m-w3-g64 --method $m --bits 3 --group-size 64; done
for m in magnitude wanda sparsegpt; do run $m-50 --method $m --sparsity 0.5; done
for m in magnitude wanda sparsegpt; do run $m-2of4 --method $m --nm 2:4; done
run smoothquant-w8a8 --method smoothquant
run llm-int8 --method llm_int8
for m in rtn gptq awq; do run $m-w4-g64 --method $m --bits 4 --group-size 64; done
for s in 1 2; do
  run gptq-w3-g64-seed$s --method gptq --bits 3 --group-size 64 --seed $s
  run sparsegpt-2of4-seed$s --method sparsegpt --nm 2:4 --seed $s
done
for b in 3 4; do for m in rtn gptq awq; do run $m-w$b-pc --method $m --bits $b --group-size 0; done; done
run rtn-w4-g32 --method rtn --bits 4 --group-size 32
run rtn-w4-g32-minmax --method rtn --bits 4 --group-size 32 --grid minmax
# Joint sparsity + quantization (issue 12, point 3): 2:4 alone, 4-bit alone, both (SparseGPT's joint sweep;
# per channel = the reference's configuration; group 32), and magnitude 2:4 + RTN 4-bit of the kept weights.
run sparsegpt-2of4-w4-g32 --method sparsegpt --sparsity 2:4 --bits 4 --group-size 32
run gptq-w4-g32 --method gptq --bits 4 --group-size 32
run magnitude-2of4-w4-g32 --method magnitude --sparsity 2:4 --bits 4 --group-size 32
run sparsegpt-2of4-w4-pc --method sparsegpt --sparsity 2:4 --bits 4 --group-size 0
column -t -s $'\t' "$RES"
