#!/usr/bin/env bash
# Wall time of a fixed eval workload with 1, 2 and 4 `--worker` processes on one run (docs/benchmarks.md, "Many
# workers, one run"), against a throw-away PostgreSQL server (started here as tests/pg_fixture.h does: initdb +
# pg_ctl in a temporary folder, Unix socket only; as root the server runs as the `postgres` user) and against a
# SQLite file. Also the same workload as one ordinary process (no --worker): the claiming/committing overhead.
# Each process uses one thread (OMP_NUM_THREADS=1). Rounds run the configurations in alternating order.
#   bash scripts/bench_workers.sh [MODEL] [TASK] [LIMIT] [UNIT_ITEMS] [ROUNDS]
# defaults: ../shared stories260K, hellaswag, 400 items, units of 25, 2 rounds. CONFIGS picks configurations.
# WORKLOAD=trust: a trust run instead (`ctrust trust --perspectives TASK --limit LIMIT --samples 1
# --max-new-tokens 16 --bootstrap 100`; TASK defaults to ethics,fairness,adv_robustness,stereotype and LIMIT to 16;
# one unit per perspective, so UNIT_ITEMS is unused).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CTRUST_BIN:-$root/build/ctrust}
model=${1:-$root/../shared/models/stories260K/stories260K-f32.gguf}
workload=${WORKLOAD:-eval}
if [ "$workload" = trust ]; then
  task=${2:-ethics,fairness,adv_robustness,stereotype}
  limit=${3:-16}
else
  task=${2:-hellaswag}
  limit=${3:-400}
fi
unit=${4:-25}
rounds=${5:-2}
pgbin=$(pg_config --bindir 2>/dev/null || true)
[ -x "$pgbin/initdb" ] || pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "ctrust: error: PostgreSQL server binaries not found: run scripts/setup.sh" >&2; exit 1; }
dir=$(mktemp -d /tmp/ctpg-bench-XXXXXX)
as=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; as=(runuser -u postgres --); fi
"${as[@]}" "$pgbin/initdb" -D "$dir/data" -U ctrust --auth=trust -E UTF8 --no-locale -N >"$dir/initdb.log" 2>&1
"${as[@]}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-c listen_addresses='' -c unix_socket_directories='$dir'" start >/dev/null
trap '"${as[@]}" "$pgbin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1; rm -rf "$dir"' EXIT
host=${dir//\//%2F}
sq=$(mktemp -d /tmp/ctrust-bench-sqlite-XXXXXX)
trap '"${as[@]}" "$pgbin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1; rm -rf "$dir" "$sq"' EXIT

run() {  # run BACKEND WORKERS N (0 workers = one ordinary process; N names a fresh run): prints the wall time in s
  local backend=$1 workers=$2 n=$3 db
  if [ "$backend" = postgres ]; then
    db="postgresql://ctrust@$host/postgres"
  else
    db="$sq/b$n.db"
  fi
  local args=(eval -m "$model" --tasks "$task" --limit "$limit" --name "b$n" --db "$db") wargs=(--unit-items "$unit")
  if [ "$workload" = trust ]; then
    args=(trust -m "$model" --perspectives "$task" --limit "$limit" --samples 1 --max-new-tokens 16 --bootstrap 100
          -t 1 --name "b$n" --db "$db")
    wargs=()
  fi
  local t0 t1
  t0=$(date +%s.%N)
  if [ "$workers" = 0 ]; then
    OMP_NUM_THREADS=1 "$bin" "${args[@]}" >/dev/null 2>&1
  else
    local pids=()
    for ((w = 0; w < workers; w++)); do
      OMP_NUM_THREADS=1 "$bin" "${args[@]}" --worker "${wargs[@]}" --worker-id "w$w" >/dev/null 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
  fi
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

echo "# $(date -u +%FT%TZ) $(uptime)"
if [ "$workload" = trust ]; then
  echo "# trust, model $(basename "$model"), perspectives $task, limit $limit, 1 sample, 16 new tokens, one unit per perspective, one thread per process, $(env -u OMP_NUM_THREADS nproc) cores"
else
  echo "# model $(basename "$model"), task $task, $limit items, units of $unit items, one thread per process, $(env -u OMP_NUM_THREADS nproc) cores"
fi
echo "backend   workers  round  seconds"
n=0
configs=("sqlite 0" "sqlite 1" "sqlite 2" "sqlite 4" "postgres 0" "postgres 1" "postgres 2" "postgres 4")
# CONFIGS="sqlite 1,postgres 1": only these (BACKEND WORKERS, 0 workers = one ordinary process)
if [ -n "${CONFIGS:-}" ]; then IFS=, read -r -a configs <<< "$CONFIGS"; fi
for ((r = 1; r <= rounds; r++)); do
  order=("${configs[@]}")
  if ((r % 2 == 0)); then  # reversed every other round
    order=(); for ((i = ${#configs[@]} - 1; i >= 0; i--)); do order+=("${configs[$i]}"); done
  fi
  for c in "${order[@]}"; do
    set -- $c
    n=$((n + 1))
    printf "%-9s %7s  %5d  %7.2f\n" "$1" "$([ "$2" = 0 ] && echo "-" || echo "$2")" "$r" "$(run "$1" "$2" "$n")"
  done
done
echo "# $(date -u +%FT%TZ) $(uptime)"
