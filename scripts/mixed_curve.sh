#!/usr/bin/env bash
# KL/size curve of KL-guided mixed precision (issue 12, point 4; docs/compression_results.md, "KL-guided mixed
# precision"): one sensitivity table (`compress --target-bpw ... --sens-table`), then for every target in BPWS a
# mixed file, the uniform files of every level (the same table's single columns: --mix-levels LEVEL), and, when
# llama-quantize is built, llama.cpp's Q3_K_M / Q4_K_M mixes re-made by ctrust with the same quantizer
# (--types-from the llama-quantize file) so that only the allocation differs. All files use RTN in the K-quant /
# legacy grids with ggml's fits weighted by ctrust's imatrix (--imatrix, --legacy-fit ggml), i.e. llama-quantize
# --imatrix's quantization. Every file: tensor bytes, bits per weight, the KL predicted from the table and measured
# on the calibration sample, and `ctrust kld` on WikiText-2 test (never used for the sensitivity); with llama-quantize,
# also a mix at exactly the size of each of its Q3_K_M / Q4_K_M files (targets "=llama-q3_k_m-im" ...; its
# token_embd/output in the llama.cpp file's types), and paired
# comparisons on the same tokens (`ctrust kld --paired`, OUT/paired.tsv: B - A with token and chunk standard errors
# and a chunk-bootstrap 95% interval) of every mix against the llama.cpp mix and the uniform levels nearest in size.
# OUT/maps.txt: the chosen type of every unit of every mix. CPU/wall time of every step: OUT/*.time.
#
#   BASE     full-precision model (default: SmolLM2-135M-Instruct.F32.gguf in the cache)
#   MIX_UNIT block (default: one type per block) or tensor (one type per block Linear: --mix-unit tensor)
#   OUT      folder (default ~/.cache/ctrust/mixed_curve/<base name>, with -tensor for MIX_UNIT=tensor); files
#            already made are reused
#   BPWS     targets (default "5.9 6.2 6.5 7.0 7.5")
#   LEVELS   candidate levels (default q2_k,q3_k,q4_k,q5_k,q6_k,q8_0)
#   SENS_N, SENS_L  sensitivity sample (default 4 x 128 tokens of the calibration text, seed 0)
#   CHUNKS   chunks of 512 tokens for the evaluation (default 8); THREADS (default 1); NICE (default 5)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CTRUST_BIN:-$ROOT/build/ctrust}
CACHE=${CTRUST_CACHE:-$HOME/.cache/ctrust}
SHARED=${CTRUST_SHARED:-$ROOT/../shared}
LLAMA=${CTRUST_LLAMACPP:-$CACHE/llamacpp}/bin
BASE=${BASE:-$CACHE/models/SmolLM2-135M-Instruct.F32.gguf}
MIX_UNIT=${MIX_UNIT:-block}
case $MIX_UNIT in block) sfx="" ;; tensor) sfx="-tensor" ;; *) echo "ctrust: error: MIX_UNIT=$MIX_UNIT (block or tensor)" >&2; exit 2 ;; esac
OUT=${OUT:-$CACHE/mixed_curve/$(basename "$BASE" .gguf)$sfx}
BPWS=${BPWS:-"5.9 6.2 6.5 7.0 7.5"}
LEVELS=${LEVELS:-q2_k,q3_k,q4_k,q5_k,q6_k,q8_0}
SENS_N=${SENS_N:-4}
SENS_L=${SENS_L:-128}
CHUNKS=${CHUNKS:-8}
T=${THREADS:-1}
NICE=${NICE:-5}
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
mkdir -p "$OUT"
log() { echo "[mixed_curve $(date +%H:%M:%S)] $* ($(uptime | sed 's/.*load/load/'))" >&2; }
# run NAME STDOUT STDERR cmd...: nice, CPU/wall/RSS in OUT/NAME.time (GNU time -v)
run() {
  local name=$1 o=$2 e=$3; shift 3
  log "$name"
  /usr/bin/time -o "$OUT/$name.time" -v nice -n "$NICE" "$@" > "$o" 2> "$e"
}
IM=$OUT/imatrix.gguf
[[ -f $IM ]] || run imatrix "$OUT/imatrix.log" "$OUT/imatrix.err" "$BIN" imatrix -m "$BASE" -o "$IM" -t "$T"
TABLE=$OUT/sens.json
common=(-m "$BASE" --method rtn --imatrix "$IM" --legacy-fit ggml --mix-unit "$MIX_UNIT" --sens-table "$TABLE" --sens-nsamples "$SENS_N"
        --sens-seqlen "$SENS_L" -t "$T" --json)
