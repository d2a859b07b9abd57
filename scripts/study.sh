#!/usr/bin/env bash
# The seed papers' findings on the models here (issue 17, docs/study.md): every number of the study from scratch,
# resumable at every step (compressed files are kept, evaluations and trust runs resume from their stores, each
# comparison is written once). Run it again after an interruption: finished work is skipped.
#
#   bash scripts/study.sh [flips|trust|all]     (default all)
#
# Part 1, flips (Dutta et al.): per model, the base and its variants GPTQ 4-bit, GPTQ 3-bit, AWQ 4-bit (group 128;
#   64 on SmolLM2, whose hidden size 576 is no multiple of 128),
#   SmoothQuant W8A8 and Wanda 2:4, evaluated on ARC-Easy, ARC-Challenge, HellaSwag, PIQA, WinoGrande, BoolQ and
#   MMLU (a seeded sample stratified by answer: STUDY_LIMIT items per task, STUDY_MMLU_LIMIT per MMLU subject;
#   the full sets when both are 0), compared item by item with the base (Δacc, flips, KL over choices, with 95%
#   intervals), and token-level KL on WikiText-2 test (STUDY_KLD_CHUNKS chunks of 512 tokens).
# Part 2, trust (Hong et al.): the eight perspectives at STUDY_TRUST_PRESET for STUDY_TRUST_MODELS, the same
#   variants plus GPTQ 8-bit, with paired differences (ctrust compare on trust runs).
# Outputs: $STUDY_DIR/out/*.json (one file per comparison; report-flips-M.json and flips-M.html: `ctrust report`
#   over a model's runs), the tables of docs/study.md and its plots docs/study/*.svg (scripts/study_tables.py),
#   the stores $STUDY_DIR/eval.db and trust.db, the variants in $STUDY_DIR/variants/. Wall time of each step on stderr and in $STUDY_DIR/out/times.tsv.
# Environment (defaults): STUDY_DIR (~/.cache/ctrust/study), STUDY_MODELS ("smollm2 qwen0.5b qwen1.5b"; set empty: none),
#   STUDY_TRUST_MODELS ("smollm2 qwen1.5b"; likewise), STUDY_LIMIT (500), STUDY_MMLU_LIMIT (10), STUDY_SEED (0),
#   STUDY_KLD_CHUNKS (40), STUDY_BLAS_CORE (Haswell: OPENBLAS_CORETYPE, below),
#   STUDY_TRUST_PRESET (standard), STUDY_TRUST_LIMIT (0 = the preset's sizes; N = N items
#   per setting, nested in the preset's sample), STUDY_TRUST_COMPUTE (f32), THREADS (2), CTRUST_BIN (default build/ctrust after
#   scripts/setup.sh; give a copied binary for a study that spans rebuilds).
#   STUDY_STATE (unset): a folder the study's small state is copied to after every step and when it stops (also on
#   Ctrl-C), and restored from when STUDY_DIR has none: eval.db and trust.db as gzipped SQL dumps, out/ (every JSON
#   and times.tsv; not the HTML pages, made again at the end of each part). For a study spread over machines or sessions whose STUDY_DIR does not survive (e.g. the
#   folder committed between sessions). Variant files are not kept: a variant whose outputs are all in out/ is skipped
#   without compressing it again; one stopped half-way is compressed again and its evaluation resumes from the store
#   when the new file has the same fingerprint (compression is deterministic at a fixed seed and thread count),
#   otherwise starts over as a new run (the newest run of a name is the one compared).
# Models: SmolLM2-135M-Instruct (its F32 copy is the base: scripts/setup.sh); Qwen2.5-Coder-0.5B/1.5B-Instruct
#   exist here only as Q4_K_M files (scripts/fetch_models.sh): their base is that file, and compression starts
#   from its dequantized F16 copy (so a variant's difference is the compression's, on top of Q4_K_M).
set -euo pipefail
shopt -s inherit_errexit  # a failed step inside $(...) stops the study
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
dir=${STUDY_DIR:-$cache/study}
models=${STUDY_MODELS-smollm2 qwen0.5b qwen1.5b}
trust_models=${STUDY_TRUST_MODELS-smollm2 qwen1.5b}
limit=${STUDY_LIMIT:-500}
mmlu_limit=${STUDY_MMLU_LIMIT:-10}
seed=${STUDY_SEED:-0}
kld_chunks=${STUDY_KLD_CHUNKS:-40}
preset=${STUDY_TRUST_PRESET:-standard}
trust_limit=${STUDY_TRUST_LIMIT:-0}  # > 0: that many items per setting, a seeded stratified sample nested in the preset's
trust_sizes=(--preset "$preset")
[ "$trust_limit" -gt 0 ] && trust_sizes+=(--limit "$trust_limit")
# Part 2's compute mode: f32 (weights dequantized at load, exact), as part 1 and as SmolLM2's part 2 ran (then the
# GPTQ/AWQ files' packed types had only a plain reference loop in `native` mode, ~10x slower; since 47559c5 their
# native kernel runs at 0.8-1.1x the f32 mode: docs/compression.md, "Reading them").
trust_compute=${STUDY_TRUST_COMPUTE:-f32}
threads=${THREADS:-2}
part=${1:-all}
ctrust=${CTRUST_BIN:-$root/build/ctrust}  # CTRUST_BIN: a fixed copy, so a rebuild mid-study changes nothing
# OpenBLAS kernel set (STUDY_BLAS_CORE, default Haswell), pinned: a base and its variants, evaluated in different
# sessions or on different machines, must run the same f32 arithmetic, and OpenBLAS otherwise picks its kernels
# from the CPU (the set changes f32 results in their last bits: docs/correctness.md, "Golden files on other
# machines"). Haswell (AVX2) runs on every CPU ctrust runs on and is the set every Qwen2.5-1.5B step ran with; on
# an AVX-512 CPU SkylakeX is ~1.8x faster (docs/benchmarks.md, "The OpenBLAS kernel set"), for a study from scratch.
export OPENBLAS_CORETYPE=${STUDY_BLAS_CORE:-Haswell}
echo "[study] OpenBLAS kernel set $OPENBLAS_CORETYPE ($("$ctrust" --version 2>/dev/null || echo "ctrust --version failed"))" >&2
wiki="$root/../shared/data/wikitext-2-raw/wiki.test.raw"
[ -f "$wiki" ] || wiki=$(cd "$root/.." && pwd)/shared/data/wikitext-2-raw/wiki.test.raw
mkdir -p "$dir/variants" "$dir/out"
times="$dir/out/times.tsv"
state=${STUDY_STATE:-}

