#!/usr/bin/env bash
# ctrust beside llama.cpp on the same GGUF files, interleaved (ctrust, llama.cpp, ctrust, llama.cpp, ...) so both
# see the same machine load; `uptime`'s load is recorded before every run. Prints one markdown table.
#   decode tok/s at batch 1 and prefill tok/s (prompt 128 and 512), threads 1 and 2, peak RSS:
#     ctrust  build/bench_engine --compute native (decode: --prompt 1 --gen TG, i.e. from an empty cache like
#             llama-bench's tg test; prefill: --prompt P --gen 1); best of 2 repetitions inside each run
#     llama.cpp  llama-bench -p 128,512 -n TG -r 2 (best of its 2 samples, after its own warm-up run)
#   batched generation throughput at batch 8/32/64 (PP-token prompts, TG generated tokens per sequence):
#     ctrust  build/bench_batched (forward_batch in llama-batched-bench's loop, and generate_batch end to end)
#     llama.cpp  llama-batched-bench -npp PP -ntg TG -npl 8,32,64 (one sample per run)
#   peak RSS: /usr/bin/time -v of every process (maximum over the runs of an engine in a row).
# Needs: ctrust built with -DCTRUST_BENCH=ON (build/bench_engine, build/bench_batched) and llama.cpp's tools
# (bash scripts/build_llamacpp.sh). Models: SmolLM2-135M-Instruct Q4_1 and, if present, Qwen2.5-Coder-1.5B-Instruct
# Q4_K_M (bash scripts/fetch_models.sh qwen1.5b).
# Usage: bash bench/vs_llamacpp.sh [REPS]          (REPS >= 2 pairs of runs, default 2)
# Environment: CTRUST_BUILD (default build), LLAMACPP_BIN (default ~/.cache/ctrust/llamacpp/bin),
#   (MODELS="" or BATCH_MODELS="" skips that part) THREADS ("1 2"), TG (decode steps, 64), BATCHES ("8,32,64"), BATCH_PP (128), BATCH_TG (32),
#   BATCH_THREADS ("2"), BATCH_MODELS ("smollm2"; add "qwen1.5b" for the 1.5B model), MODELS ("smollm2 qwen1.5b"),
#   PROMPTS (prefill prompt lengths, "128 512"), OUT (folder for the raw results, default a new
#   /tmp/vs_llamacpp.XXXXXX; runs add to it), SUMMARY_ONLY=1 (only print the table of the results in OUT).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
build=${CTRUST_BUILD:-$root/build}
lbin=${LLAMACPP_BIN:-$cache/llamacpp/bin}
reps=${1:-2}
threads=${THREADS:-1 2}
tg=${TG:-64}
batches=${BATCHES:-8,32,64}
bpp=${BATCH_PP:-128}
btg=${BATCH_TG:-32}
bthreads=${BATCH_THREADS:-2}
bmodels=${BATCH_MODELS-smollm2}
models=${MODELS-smollm2 qwen1.5b}
prompts=${PROMPTS:-128 512}
out=${OUT:-$(mktemp -d /tmp/vs_llamacpp.XXXXXX)}
mkdir -p "$out"

err() { echo "ctrust: error: $*" >&2; exit 1; }
[[ "$reps" =~ ^[0-9]+$ && "$reps" -ge 1 ]] || err "REPS must be a positive integer (got '$reps')"
for p in "$build/bench_engine" "$build/bench_batched"; do
  [[ -x "$p" ]] || err "$p not built (cmake -S . -B build -DCTRUST_BENCH=ON && cmake --build build --target bench_engine bench_batched)"
done
for p in llama-bench llama-batched-bench; do
  [[ -x "$lbin/$p" ]] || err "$lbin/$p not built (bash scripts/build_llamacpp.sh)"
done
[[ -x /usr/bin/time ]] || err "/usr/bin/time not found (Debian package 'time')"

model_path() {
  case "$1" in
    smollm2) echo "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
    qwen1.5b) echo "$cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" ;;
    *) err "unknown model '$1' (smollm2, qwen1.5b)" ;;
  esac
}
load() { cut -d' ' -f1 /proc/loadavg; }
say() { echo "[vs_llamacpp] $*" >&2; }

# run NAME CMD...: runs CMD under /usr/bin/time -v; stdout -> $out/NAME.out, the load before -> $out/NAME.load,
# peak RSS (KiB) -> $out/NAME.rss
run() {
  local name=$1; shift
  load >"$out/$name.load"
  say "$name (load $(cat "$out/$name.load"))"
  /usr/bin/time -v -o "$out/$name.time" "$@" >"$out/$name.out" 2>"$out/$name.err" \
    || { tail -5 "$out/$name.err" >&2; err "$name failed (see $out/$name.err)"; }
  sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/$name.time" >"$out/$name.rss"
}