make() {  # name, extra args...
  local name=$1; shift
  [[ -f $OUT/$name.gguf ]] && return 0
  run "$name" "$OUT/$name.json" "$OUT/$name.err" "$BIN" compress "${common[@]}" "$@" -o "$OUT/$name.gguf"
}
[[ -f $OUT/base.ctrust ]] || run base-ctrust "$OUT/base.ctrust.log" "$OUT/base.ctrust.err" "$BIN" kld --base "$BASE" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --save-base "$OUT/base.ctrust" -t "$T"
# Every file is measured as soon as it is made (an interrupted run leaves complete rows).
measure() {
  local f=$1
  [[ -f $OUT/$f.tokens.tsv ]] || run "kld-$f" "$OUT/$f.kld.json" "$OUT/$f.kld.err" "$BIN" kld --load-base "$OUT/base.ctrust" -m "$OUT/$f.gguf" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$T" --json --save-tokens "$OUT/$f.tokens.tsv"
  [[ -f $OUT/$f.info.json ]] || "$BIN" info "$OUT/$f.gguf" --json > "$OUT/$f.info.json"
}
# Order: the first mix measures the table; llama.cpp's mixes and the mixes at their sizes; the uniform levels;
# the other targets. RTN_REMAKE=1 also re-makes llama.cpp's mixes with ctrust's quantizer (--types-from).
mixes=() llama=() uniform=()
first=(${BPWS})
make "mix-${first[0]}" --mix-levels "$LEVELS" --target-bpw "${first[0]}"; measure "mix-${first[0]}"; mixes+=("mix-${first[0]}")
if [[ -x $LLAMA/llama-quantize ]]; then
  for ty in Q4_K_M Q3_K_M; do
    l=$(echo "$ty" | tr 'A-Z' 'a-z')
    [[ -f $OUT/llama-$l-im.gguf ]] || run "llama-$l-im" "$OUT/llama-$l-im.log" "$OUT/llama-$l-im.err" "$LLAMA/llama-quantize" --imatrix "$IM" "$BASE" "$OUT/llama-$l-im.gguf" "$ty" "$T"
    measure "llama-$l-im"; llama+=("llama-$l-im")
    # A mix of at most the llama.cpp file's tensor bytes: its bits per weight, rounded down at 1e-6.
    bpw=$(python3 -c "import json,math,sys; print(f'{math.floor(json.load(open(sys.argv[1]))[\"bpw\"] * 1e6) / 1e6:.6f}')" "$OUT/llama-$l-im.info.json")
    # The tensors outside the units (token_embd, output) take the llama.cpp file's types (--types-from; the mix's
    # rules come first, so they decide every block Linear): only the allocation over the block Linears differs.
    make "mix-at-$l" --mix-levels "$LEVELS" --target-bpw "$bpw" --types-from "$OUT/llama-$l-im.gguf"; measure "mix-at-$l"; mixes+=("mix-at-$l")
    if [[ ${RTN_REMAKE:-0} == 1 ]]; then
      [[ -f $OUT/rtn-$l-im.gguf ]] || run "rtn-$l-im" "$OUT/rtn-$l-im.json" "$OUT/rtn-$l-im.err" "$BIN" compress -m "$BASE" --method rtn --types-from "$OUT/llama-$l-im.gguf" --imatrix "$IM" --legacy-fit ggml -o "$OUT/rtn-$l-im.gguf" -t "$T" --json
      measure "rtn-$l-im"; llama+=("rtn-$l-im")
    fi
  done
fi
for lv in ${LEVELS//,/ }; do make "uniform-$lv" --mix-levels "$lv" --target-bpw 32; measure "uniform-$lv"; uniform+=("uniform-$lv"); done
for b in "${first[@]:1}"; do make "mix-$b" --mix-levels "$LEVELS" --target-bpw "$b"; measure "mix-$b"; mixes+=("mix-$b"); done
RES=$OUT/results.tsv
printf 'file\ttensor_bytes\tbpw\tpredicted_calib_kl\tmeasured_calib_kl\tmeasured_calib_kl_se\tppl\tppl_err\tkl\tkl_err\tsame_top\tmap\n' > "$RES"
files=("${mixes[@]}" "${uniform[@]}" "${llama[@]}")
for f in "${files[@]}"; do
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

# The chosen map of every mix: one line per mix, the level of each unit.
python3 - "$OUT" "${mixes[@]}" > "$OUT/maps.txt" <<'PY'
import json, sys
out, mixes = sys.argv[1], sys.argv[2:]
for f in mixes:
    m = json.load(open(f'{out}/{f}.json'))['mixed']
    print(f"{f}: " + ' '.join(f"{e['unit'].removeprefix('blk.')}:{e['level']}" for e in m['map']))
PY
cat "$OUT/maps.txt"

# Paired: every mix against the llama.cpp mixes and against the uniform levels just below and above its size.
# (RTN_REMAKE files are compared too.)
PAIRED=$OUT/paired.tsv
printf 'A\tB\tkl_a\tkl_b\tdelta\tse_tokens\tse_chunks\tci_low\tci_high\tkl_ratio\tratio_low\tratio_high\tppl_ratio\tsame_top_delta\n' > "$PAIRED"
pairs=$(python3 - "$RES" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
size = {r['file']: int(r['tensor_bytes']) for r in rows}
uni = sorted((s, f) for f, s in size.items() if f.startswith('uniform-'))
for f in size:
    if not f.startswith('mix-'): continue
    refs = [g for g in size if g.startswith('llama-') or g.startswith('rtn-')]
    below = [g for s, g in uni if s <= size[f]]
    above = [g for s, g in uni if s > size[f]]
    refs += below[-1:] + above[:1]
    for g in refs: print(g, f)
PY
)
while read -r a b; do
  [[ -n $a ]] || continue
  "$BIN" kld --paired "$OUT/$a.tokens.tsv" "$OUT/$b.tokens.tsv" --json > "$OUT/paired-$a-$b.json"
  python3 - "$a" "$b" "$OUT/paired-$a-$b.json" >> "$PAIRED" <<'PY'
import json, math, sys
a, b, path = sys.argv[1:4]
p = json.load(open(path))
k = p['kl']
print('\t'.join(str(x) for x in [a, b, round(k['a'], 6), round(k['b'], 6), round(k['delta'], 6), round(k['se_tokens'], 6),
      round(k['se_chunks'], 6), round(k['ci_low'], 6), round(k['ci_high'], 6), round(p['kl_ratio'], 4),
      round(p['kl_ratio_ci_low'], 4), round(p['kl_ratio_ci_high'], 4), round(p['ppl_ratio'], 5), round(p['same_top']['delta'], 5)]))
PY
done <<< "$pairs"
log "paired: $PAIRED"
column -t -s $'\t' "$PAIRED"
