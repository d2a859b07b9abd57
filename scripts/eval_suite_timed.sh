#!/usr/bin/env bash
# The task suite end to end, timed (issue 11 point 6; docs/benchmarks.md "Scoring in the native mode").
#
#   bash scripts/eval_suite_timed.sh MODEL OUT_DIR [TASKS]
#
# Runs `ctrust eval` on each task in turn with WORKERS processes of one thread each sharing the run (`--worker`,
# docs/cluster.md; WORKERS=1: one process with THREADS threads instead), and prints one line per task: items,
# wall seconds, items/s and the load average before and after (`uptime`). Results go to OUT_DIR/suite.db.
# Environment: COMPUTE (native), WORKERS (2), THREADS (1, with WORKERS=1 only), LIMIT (empty = every item;
# N = ctrust eval --limit N, a seeded stratified sample per subtask), UNIT (--unit-items, 100), CTRUST
# (build/ctrust). TASKS defaults to the nine declarations' tasks and wikitext2, largest first.
set -euo pipefail
model=${1:?usage: eval_suite_timed.sh MODEL OUT_DIR [TASKS]}
out=${2:?usage: eval_suite_timed.sh MODEL OUT_DIR [TASKS]}
tasks=${3:-hellaswag,mmlu,lambada_openai,boolq,wikitext2,arc_easy,piqa,winogrande,arc_challenge,truthfulqa_mc,truthfulqa_mc2}
root=$(cd "$(dirname "$0")/.." && pwd)
ctrust=${CTRUST:-$root/build/ctrust}
compute=${COMPUTE:-native}
workers=${WORKERS:-2}
threads=${THREADS:-1}
unit=${UNIT:-100}
limit=()
[ -n "${LIMIT:-}" ] && limit=(--limit "$LIMIT")
mkdir -p "$out"
db="$out/suite.db"
load() { cut -d' ' -f1 /proc/loadavg; }
t_all=$(date +%s.%N)
printf '%-16s %7s %9s %8s  %s\n' task items wall_s items/s "load before-after"
IFS=, read -ra list <<<"$tasks"
for t in "${list[@]}"; do
  l0=$(load)
  t0=$(date +%s.%N)
  if [ "$workers" -gt 1 ]; then
    pids=()
    for w in $(seq 1 "$workers"); do
      OMP_NUM_THREADS=1 "$ctrust" eval -m "$model" --tasks "$t" "${limit[@]}" --compute "$compute" -t 1 --db "$db" \
        --worker --unit-items "$unit" --json >"$out/$t.w$w.json" 2>"$out/$t.w$w.err" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
  else
    OMP_NUM_THREADS=$threads "$ctrust" eval -m "$model" --tasks "$t" "${limit[@]}" --compute "$compute" -t "$threads" \
      --db "$db" --json >"$out/$t.w1.json" 2>"$out/$t.w1.err"
  fi
  t1=$(date +%s.%N)
  n=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['runs'][0]; print(r['n_total'])" "$out/$t.w1.json" 2>/dev/null || echo '?')
  python3 -c "import sys; n,t0,t1=sys.argv[1],float(sys.argv[2]),float(sys.argv[3]); w=t1-t0; r=(float(n)/w if n.isdigit() else float('nan'))
print('%-16s %7s %9.1f %8.2f  %s-%s' % (sys.argv[4], n, w, r, sys.argv[5], sys.argv[6]))" "$n" "$t0" "$t1" "$t" "$l0" "$(load)"
done
t_end=$(date +%s.%N)
python3 -c "import sys; print('total %.1f s (%.3f h), compute %s, workers %s' % (float(sys.argv[2])-float(sys.argv[1]), (float(sys.argv[2])-float(sys.argv[1]))/3600, sys.argv[3], sys.argv[4]))" "$t_all" "$t_end" "$compute" "$workers"