if [[ "${SUMMARY_ONLY:-0}" != 1 ]]; then
say "results in $out; llama.cpp: $(head -1 "$cache/llamacpp/VERSION" 2>/dev/null || echo unknown)"
{
  echo "date_start=$(date -u +%FT%TZ)"
  echo "ctrust_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"  # of the worktree; CTRUST_BUILD may hold another build
  echo "ctrust_build=$build"
  echo "llamacpp=$(head -1 "$cache/llamacpp/VERSION" 2>/dev/null || echo unknown)"
  echo "cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
} >>"$out/meta.txt"

for mname in $models; do
  m=$(model_path "$mname")
  [[ -s "$m" ]] || { say "skipping $mname: $m not present"; continue; }
  for t in $threads; do
    for ((r = 1; r <= reps; r++)); do
      tag="engine.$mname.t$t.r$r"
      export OMP_NUM_THREADS=$t
      run "$tag.ctrust.decode" "$build/bench_engine" "$m" --prompt 1 --gen "$tg" --reps 2 --threads "$t" --compute native --json
      for p in $prompts; do
        run "$tag.ctrust.pp$p" "$build/bench_engine" "$m" --prompt "$p" --gen 1 --reps 2 --threads "$t" --compute native --json
      done
      unset OMP_NUM_THREADS
      run "$tag.llama" "$lbin/llama-bench" -m "$m" -p "$(tr ' ' ',' <<<"$prompts")" -n "$tg" -t "$t" -r 2 -o json
    done
  done
done

for mname in $bmodels; do
  m=$(model_path "$mname")
  [[ -s "$m" ]] || { say "skipping batched $mname: $m not present"; continue; }
  maxb=$(tr ',' '\n' <<<"$batches" | sort -n | tail -1)
  for t in $bthreads; do
    for ((r = 1; r <= reps; r++)); do
      tag="batched.$mname.t$t.r$r"
      OMP_NUM_THREADS=$t run "$tag.ctrust" "$build/bench_batched" "$m" --pp "$bpp" --tg "$btg" --batch "$batches" \
        --threads "$t" --compute native --json
      run "$tag.llama" "$lbin/llama-batched-bench" -m "$m" -c $((maxb * (bpp + btg))) -b 2048 -ub 512 \
        -npp "$bpp" -ntg "$btg" -npl "$batches" -t "$t" --output-format jsonl
    done
  done
done
echo "date_end=$(date -u +%FT%TZ)" >>"$out/meta.txt"
fi

python3 - "$out" <<'PY'
import glob, json, os, re, statistics, sys
out = sys.argv[1]
def rd(p, default=None):
    try:
        return open(p).read().strip()
    except OSError:
        return default
def js(name):
    return json.loads(rd(f"{out}/{name}.out"))
def ld(name): return float(rd(f"{out}/{name}.load", "nan"))
def rss(name): return int(rd(f"{out}/{name}.rss", "0") or 0) / 1024.0
rows = []  # (model, threads, metric, ctrust values, llama values, loads)
def add(model, t, metric, cv, lv, loads, unit=""):
    rows.append((model, t, metric, cv, lv, loads, unit))

# file names: engine.MODEL.tT.rR.ENGINE...; MODEL may contain dots (qwen1.5b)
engine = sorted({re.match(r"engine\.(.+)\.(t\d+)\.(r\d+)\.ctrust\.decode\.out$", os.path.basename(p)).groups()
                 for p in glob.glob(f"{out}/engine.*.ctrust.decode.out")})
groups = {}
for mname, t, r in engine:
    groups.setdefault((mname, t), []).append(r)
