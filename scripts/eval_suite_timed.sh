#!/usr/bin/env bash
# The task suite end to end, timed (issue 11 point 6; docs/benchmarks.md "Scoring in the native mode").
#
#   bash scripts/eval_suite_timed.sh MODEL OUT_DIR [TASKS]
#
# Runs `ctrust eval` with WORKERS processes of one thread each sharing the runs (`--worker`, docs/cluster.md;
# WORKERS=1: one process with THREADS threads instead). By default each worker is ONE call with every task
# (`--tasks a,b,...`): a worker that finds no free unit in a task goes on to the next task's units instead of
# waiting for the other worker's last unit, so only the last units of the whole suite are waited for; the script
# prints each task's items and the total wall time, with the load average before and after (`uptime`).
# SPLIT=1: one call per task instead (the workers meet at the end of every task), printing one line per task:
# items, wall seconds, items/s, load before and after. Results go to OUT_DIR/suite.db.
# Environment: SPLIT (empty), COMPUTE (native), WORKERS (2), THREADS (1, with WORKERS=1 only), LIMIT (empty = every item;
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
if [ -z "${SPLIT:-}" ]; then
  l0=$(load)
  pids=()
  for w in $(seq 1 "$workers"); do
    if [ "$workers" -gt 1 ]; then
      OMP_NUM_THREADS=1 "$ctrust" eval -m "$model" --tasks "$tasks" "${limit[@]}" --compute "$compute" -t 1 --db "$db" \
        --worker --unit-items "$unit" --json >"$out/all.w$w.json" 2>"$out/all.w$w.err" &
    else
      OMP_NUM_THREADS=$threads "$ctrust" eval -m "$model" --tasks "$tasks" "${limit[@]}" --compute "$compute" \
        -t "$threads" --db "$db" --json >"$out/all.w$w.json" 2>"$out/all.w$w.err" &
    fi
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t_end=$(date +%s.%N)
  python3 - "$out/all.w1.json" "$t_all" "$t_end" "$l0" "$(load)" "$compute" "$workers" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))['runs']
for r in runs:
    print('%-16s %7d' % (r['run']['task'], r['n_total']))
w = float(sys.argv[3]) - float(sys.argv[2])
print('total %.1f s (%.3f h), %d items, compute %s, workers %s, one call per worker, load before-after %s-%s'
      % (w, w / 3600, sum(r['n_total'] for r in runs), sys.argv[6], sys.argv[7], sys.argv[4], sys.argv[5]))
PY
  exit 0
fi
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
