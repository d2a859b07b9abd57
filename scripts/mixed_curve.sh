#!/usr/bin/env bash
# KL/size curve of KL-guided mixed precision (issue 12, point 4; docs/compression_results.md, "KL-guided mixed
# precision"): one sensitivity table (`compress --target-bpw ... --sens-table`), then for every target in BPWS a
# mixed file, the uniform files of every level (the same table's single columns: --mix-levels LEVEL), and, when
# llama-quantize is built, llama.cpp's Q3_K_M / Q4_K_M mixes re-made by ctrust with the same quantizer
# (--types-from the llama-quantize file) so that only the allocation differs. All files use RTN in the K-quant /
# legacy grids with ggml's fits weighted by ctrust's imatrix (--imatrix, --legacy-fit ggml), i.e. llama-quantize
# --imatrix's quantization. Every file: tensor bytes, bits per weight, the KL predicted from the table and measured
# on the calibration sample, and `ctrust kld` on WikiText-2 test (never used for the sensitivity).
#
#   BASE     full-precision model (default: SmolLM2-135M-Instruct.F32.gguf in the cache)
#   OUT      folder (default ~/.cache/ctrust/mixed_curve/<base name>); files already made are reused
#   BPWS     targets (default "5.9 6.2 6.5 7.0 7.5")
#   LEVELS   candidate levels (default q2_k,q3_k,q4_k,q5_k,q6_k,q8_0)
#   SENS_N, SENS_L  sensitivity sample (default 4 x 128 tokens of the calibration text, seed 0)
#   CHUNKS   chunks of 512 tokens for the evaluation (default 8); THREADS (default 1)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CTRUST_BIN:-$ROOT/build/ctrust}
CACHE=${CTRUST_CACHE:-$HOME/.cache/ctrust}
SHARED=${CTRUST_SHARED:-$ROOT/../shared}
LLAMA=${CTRUST_LLAMACPP:-$CACHE/llamacpp}/bin
BASE=${BASE:-$CACHE/models/SmolLM2-135M-Instruct.F32.gguf}
OUT=${OUT:-$CACHE/mixed_curve/$(basename "$BASE" .gguf)}
BPWS=${BPWS:-"5.9 6.2 6.5 7.0 7.5"}
LEVELS=${LEVELS:-q2_k,q3_k,q4_k,q5_k,q6_k,q8_0}
SENS_N=${SENS_N:-4}
SENS_L=${SENS_L:-128}
CHUNKS=${CHUNKS:-8}
T=${THREADS:-1}
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
mkdir -p "$OUT"
log() { echo "[mixed_curve $(date +%H:%M:%S)] $*" >&2; }
IM=$OUT/imatrix.gguf
[[ -f $IM ]] || { log "ctrust imatrix"; nice -n 10 "$BIN" imatrix -m "$BASE" -o "$IM" -t "$T" > "$OUT/imatrix.log" 2>&1; }
TABLE=$OUT/sens.json
common=(-m "$BASE" --method rtn --imatrix "$IM" --legacy-fit ggml --sens-table "$TABLE" --sens-nsamples "$SENS_N"
        --sens-seqlen "$SENS_L" -t "$T" --json)
make() {  # name, extra args...
  local name=$1; shift
  [[ -f $OUT/$name.gguf ]] && return 0
  log "compress $name"
  /usr/bin/time -v nice -n 10 "$BIN" compress "${common[@]}" "$@" -o "$OUT/$name.gguf" > "$OUT/$name.json" 2> "$OUT/$name.err"
}
for b in $BPWS; do make "mix-$b" --mix-levels "$LEVELS" --target-bpw "$b"; done
for lv in ${LEVELS//,/ }; do make "uniform-$lv" --mix-levels "$lv" --target-bpw 32; done
llama=()
if [[ -x $LLAMA/llama-quantize ]]; then
  for ty in Q3_K_M Q4_K_M; do
    l=$(echo "$ty" | tr 'A-Z' 'a-z')
    [[ -f $OUT/llama-$l-im.gguf ]] || { log "llama-quantize $ty --imatrix"; nice -n 10 "$LLAMA/llama-quantize" --imatrix "$IM" "$BASE" "$OUT/llama-$l-im.gguf" "$ty" "$T" > "$OUT/llama-$l-im.log" 2>&1; }
    [[ -f $OUT/rtn-$l-im.gguf ]] || { log "ctrust rtn --types-from llama-$l-im"; nice -n 10 "$BIN" compress -m "$BASE" --method rtn --types-from "$OUT/llama-$l-im.gguf" --imatrix "$IM" --legacy-fit ggml -o "$OUT/rtn-$l-im.gguf" -t "$T" --json > "$OUT/rtn-$l-im.json" 2> "$OUT/rtn-$l-im.err"; }
    llama+=("llama-$l-im" "rtn-$l-im")
  done
fi
[[ -f $OUT/base.ctrust ]] || { log "ctrust kld base"; nice -n 10 "$BIN" kld --base "$BASE" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --save-base "$OUT/base.ctrust" -t "$T" > "$OUT/base.ctrust.log" 2>&1; }
RES=$OUT/results.tsv
printf 'file\ttensor_bytes\tbpw\tpredicted_calib_kl\tmeasured_calib_kl\tmeasured_calib_kl_se\tppl\tppl_err\tkl\tkl_err\tsame_top\tmap\n' > "$RES"
files=()
for b in $BPWS; do files+=("mix-$b"); done
for lv in ${LEVELS//,/ }; do files+=("uniform-$lv"); done
files+=("${llama[@]}")
for f in "${files[@]}"; do
  [[ -f $OUT/$f.kld.json ]] || { log "ctrust kld $f"; nice -n 10 "$BIN" kld --load-base "$OUT/base.ctrust" -m "$OUT/$f.gguf" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$T" --json > "$OUT/$f.kld.json" 2> "$OUT/$f.kld.err"; }
  [[ -f $OUT/$f.info.json ]] || "$BIN" info "$OUT/$f.gguf" --json > "$OUT/$f.info.json"
  python3 - "$OUT" "$f" >> "$RES" <<'PY'
import json, os, sys
out, f = sys.argv[1:3]
k = json.load(open(f'{out}/{f}.kld.json'))
info = json.load(open(f'{out}/{f}.info.json'))  # tensor bytes and BPW as llama.cpp counts them
c = {}
if os.path.exists(f'{out}/{f}.json'):
    c = json.load(open(f'{out}/{f}.json')).get('mixed') or {}
m = ' '.join(e['level'] for e in c.get('map', []))
print('\t'.join(str(x) for x in [f, info['tensor_bytes'], round(info['bpw'], 4), c.get('predicted_kl', ''), c.get('measured_calib_kl', ''),
      c.get('measured_calib_kl_se', ''), k.get('ppl_b', ''), k.get('ppl_b_stderr', ''), k.get('kl_mean', ''),
      k.get('kl_stderr', ''), k.get('same_top', ''), m]))
PY
done
log "results: $RES"
column -t -s $'\t' "$RES"
