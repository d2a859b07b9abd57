#!/usr/bin/env bash
# Two builds of bench_engine against each other on the same models, interleaved (A, B, A, B, ...) so that both
# see the same machine load; the 1-minute load average is recorded before every run and the peak RSS of every
# process (/usr/bin/time -v). Prints one markdown table: per model, threads and metric the runs of A and of B in
# order, the mean of the per-pair ratios B/A with their range, each run's CPU time (user + sys: under load a
# steadier cost measure than the wall-clock rates, as it leaves out the time the process waited for a core;
# it includes the model load) and the loads.
#   decode tok/s at batch 1: bench_engine --prompt 1 --gen TG (best of 2 repetitions inside the run)
#   prefill tok/s: bench_engine --prompt P --gen 1 (best of 2; P = 512: 1 repetition)
# Usage: bash bench/ab_engine.sh A_BENCH_ENGINE B_BENCH_ENGINE [REPS]      (REPS pairs of runs, default 2)
# Environment: MODELS (default "qwen0.5b qwen1.5b"), THREADS ("1 2"), TG (32), PROMPTS ("128 512"),
#   COMPUTE (native), OUT (folder for the raw results; default a new /tmp/ab_engine.XXXXXX).
set -euo pipefail
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
err() { echo "ctrust: error: $*" >&2; exit 1; }
[[ $# -ge 2 ]] || err "usage: bash bench/ab_engine.sh A_BENCH_ENGINE B_BENCH_ENGINE [REPS]"
a=$1 b=$2 reps=${3:-2}
for p in "$a" "$b"; do [[ -x "$p" ]] || err "$p is not an executable bench_engine"; done
[[ "$reps" =~ ^[0-9]+$ && "$reps" -ge 1 ]] || err "REPS must be a positive integer (got '$reps')"
[[ -x /usr/bin/time ]] || err "/usr/bin/time not found (Debian package 'time')"
models=${MODELS:-qwen0.5b qwen1.5b}
threads=${THREADS:-1 2}
tg=${TG:-32}
prompts=${PROMPTS:-128 512}
compute=${COMPUTE:-native}
out=${OUT:-$(mktemp -d /tmp/ab_engine.XXXXXX)}
mkdir -p "$out"

model_path() {
  case "$1" in
    smollm2) echo "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
    qwen0.5b) echo "$cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" ;;
    qwen1.5b) echo "$cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" ;;
    gemma270m) echo "$cache/models/gemma-3-270m-q4_k_m.gguf" ;;
    *) err "unknown model '$1' (smollm2, qwen0.5b, qwen1.5b, gemma270m)" ;;
  esac
}
for m in $models; do [[ -f $(model_path "$m") ]] || err "$(model_path "$m") missing (bash scripts/fetch_models.sh)"; done

# one NAME BIN MODEL THREADS ARGS...: a run; JSON -> NAME.json, load -> NAME.load, peak RSS (KiB) -> NAME.rss
one() {
  local name=$1 bin=$2 model=$3 t=$4
  shift 4
  cut -d' ' -f1 /proc/loadavg >"$out/$name.load"
  OMP_NUM_THREADS=$t /usr/bin/time -v -o "$out/$name.time" "$bin" "$model" --threads "$t" --compute "$compute" \
    --json "$@" >"$out/$name.json" 2>"$out/$name.err" || err "$name failed: $(tail -3 "$out/$name.err")"
  sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/$name.time" >"$out/$name.rss"
  echo "[ab_engine] $name: load $(cat "$out/$name.load"), $(grep -o '"rows":.*' "$out/$name.json")" >&2
}

for m in $models; do
  path=$(model_path "$m")
  for t in $threads; do
    for r in $(seq 1 "$reps"); do
      for side in A B; do
        bin=$a; [[ $side == B ]] && bin=$b
        one "$m.t$t.decode.$side.$r" "$bin" "$path" "$t" --prompt 1 --gen "$tg" --reps 2
        for p in $prompts; do
          rp=2; [[ $p -ge 512 ]] && rp=1
          one "$m.t$t.p$p.$side.$r" "$bin" "$path" "$t" --prompt "$p" --gen 1 --reps "$rp"
        done
      done
    done
  done
done

python3 - "$out" "$reps" "$models" "$threads" "$prompts" <<'EOF'
import json, sys, os
out, reps, models, threads, prompts = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5].split()
def rd(name):
    j = json.load(open(os.path.join(out, name + ".json")))
    load = float(open(os.path.join(out, name + ".load")).read())
    rss = int(open(os.path.join(out, name + ".rss")).read()) / 1024
    cpu = 0.0
    for line in open(os.path.join(out, name + ".time")):
        if "User time (seconds)" in line or "System time (seconds)" in line:
            cpu += float(line.split(":")[-1])
    return j["rows"][0], load, rss, cpu
print("| model | threads | metric | A (per run) | B (per run) | B/A: mean (range over pairs) | CPU s per run A / B | load (1-min) |")
print("|---|---|---|---|---|---|---|---|")
for m in models:
    for t in threads:
        rss = {"A": [], "B": []}
        loads = []
        for metric, key, kind in [("decode tok/s (batch 1)", "decode_tok_s", "decode")] + \
                [(f"prefill tok/s (prompt {p})", "prefill_tok_s", f"p{p}") for p in prompts]:
            v = {"A": [], "B": []}
            cpu = {"A": [], "B": []}
            for r in range(1, reps + 1):
                for s in "AB":
                    row, load, mb, c = rd(f"{m}.t{t}.{kind}.{s}.{r}")
                    v[s].append(row[key]); rss[s].append(mb); loads.append(load); cpu[s].append(c)
            ratios = [b / a for a, b in zip(v["A"], v["B"])]
            print(f"| {m} | {t} | {metric} | {', '.join(f'{x:.1f}' for x in v['A'])} | "
                  f"{', '.join(f'{x:.1f}' for x in v['B'])} | {sum(ratios) / len(ratios):.2f}x "
                  f"({min(ratios):.2f}-{max(ratios):.2f}) | {', '.join(f'{x:.1f}' for x in cpu['A'])} / "
                  f"{', '.join(f'{x:.1f}' for x in cpu['B'])} | {min(loads):.1f}-{max(loads):.1f} |")
        print(f"| {m} | {t} | peak RSS MB (max over runs) | {max(rss['A']):,.1f} | {max(rss['B']):,.1f} | "
              f"{max(rss['B']) / max(rss['A']):.2f}x | | {min(loads):.1f}-{max(loads):.1f} |")
EOF
echo "[ab_engine] raw results in $out" >&2
