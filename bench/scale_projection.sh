#!/usr/bin/env bash
# Scale projection: Llama-2-7B- and 13B-shaped GGUF files with random Q4_K weights (written by build/bench_scale
# into /tmp, ~3.8 and ~7.3 GB, deleted at the end), measured with ctrust (native mode) and llama.cpp on the same
# file, interleaved (ctrust, llama.cpp, ctrust, llama.cpp), `uptime`'s load recorded before every run:
#   load time    ctrust: open_model in bench_engine (load_s); llama.cpp: llama_model_load_from_file +
#                context through llama-cpp-python (same llama.cpp version as the tools), warm page cache for both
#   peak RSS     /usr/bin/time -v of the process
#   prefill/decode tok/s at THREADS threads: ctrust bench_engine --prompt PP --gen TG --reps 1;
#                llama.cpp llama-bench -p PP -n TG -r 1 (its samples after its warm-up run)
#   batched decode (B = SCALE_BATCH sequences, BPP-token prompts, BTG steps): bench_batched / llama-batched-bench
# Then projects a `ctrust trust --preset standard` run from `ctrust trust-plan --preset standard --json`.
# Usage: bash bench/scale_projection.sh [REPS]     (default 2; SHAPES="7b 13b", THREADS=2, PP=128, TG=16,
#   SCALE_BATCH=8, BPP=32, BTG=8 (SCALE_BATCH=0: no batched runs), OUT=folder for the raw results (runs add to it),
#   KEEP=1 keeps the files, SUMMARY_ONLY=1 only prints the tables of the results in OUT)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
build=${CTRUST_BUILD:-$root/build}
lbin=${LLAMACPP_BIN:-$cache/llamacpp/bin}
reps=${1:-2}
shapes=${SHAPES:-7b 13b}
t=${THREADS:-2}
pp=${PP:-128}
tg=${TG:-16}
sb=${SCALE_BATCH:-8}
bpp=${BPP:-32}
btg=${BTG:-8}
out=${OUT:-$(mktemp -d /tmp/scale_projection.XXXXXX)}
mkdir -p "$out"
err() { echo "ctrust: error: $*" >&2; exit 1; }
say() { echo "[scale_projection] $*" >&2; }
[[ "$reps" =~ ^[0-9]+$ && "$reps" -ge 1 ]] || err "REPS must be a positive integer (got '$reps')"
for p in bench_scale bench_engine bench_batched ctrust; do
  [[ -x "$build/$p" ]] || err "$build/$p not built (cmake -DCTRUST_BENCH=ON, then build it)"
done
for p in llama-bench llama-batched-bench; do [[ -x "$lbin/$p" ]] || err "$lbin/$p not built (bash scripts/build_llamacpp.sh)"; done
python3 -c 'import llama_cpp' 2>/dev/null || err "llama-cpp-python is not installed (bash scripts/setup_ref.sh)"

run() {  # run NAME CMD...: as in bench/vs_llamacpp.sh
  local name=$1; shift
  cut -d' ' -f1 /proc/loadavg >"$out/$name.load"
  say "$name (load $(cat "$out/$name.load"))"
  /usr/bin/time -v -o "$out/$name.time" "$@" >"$out/$name.out" 2>"$out/$name.err" \
    || { tail -5 "$out/$name.err" >&2; err "$name failed (see $out/$name.err)"; }
  sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/$name.time" >"$out/$name.rss"
}

if [[ "${SUMMARY_ONLY:-0}" != 1 ]]; then
[[ -s "$out/plan.json" ]] || "$build/ctrust" trust-plan --preset standard --json >"$out/plan.json"
files=()
cleanup() { [[ "${KEEP:-0}" == 1 ]] || rm -f "${files[@]}"; }
trap cleanup EXIT
for s in $shapes; do
  f=/tmp/ctrust-scale-$s-q4k.gguf
  files+=("$f")
  [[ -s "$f" ]] || run "write.$s" nice -n 5 "$build/bench_scale" "$s" "$f" --json
  cat "$f" >/dev/null  # warm the page cache for the first run as for the later ones
  for ((r = 1; r <= reps; r++)); do
    run "$s.r$r.ctrust" env OMP_NUM_THREADS="$t" "$build/bench_engine" "$f" --prompt "$pp" --gen "$tg" --reps 1 \
      --threads "$t" --compute native --json
    run "$s.r$r.llama" "$lbin/llama-bench" -m "$f" -p "$pp" -n "$tg" -t "$t" -r 1 -o json
    run "$s.r$r.llamaload" python3 -c '