# The small state (stores as SQL dumps, out/) saved to / restored from STUDY_STATE (see the header).
db_dump() {  # db_dump DB OUT.sql.gz: a deterministic gzipped SQL dump
  python3 - "$1" "$2" <<'PY'
import gzip, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
with open(sys.argv[2] + '.part', 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', mtime=0) as f:
    for line in con.iterdump():
        f.write((line + '\n').encode())
con.close()
import os; os.replace(sys.argv[2] + '.part', sys.argv[2])
PY
}
db_restore() {  # db_restore IN.sql.gz DB
  python3 - "$1" "$2" <<'PY'
import gzip, os, sqlite3, sys
tmp = sys.argv[2] + '.restore'
if os.path.exists(tmp): os.remove(tmp)
con = sqlite3.connect(tmp)
con.executescript(gzip.open(sys.argv[1], 'rt').read())
con.close()
os.replace(tmp, sys.argv[2])
PY
}
save_state() {
  [ -n "$state" ] || return 0
  mkdir -p "$state/out"
  local db
  for db in eval trust; do [ -s "$dir/$db.db" ] && db_dump "$dir/$db.db" "$state/$db.sql.gz"; done
  # the JSON and times; not the HTML pages, which each part makes again from the stores at its end
  find "$dir/out" -maxdepth 1 -type f ! -name '*.part' ! -name '*.html' -exec cp -p {} "$state/out/" \;
  echo "[study] $(date +%T) state saved to $state" >&2
}
if [ -n "$state" ]; then
  for db in eval trust; do
    if [ ! -s "$dir/$db.db" ] && [ -s "$state/$db.sql.gz" ]; then
      echo "[study] restoring $dir/$db.db from $state/$db.sql.gz" >&2
      db_restore "$state/$db.sql.gz" "$dir/$db.db"
    fi
  done
  [ -d "$state/out" ] && cp -n -p "$state/out/"* "$dir/out/" 2>/dev/null || true
  trap 'save_state' EXIT
fi
[ -s "$times" ] || printf 'step\tseconds\tload_at_start\tfinished\n' > "$times"

case "$part" in flips|trust|all) ;; *) echo "usage: bash scripts/study.sh [flips|trust|all]" >&2; exit 2 ;; esac
[ -n "${CTRUST_BIN:-}" ] || CTRUST_TARGETS=ctrust bash "$root/scripts/setup.sh"

