#!/usr/bin/env bash
# Wall time of a fixed workload through the remote backend (--backend openai) at 1, 4 and 16 requests in flight
# (docs/benchmarks.md, "Remote backend", against a real server), against llama-cpp-python's OpenAI-compatible
# server on loopback (started here, stopped at exit; `pip install 'llama-cpp-python[server]==0.3.36'`, which
# scripts/setup.sh installs with CTRUST_REMOTE=1). Two workloads, each on its own server:
#   eval   stories260K (F32, written as GGUF v3 by `ctrust convert`: llama.cpp reads no v1 files; the model adds BOS,
#          which llama-cpp-python's echo log-probabilities need, docs/remote.md), hellaswag --limit EVAL_LIMIT: one
#          request per choice. Also the same items with ctrust's own engine (--compute native, one thread).
#   trust  SmolLM2-135M-Instruct Q4_1, the ethics perspective --limit TRUST_LIMIT, 1 sample, 24 new tokens (greedy):
#          one generation request per prompt.
# Rounds run the in-flight settings in alternating order (1,4,16 then 16,4,1). Every remote run is compared with the
# first one (`ctrust compare --json`): the results must not depend on the number of requests in flight (eval: 0
# flips; trust: the number of identical answers is printed).
# The server evaluates one request at a time (one model, one lock), so on this machine the figures show the client's
# overhead and how much of it overlaps with the server's work, not a parallel speed-up. Columns: wall seconds,
# ctrust's CPU (user+sys) and the server's CPU during the run.
#   bash bench/remote_inflight.sh [EVAL_LIMIT] [TRUST_LIMIT] [ROUNDS]      defaults: 100, 2, 2
# The server gets SERVER_THREADS threads (default 1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CTRUST_BIN:-$root/build/ctrust}
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
eval_limit=${1:-100}
trust_limit=${2:-2}
rounds=${3:-2}
threads=${SERVER_THREADS:-1}
stories=$root/../shared/models/stories260K/stories260K-f32.gguf
smol=$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
python3 -c 'import llama_cpp.server.app' 2>/dev/null ||
  { echo "ctrust: error: llama-cpp-python's server is not installed (CTRUST_REMOTE=1 bash scripts/setup.sh)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/ctrust-bench-remote-XXXXXX)
srv_pid=""
stop_server() { if [ -n "$srv_pid" ]; then kill -- "-$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; srv_pid=""; fi; }
trap 'stop_server; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port/v1
start_server() {  # MODEL ALIAS N_CTX
  setsid python3 -m llama_cpp.server --model "$1" --model_alias "$2" --host 127.0.0.1 --port "$port" --n_ctx "$3" \
    --n_threads "$threads" --logits_all True --type_k 0 --type_v 0 --flash_attn False --verbose False \
    >"$tmp/server-$2.log" 2>&1 &
  srv_pid=$!
  for _ in $(seq 600); do
    curl -sf "$url/models" >/dev/null 2>&1 && return 0
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.3
  done
  tail -n 20 "$tmp/server-$2.log" >&2
  echo "ctrust: error: llama-cpp-python's server did not start" >&2
  exit 1
}
secs() { local t0=$1 t1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
cpu_of() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }  # user + sys seconds of a process (USER_HZ = 100)
timed() {  # timed TAG CMD...: runs CMD (stdout dropped, stderr to $tmp/TAG.err), sets $wall, $cli_cpu, $srv_cpu
  local tag=$1 s0 t0 u s
  shift
  s0=$(cpu_of "$srv_pid")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$tmp/$tag.time" "$@" >/dev/null 2>"$tmp/$tag.err" || { cat "$tmp/$tag.err" >&2; exit 1; }
  wall=$(secs "$t0")
  srv_cpu=$(echo "$(cpu_of "$srv_pid") - $s0" | bc)
  read -r u s <"$tmp/$tag.time"
  cli_cpu=$(echo "$u + $s" | bc)
}

echo "# $(date -u +%FT%TZ) $(uptime)"
echo "# llama-cpp-python $(python3 -c 'import llama_cpp; print(llama_cpp.__version__)') server, $threads thread(s), loopback; ctrust one process"
echo "workload  in-flight  round  wall_s  ctrust_cpu_s  server_cpu_s  vs first remote run"

# --- eval: stories260K, hellaswag ------------------------------------------------------------------------------
v3=$tmp/stories260K-v3.gguf
"$bin" convert -m "$stories" --type f32 -o "$v3" >/dev/null 2>&1
db=$tmp/eval.db
t0=$(date +%s.%N)
OMP_NUM_THREADS=1 "$bin" eval -m "$v3" --compute native -t 1 --tasks hellaswag --limit "$eval_limit" --name native \
  --db "$db" >/dev/null 2>&1
printf "%-9s %9s  %5s  %6.2f\n" "eval" "native" "-" "$(secs "$t0")"
start_server "$v3" stories 512
first=""
n=0
for ((r = 1; r <= rounds; r++)); do
  order=(1 4 16); ((r % 2 == 0)) && order=(16 4 1)
  for k in "${order[@]}"; do
    n=$((n + 1))
    timed "r$n" "$bin" eval --backend openai --base-url "$url" --served-model stories --tokenizer "$v3" \
      --tasks hellaswag --limit "$eval_limit" --max-inflight "$k" --name "r$n" --db "$db"
    [ -z "$first" ] && first=r$n
    flips=$("$bin" compare "$first" "r$n" --json --db "$db" 2>/dev/null |
      python3 -c 'import json,sys; t=json.load(sys.stdin)["tasks"]["hellaswag"]; print("%d flips of %d" % (t["c2w"] + t["w2c"], t["n"]))')
    printf "%-9s %9s  %5d  %6.2f  %12.2f  %12.2f  %s\n" "eval" "$k" "$r" "$wall" "$cli_cpu" "$srv_cpu" "$flips"
  done
done
nat=$("$bin" compare native "$first" --json --db "$db" 2>/dev/null |
  python3 -c 'import json,sys; t=json.load(sys.stdin)["tasks"]["hellaswag"]; print("%d flips of %d" % (t["c2w"] + t["w2c"], t["n"]))')
echo "# native vs first remote run: $nat"
python3 - "$db" <<'PY'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
runs = {name: rid for rid, name in c.execute("SELECT id, name FROM runs")}
def lls(name):
    return {i: json.loads(ll) for i, ll in c.execute("SELECT item_id, ll FROM items WHERE run_id=?", (runs[name],))}
base = lls("native")
worst = 0.0
for name in runs:
    if name == "native": continue
    for i, ll in lls(name).items():
        worst = max(worst, max(abs(a - b) for a, b in zip(ll, base[i])))
print(f"# largest |ll_native - ll_remote| over every remote run: {worst:.3g} nats")
PY
stop_server

# --- trust: SmolLM2 Q4_1, ethics ---------------------------------------------------------------------------------
if [ -s "$smol" ] && ((trust_limit > 0)); then
  start_server "$smol" smollm2 2048
  db=$tmp/trust.db
  first=""
  for ((r = 1; r <= rounds; r++)); do
    order=(1 4 16); ((r % 2 == 0)) && order=(16 4 1)
    for k in "${order[@]}"; do
      n=$((n + 1))
      timed "t$n" "$bin" trust --backend openai --base-url "$url" --served-model smollm2 --tokenizer "$smol" \
        --perspectives ethics --limit "$trust_limit" --samples 1 --max-new-tokens 24 --bootstrap 0 \
        --max-inflight "$k" --name "t$n" --db "$db"
      [ -z "$first" ] && first=t$n
      same=$(python3 - "$db" "$first" "t$n" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rid = {name: i for i, name in c.execute("SELECT id, name FROM runs")}
def out(name):
    return {(t, i): x for t, i, x in c.execute("SELECT task, item_id, extra FROM items WHERE run_id=?", (rid[name],))}
a, b = out(sys.argv[2]), out(sys.argv[3])
print(f"{sum(a[k] == b.get(k) for k in a)} of {len(a)} records identical")
PY
)
      printf "%-9s %9s  %5d  %6.2f  %12.2f  %12.2f  %s\n" "trust" "$k" "$r" "$wall" "$cli_cpu" "$srv_cpu" "$same"
    done
  done
  stop_server
fi
echo "# $(date -u +%FT%TZ) $(uptime)"