import json, sys, time, llama_cpp
t0 = time.time()
m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), verbose=False)
print(json.dumps({"load_s": time.time() - t0}))' "$f" "$t"
    if [[ "$sb" -gt 0 ]]; then
      run "$s.r$r.ctrust_b" env OMP_NUM_THREADS="$t" "$build/bench_batched" "$f" --pp "$bpp" --tg "$btg" --batch "$sb" \
        --threads "$t" --compute native --json
      run "$s.r$r.llama_b" "$lbin/llama-batched-bench" -m "$f" -c $((sb * (bpp + btg))) -b 2048 -ub 512 \
        -npp "$bpp" -ntg "$btg" -npl "$sb" -t "$t" --output-format jsonl
    fi
  done
  [[ "${KEEP:-0}" == 1 ]] || rm -f "$f"  # free the disk and the page cache before the next shape
done
fi

python3 - "$out" "$reps" "$shapes" "$sb" <<'PY'
import json, statistics, sys
out, reps, shapes, sb = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), int(sys.argv[4])
rd = lambda p, d="": (open(p).read().strip() if __import__("os").path.exists(p) else d)
js = lambda n: json.loads(rd(f"{out}/{n}.out"))
rss = lambda n: int(rd(f"{out}/{n}.rss", "0") or 0) / 1024
ld = lambda n: float(rd(f"{out}/{n}.load", "nan"))
plan = json.loads(rd(f"{out}/plan.json"))
print(f"| shape | engine | load s | peak RSS MB | prefill tok/s | decode tok/s (batch 1) | batch {sb}: decode tok/s (S_TG) | load (1-min) |")
print("|---|---|---|---|---|---|---|---|")
proj = {}
for s in shapes:
    c = {k: [] for k in ("load", "rss", "pp", "tg", "btg")}
    l = {k: [] for k in ("load", "rss", "pp", "tg", "btg")}
    loads = []
    for r in range(1, 100):
        p = f"{s}.r{r}"
        try:
            e = js(f"{p}.ctrust"); lb = js(f"{p}.llama"); ll = js(f"{p}.llamaload")
        except Exception:
            if r > reps:
                break
            continue
        c["load"].append(e["load_s"]); c["rss"].append(rss(f"{p}.ctrust"))
        c["pp"].append(e["rows"][0]["prefill_tok_s"]); c["tg"].append(e["rows"][0]["decode_tok_s"])
        l["load"].append(ll["load_s"]); l["rss"].append(rss(f"{p}.llama"))
        for x in lb:
            (l["tg"] if x["n_gen"] > 0 else l["pp"]).append(max(x["samples_ts"]))
        loads += [ld(f"{p}.ctrust"), ld(f"{p}.llama"), ld(f"{p}.llamaload")]
        if sb > 0:
            try:
                c["btg"].append(js(f"{p}.ctrust_b")["rows"][0]["s_tg"])
                lrow = [json.loads(x) for x in rd(f"{out}/{p}.llama_b.out").splitlines() if x.startswith("{")]
                l["btg"].append(lrow[0]["speed_tg"])
                loads += [ld(f"{p}.ctrust_b"), ld(f"{p}.llama_b")]
            except Exception:
                pass
    f = lambda v, d=1: ", ".join(f"{x:,.{d}f}" for x in v) or "–"
    lt = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"
    print(f"| {s} | ctrust | {f(c['load'],2)} | {f(c['rss'],0)} | {f(c['pp'],2)} | {f(c['tg'],2)} | {f(c['btg'],2)} | {lt} |")
    print(f"| {s} | llama.cpp | {f(l['load'],2)} | {f(l['rss'],0)} | {f(l['pp'],2)} | {f(l['tg'],2)} | {f(l['btg'],2)} | {lt} |")
    proj[s] = (c, l)
G, items, records = plan["max_tokens"], plan["items"], plan["records"]
print(f"\ntrust `standard` preset: {items:,} items, {records:,} records, at most {G:,} generated tokens.")
print("Projected generation time (upper bound: every record generates its full token budget), hours:")
print("| shape | engine | at batch-1 decode | at batch-%d decode | + per 100 prompt tokens per item (prefill) |" % sb)
print("|---|---|---|---|---|")
for s, (c, l) in proj.items():
    for name, v in (("ctrust", c), ("llama.cpp", l)):
        if not v["tg"]:
            continue
        tg1 = statistics.mean(v["tg"]); pp = statistics.mean(v["pp"])
        b = f"{G / statistics.mean(v['btg']) / 3600:,.0f}" if v["btg"] else "–"
        print(f"| {s} | {name} | {G / tg1 / 3600:,.0f} | {b} | {items * 100 / pp / 3600:,.1f} |")
PY