timed() {  # timed NAME command...: runs it, logs wall time and load
  local name=$1; shift
  local load t0=$SECONDS
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "[study] $(date +%T) $name (load $load)" >&2
  # a step that fails or is stopped (Ctrl-C) is recorded as "NAME (stopped)": a step resumed in several sessions
  # has one row per segment
  "$@" || { local rc=$?; printf '%s (stopped)\t%d\t%s\t%s\n' "$name" $((SECONDS - t0)) "$load" "$(date -u +%FT%TZ)" >> "$times"; return $rc; }
  printf '%s\t%d\t%s\t%s\n' "$name" $((SECONDS - t0)) "$load" "$(date -u +%FT%TZ)" >> "$times"
  save_state
}

# to OUT command...: runs the command with stdout to OUT, written through OUT.part (an interrupted step leaves no OUT).
to() { "${@:2}" > "$1.part" && mv "$1.part" "$1"; }
# once OUT command...: as `to`, unless OUT exists.
once() { [ -s "$1" ] || to "$@"; }

base_file() {  # the file evaluated as the model's baseline
  case "$1" in
    smollm2) echo "$cache/models/SmolLM2-135M-Instruct.F32.gguf" ;;
    qwen0.5b) echo "$cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" ;;
    qwen1.5b) echo "$cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" ;;
    *) echo "ctrust: error: unknown study model '$1' (smollm2, qwen0.5b, qwen1.5b)" >&2; exit 2 ;;
  esac
}

source_file() {  # what compression reads: an F16 copy for the Q4_K_M files
  local m=$1 b
  b=$(base_file "$m")
  if [ "$m" = smollm2 ]; then echo "$b"; return; fi
  local f16="$dir/variants/$m-base-f16.gguf"
  if [ ! -s "$f16" ]; then
    timed "$m convert f16" "$ctrust" convert -m "$b" -o "$f16.part" --type f16 >&2
    mv "$f16.part" "$f16"
  fi
  echo "$f16"
}

# Variant name -> compress arguments.
# GPTQ and AWQ use groups of 128 input columns, as the papers' checkpoints, where 128 divides every Linear's input
# (Qwen2.5: 896/4864, 1536/8960); SmolLM2's hidden size 576 is not a multiple of 128: groups of 64 there.
group_size() { if [ "$1" = smollm2 ]; then echo 64; else echo 128; fi; }
declare -A recipe=(
  [gptq-w4]="--method gptq --bits 4 --group-size G"
  [gptq-w3]="--method gptq --bits 3 --group-size G"
  [gptq-w8]="--method gptq --bits 8 --group-size G"
  [awq-w4]="--method awq --bits 4 --group-size G"
  [smoothquant-w8a8]="--method smoothquant"
  [wanda-2of4]="--method wanda --nm 2:4"
)
flip_variants="gptq-w4 gptq-w3 awq-w4 smoothquant-w8a8 wanda-2of4"
trust_variants="gptq-w8 $flip_variants"

