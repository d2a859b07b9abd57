#!/usr/bin/env bash
# K-quant comparison of issue 12, point 2 (docs/compression_results.md, "GPTQ into K-quants vs llama-quantize"):
# llama-quantize mixes (Q4_K_M, Q3_K_M, Q2_K, ...) with and without an imatrix (written by `ctrust imatrix` from
# ctrust's default calibration sample) against ctrust GPTQ into exactly the same per-tensor types (--types-from the
# llama-quantize file), with and without the same imatrix for the K-quant fits, and with it plus ggml's legacy-type
# fits (--legacy-fit ggml). Measures, for every file: its size, WikiText-2 test perplexity and token KL to the base
# with ctrust kld (f32 compute, top-256 saved baseline) and optionally llama-perplexity (--kl-divergence, llama.cpp's
# own arithmetic); then paired comparisons on the same tokens (`ctrust kld --paired`: B - A with token and chunk
# standard errors and a chunk-bootstrap 95% interval) of every file against llama-quantize + imatrix of its mix.
# Files already made are reused (delete OUT to start over). CPU and wall time of every step: OUT/*.time.
#
#   BASE     full-precision model (default: SmolLM2-135M-Instruct.F32.gguf in the cache)
#   CHUNKS   chunks of 512 tokens for perplexity/KL (default 8; the second half of each chunk is scored)
#   OUT      folder (default ~/.cache/ctrust/kquant_compare/<base name>)
#   TYPES    llama.cpp mixes to compare (default "Q4_K_M Q3_K_M")
#   VARIANTS ctrust files per mix (default "gptq gptq-im gptq-im-lf": GPTQ; + --imatrix; + --legacy-fit ggml; "" = none)
#   LLAMA_KL 1 (default): also llama-perplexity's KL of every file; 0: ctrust kld only
#   THREADS  threads for every tool (default 2); NICE niceness (default 5)
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
VARIANTS=${VARIANTS-"gptq gptq-im gptq-im-lf"}
LLAMA_KL=${LLAMA_KL:-1}
T=${THREADS:-2}
NICE=${NICE:-5}
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
for tool in llama-quantize llama-perplexity; do
  [[ -x $LLAMA/$tool ]] || { echo "ctrust: error: $LLAMA/$tool missing (bash scripts/build_llamacpp.sh)" >&2; exit 1; }
done
mkdir -p "$OUT"
log() { echo "[kquant_compare $(date +%H:%M:%S)] $* ($(uptime | sed 's/.*load/load/'))" >&2; }
# run NAME STDOUT STDERR cmd...: nice, CPU/wall/RSS in OUT/NAME.time (GNU time -v)
run() {
  local name=$1 o=$2 e=$3; shift 3
  log "$name"
  /usr/bin/time -o "$OUT/$name.time" -v nice -n "$NICE" "$@" > "$o" 2> "$e"
}

IM=$OUT/imatrix.gguf
[[ -f $IM ]] || run imatrix "$OUT/imatrix.log" "$OUT/imatrix.err" "$BIN" imatrix -m "$BASE" -o "$IM" -t "$T"

# Baselines first: llama.cpp's logits of the base (its KL file) and ctrust's (top-k baseline).
if [[ $LLAMA_KL == 1 && ! -f $OUT/base.kld ]]; then
  run base-llama "$OUT/base.ppl.log" "$OUT/base.ppl.err" "$LLAMA/llama-perplexity" -m "$BASE" -f "$TEXT" -c 512 --chunks "$CHUNKS" -t "$T" --kl-divergence-base "$OUT/base.kld"
fi
[[ -f $OUT/base.ctrust ]] || run base-ctrust "$OUT/base.ctrust.log" "$OUT/base.ctrust.err" "$BIN" kld --base "$BASE" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --save-base "$OUT/base.ctrust" -t "$T"

# Every file is measured as soon as it is made (an interrupted run leaves complete rows).
measure() {
  local f=$1 g=$OUT/$1.gguf
  if [[ $LLAMA_KL == 1 && ! -f $OUT/$f.kl.log ]]; then
    run "kl-llama-$f" "$OUT/$f.kl.log" "$OUT/$f.kl.err" "$LLAMA/llama-perplexity" -m "$g" --kl-divergence-base "$OUT/base.kld" --kl-divergence -t "$T"
  fi
  [[ -f $OUT/$f.tokens.tsv ]] || run "kld-$f" "$OUT/$f.ctrust.log" "$OUT/$f.ctrust.err" "$BIN" kld --load-base "$OUT/base.ctrust" -m "$g" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$T" --save-tokens "$OUT/$f.tokens.tsv"
}
files=()
for ty in $TYPES; do
  l=$(echo "$ty" | tr 'A-Z' 'a-z')
  [[ -f $OUT/llama-$l.gguf ]] || run "llama-$l" "$OUT/llama-$l.log" "$OUT/llama-$l.err" "$LLAMA/llama-quantize" "$BASE" "$OUT/llama-$l.gguf" "$ty" "$T"
  [[ -f $OUT/llama-$l-im.gguf ]] || run "llama-$l-im" "$OUT/llama-$l-im.log" "$OUT/llama-$l-im.err" "$LLAMA/llama-quantize" --imatrix "$IM" "$BASE" "$OUT/llama-$l-im.gguf" "$ty" "$T"
  measure "llama-$l-im"
  measure "llama-$l"
  files+=("llama-$l" "llama-$l-im")
  for v in $VARIANTS; do
    case $v in
      gptq) extra=() ;;
      gptq-im) extra=(--imatrix "$IM") ;;
      gptq-im-lf) extra=(--imatrix "$IM" --legacy-fit ggml) ;;
      *) echo "ctrust: error: unknown variant '$v' (gptq, gptq-im, gptq-im-lf)" >&2; exit 1 ;;
    esac
    f=${v/gptq/gptq-$l}
    [[ -f $OUT/$f.gguf ]] || run "$f" "$OUT/$f.json" "$OUT/$f.err" "$BIN" compress -m "$BASE" --method gptq --types-from "$OUT/llama-$l.gguf" "${extra[@]}" -o "$OUT/$f.gguf" -t "$T" --json
    measure "$f"
    files+=("$f")
  done