for (mname, t), rs in groups.items():
    rs.sort(key=lambda x: int(x[1:]))
    vals = {k: ([], []) for k in ("decode", "pp128", "pp512", "rss")}
    loads = []
    for r in rs:
        tag = f"engine.{mname}.{t}.{r}"
        kinds = ["decode"] + [k for k in ("pp128", "pp512") if os.path.exists(f"{out}/{tag}.ctrust.{k}.out")]
        try:
            cj = {k: js(f"{tag}.ctrust.{k}") for k in kinds}
            lb = js(f"{tag}.llama")
        except Exception:
            continue
        best = {}
        for e in lb:
            key = "decode" if e["n_gen"] > 0 else f"pp{e['n_prompt']}"
            best[key] = max(e["samples_ts"])
        for k in kinds:
            vals[k][0].append(cj[k]["rows"][0]["decode_tok_s" if k == "decode" else "prefill_tok_s"])
            vals[k][1].append(best.get(k, float("nan")))
        vals["rss"][0].append(max(rss(f"{tag}.ctrust.{k}") for k in kinds))
        vals["rss"][1].append(rss(f"{tag}.llama"))
        loads += [ld(f"{tag}.ctrust.{k}") for k in kinds] + [ld(f"{tag}.llama")]
    tt = t[1:]
    add(mname, tt, "decode tok/s (batch 1)", *vals["decode"], loads)
    add(mname, tt, "prefill tok/s (prompt 128)", *vals["pp128"], loads)
    add(mname, tt, "prefill tok/s (prompt 512)", *vals["pp512"], loads)
    add(mname, tt, "peak RSS MB", *vals["rss"], loads)

bgroups = {}
for p in glob.glob(f"{out}/batched.*.ctrust.out"):
    mname, t, r = re.match(r"batched\.(.+)\.(t\d+)\.(r\d+)\.ctrust\.out$", os.path.basename(p)).groups()
    bgroups.setdefault((mname, t), []).append(r)
for (mname, t), rs in bgroups.items():
    rs.sort(key=lambda x: int(x[1:]))
    per = {}  # (batch, metric) -> (ctrust[], llama[])
    loads = []
    for r in rs:
        tag = f"batched.{mname}.{t}.{r}"
        try:
            c = js(f"{tag}.ctrust")
            lrows = [json.loads(l) for l in rd(f"{out}/{tag}.llama.out", "").splitlines() if l.startswith("{")]
        except Exception:
            continue
        lby = {e["pl"]: e for e in lrows}
        for e in c["rows"]:
            b = e["batch"]
            le = lby.get(b)
            if le is None:
                continue
            gen_l = b * le["tg"] / le["t"]  # generated tokens per second, prefill included
            for metric, cv, lv in (("S_TG", e["s_tg"], le["speed_tg"]), ("generated", e["s_generate_batch"], gen_l),
                                   ("S_PP", e["s_pp"], le["speed_pp"])):
                d = per.setdefault((b, metric), ([], []))
                d[0].append(cv)
                d[1].append(lv)
        d = per.setdefault((0, "rss"), ([], []))
        d[0].append(rss(f"{tag}.ctrust"))
        d[1].append(rss(f"{tag}.llama"))
        loads += [ld(f"{tag}.ctrust"), ld(f"{tag}.llama")]
    names = {"S_TG": "batched decode tok/s (S_TG)", "generated": "generated tok/s incl. prefill (generate_batch)",
             "S_PP": "batched prefill tok/s (S_PP)"}
    for (b, metric), (cv, lv) in sorted(per.items()):
        if metric == "rss":
            add(mname, t[1:], "peak RSS MB, batched run", cv, lv, loads)
        else:
            add(mname, t[1:], f"batch {b}: {names[metric]}", cv, lv, loads)

meta = {}
for l in rd(f"{out}/meta.txt", "").splitlines():
    if "=" in l:
        k, v = l.split("=", 1)
        meta.setdefault(k, []).append(v)
one = lambda k: ", ".join(sorted(set(meta.get(k, ["?"]))))
print(f"ctrust {one('ctrust_commit')} vs {one('llamacpp')}; {one('cpu')}; "
      f"{min(meta.get('date_start', ['?']))} .. {max(meta.get('date_end', ['?']))}; raw results: {out}\n")
print("| model | threads | metric | ctrust (per run) | llama.cpp (per run) | ratio ctrust/llama.cpp: mean (range over run pairs) | load (1-min) |")
print("|---|---|---|---|---|---|---|")
fmt = lambda v: f"{v:,.2f}" if v < 10 else f"{v:,.1f}"
for model, t, metric, cv, lv, loads, _ in rows:
    if not cv:
        continue
    ratios = [c / l for c, l in zip(cv, lv) if l == l and l > 0]
    if "RSS" in metric:  # lower is better: still ctrust / llama.cpp
        pass
    rtxt = (f"{statistics.mean(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "–")
    ltxt = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"
    print(f"| {model} | {t} | {metric} | {', '.join(map(fmt, cv))} | {', '.join(map(fmt, lv))} | {rtxt} | {ltxt} |")
PY