variant_file() {  # variant_file MODEL VARIANT: compresses once
  local m=$1 v=$2 f="$dir/variants/$1-$2.gguf"
  if [ ! -s "$f" ]; then
    local src
    src=$(source_file "$m")
    local args=${recipe[$v]//G/$(group_size "$m")}
    # shellcheck disable=SC2086
    timed "$m compress $v" "$ctrust" compress -m "$src" $args --seed "$seed" -t "$threads" -o "$f.part" >&2
    mv "$f.part" "$f"
  fi
  echo "$f"
}

model_file() { if [ "$2" = base ]; then base_file "$1"; else variant_file "$1" "$2"; fi; }

ensure_model() {
  local m=$1
  [ "$m" = smollm2 ] && return 0
  [ -s "$(base_file "$m")" ] || bash "$root/scripts/fetch_models.sh" "$m"
}

tasks=arc_easy,arc_challenge,hellaswag,piqa,winogrande,boolq
eval_model() {  # eval_model MODEL VARIANT [mmlu]: the six tasks and MMLU (only MMLU with "mmlu")
  local m=$1 v=$2 f lim=() mlim=()
  f=$(model_file "$m" "$v")
  [ "$limit" -gt 0 ] && lim=(--limit "$limit" --seed "$seed")
  [ "$mmlu_limit" -gt 0 ] && mlim=(--limit "$mmlu_limit" --seed "$seed")
  [ "${3:-}" = mmlu ] || timed "$m eval $v" to "$dir/out/eval-$m-$v.json" "$ctrust" eval -m "$f" --tasks "$tasks" \
    "${lim[@]}" --name "$m-$v" --db "$dir/eval.db" -t "$threads" --json
  timed "$m eval-mmlu $v" to "$dir/out/eval-mmlu-$m-$v.json" "$ctrust" eval -m "$f" --tasks mmlu "${mlim[@]}" \
    --name "$m-$v" --db "$dir/eval.db" -t "$threads" --json
}
# restored MODEL VARIANT OUTPUTS...: the variant's file is absent and its outputs are all there (STUDY_STATE restored
# them): its work is done and it is not compressed again. With its file present, the steps run and resume from the
# stores (a larger STUDY_LIMIT or STUDY_TRUST_LIMIT extends them).
restored() {
  local m=$1 v=$2 f; shift 2
  [ "$v" != base ] && [ ! -s "$dir/variants/$m-$v.gguf" ] || return 1
  for f in "$@"; do [ -s "$dir/out/$f" ] || return 1; done
}

flips() {
  for m in $models; do
    ensure_model "$m"
    eval_model "$m" base
    local base_kld="$dir/variants/$m-base.kld"
    for v in $flip_variants; do
      restored "$m" "$v" "eval-$m-$v.json" "eval-mmlu-$m-$v.json" "compare-$m-$v.json" "kld-$m-$v.json" && continue
      if [ ! -s "$base_kld" ]; then  # the base's logits for the token KL (made when a variant needs them)
        timed "$m kld-base" "$ctrust" kld --base "$(base_file "$m")" --save-base "$base_kld.part" -f "$wiki" \
          --ctx 512 --chunks "$kld_chunks" -t "$threads" > /dev/null
        mv "$base_kld.part" "$base_kld"
      fi
      eval_model "$m" "$v"
      once "$dir/out/compare-$m-$v.json" "$ctrust" compare "$m-base" "$m-$v" --db "$dir/eval.db" --json
      timed "$m kld $v" once "$dir/out/kld-$m-$v.json" "$ctrust" kld --load-base "$base_kld" -m "$(model_file "$m" "$v")" \
        -f "$wiki" --ctx 512 --chunks "$kld_chunks" -t "$threads" --json
    done
    # the model's page and its data (every table of docs/study.md is made from the JSON by study_tables.py)
    local runs=("$m-base")
    for v in $flip_variants; do runs+=("$m-$v"); done
    "$ctrust" report "${runs[@]}" --db "$dir/eval.db" -o "$dir/out/flips-$m.html" --json > "$dir/out/report-flips-$m.json"
  done
}

trust() {
  "$ctrust" trust-plan "${trust_sizes[@]}" --json > "$dir/out/trust-plan-$preset.json"
  for m in $trust_models; do
    ensure_model "$m"
    for v in base $trust_variants; do
      restored "$m" "$v" "trust-$m-$v.json" "trust-compare-$m-$v.json" && continue
      timed "$m trust $v" to "$dir/out/trust-$m-$v.json" "$ctrust" trust -m "$(model_file "$m" "$v")" "${trust_sizes[@]}" \
        --compute "$trust_compute" --name "$m-$v" --db "$dir/trust.db" -t "$threads" --json
      [ "$v" = base ] && continue
      once "$dir/out/trust-compare-$m-$v.json" "$ctrust" compare "$m-base" "$m-$v" --db "$dir/trust.db" --json
    done
    # MMLU beside the perspectives (the paper's layout): the part-1 sample, for every trust variant
    local runs=("$m-base")
    for v in base $trust_variants; do restored "$m" "$v" "eval-mmlu-$m-$v.json" || eval_model "$m" "$v" mmlu; done
    for v in $trust_variants; do runs+=("$m-$v"); done
    "$ctrust" report "${runs[@]}" --db "$dir/eval.db" --json > "$dir/out/report-mmlu-$m.json"
    "$ctrust" report "${runs[@]}" --db "$dir/trust.db" -o "$dir/out/trust-$m.html" --json > "$dir/out/report-trust-$m.json"
  done
}

t_all=$SECONDS
[ "$part" = trust ] || flips
[ "$part" = flips ] || trust
# the tables and plots of docs/study.md (and docs/study/*.svg) from the outputs: each model's from this study's
# outputs when it has them, else from the committed data (docs/study/data: the models measured in earlier sessions)
python3 "$root/scripts/study_tables.py" "$root/docs/study/data" "$dir/out" --doc "$root/docs/study.md" --plots "$root/docs/study"
echo "[study] done in $((SECONDS - t_all)) s; outputs in $dir/out (times: $times)" >&2