done

RES=$OUT/results.tsv
printf 'file\tbytes\tllama_ppl\tllama_ppl_err\tllama_kl\tllama_kl_err\tllama_same_top\tctrust_ppl\tctrust_ppl_err\tctrust_kl\tctrust_kl_err\tctrust_same_top\tcpu_s\twall_s\n' > "$RES"
for f in "${files[@]}"; do
  g=$OUT/$f.gguf
  # Both tools print llama.cpp's statistics block; the same patterns read both.
  python3 - "$f" "$g" "$OUT/$f.kl.log" "$OUT/$f.ctrust.log" "$OUT/$f.time" >> "$RES" <<'PY'
import os, re, sys
name, gguf, llama_log, ctrust_log, tfile = sys.argv[1:6]
def stats(path):
    t = open(path).read() if os.path.exists(path) else ''
    def grab(pat):
        m = re.search(pat, t)
        return list(m.groups()) if m else ['', '']
    return (grab(r'Mean PPL\(Q\)\s*:\s*([0-9.]+)\s*±\s*([0-9.]+)'), grab(r'Mean\s+KLD:\s*([0-9.]+)\s*±\s*([0-9.]+)'),
            grab(r'Same top p:\s*([0-9.]+)\s*±\s*([0-9.]+)'))
def cpu_wall(path):  # GNU time -v of the step that made the file
    if not os.path.exists(path): return ['', '']
    t = open(path).read()
    u = float(re.search(r'User time \(seconds\): ([0-9.]+)', t).group(1)) + float(re.search(r'System time \(seconds\): ([0-9.]+)', t).group(1))
    w = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([0-9:.]+)', t).group(1).split(':')
    return [f'{u:.1f}', f'{sum(float(x) * 60 ** i for i, x in enumerate(reversed(w))):.1f}']
lp, lk, ls = stats(llama_log)
cp, ck, cs = stats(ctrust_log)
print('\t'.join(str(x) for x in [name, os.path.getsize(gguf), lp[0], lp[1], lk[0], lk[1], ls[0], cp[0], cp[1], ck[0], ck[1], cs[0]] + cpu_wall(tfile)))
PY
done
log "results: $RES"
column -t -s $'\t' "$RES"

# Paired: every file of a mix against llama-quantize + imatrix of the same mix (B - A; negative = lower than llama).
PAIRED=$OUT/paired.tsv
printf 'A\tB\tkl_a\tkl_b\tdelta\tse_tokens\tse_chunks\tci_low\tci_high\tkl_ratio\tratio_low\tratio_high\tppl_ratio\tppl_ratio_low\tppl_ratio_high\tsame_top_delta\tb_lower\n' > "$PAIRED"
for ty in $TYPES; do
  l=$(echo "$ty" | tr 'A-Z' 'a-z')
  ref=llama-$l-im
  for f in "${files[@]}"; do
    [[ $f == *-$l || $f == *-$l-* ]] || continue
    [[ $f == "$ref" ]] && continue
    "$BIN" kld --paired "$OUT/$ref.tokens.tsv" "$OUT/$f.tokens.tsv" --json > "$OUT/paired-$f.json"
    python3 - "$ref" "$f" "$OUT/paired-$f.json" >> "$PAIRED" <<'PY'
import json, math, sys
a, b, path = sys.argv[1:4]
p = json.load(open(path))
k, n, s = p['kl'], p['ln_ppl_ratio'], p['same_top']
print('\t'.join(str(x) for x in [a, b, round(k['a'], 6), round(k['b'], 6), round(k['delta'], 6), round(k['se_tokens'], 6),
      round(k['se_chunks'], 6), round(k['ci_low'], 6), round(k['ci_high'], 6), round(p['kl_ratio'], 4),
      round(p['kl_ratio_ci_low'], 4), round(p['kl_ratio_ci_high'], 4), round(math.exp(n['delta']), 5),
      round(math.exp(n['ci_low']), 5), round(math.exp(n['ci_high']), 5), round(s['delta'], 5), round(p['b_lower'], 4)]))
PY
  done
done
log "paired: $PAIRED"
column -t -s $'\t' "$PAIRED"
