#!/usr/bin/env bash
# Per-item throughput of `ctrust eval --backend openai` at 1, 4 and 16 requests in flight against llama-cpp-python's
# server on loopback (docs/benchmarks.md, "Remote backend"). The server evaluates one request at a time (one model,
# one lock), so on this machine the figures show the client's overhead and how much of it overlaps with the
# server's work, not a parallel speed-up.
# Usage: bash bench/remote_inflight.sh [MODEL.gguf] [TASK] [LIMIT]   (default: stories260K as GGUF v3, arc_easy, 40)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ctrust=${CTRUST:-$root/build/ctrust}
work=$(mktemp -d /tmp/ctrust-remote-bench.XXXXXX)
model=${1:-}
if [[ -z "$model" ]]; then
  model=$work/stories260K-v3.gguf
  "$ctrust" convert -m "$root/../shared/models/stories260K/stories260K-f32.gguf" --type f32 -o "$model" >/dev/null
fi
task=${2:-arc_easy}
limit=${3:-40}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
n_ctx=$("$ctrust" info -m "$model" --json | python3 -c 'import json,sys; print(min(2048, json.load(sys.stdin)["config"]["n_ctx"]))')
setsid python3 -m llama_cpp.server --model "$model" --model_alias bench --host 127.0.0.1 --port "$port" \
  --n_ctx "$n_ctx" --n_threads 1 --logits_all True --verbose False >"$work/server.log" 2>&1 &
server=$!
trap 'kill -- -$server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  sleep 0.3
done
cpu_of() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }  # user + sys seconds (USER_HZ = 100)
echo "model $model, task $task, limit $limit, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-9s %8s %10s %14s %14s\n" inflight items wall_s items_per_s cpu_s(c+s)
for n in 1 4 16; do
  s0=$(cpu_of $server)
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$work/time" "$ctrust" eval --backend openai --base-url "http://127.0.0.1:$port/v1" \
    --served-model bench --tokenizer "$model" --tasks "$task" --limit "$limit" --max-inflight "$n" \
    --db "$work/bench.db" --name "inflight$n" --json >"$work/out.json" 2>"$work/err.txt"
  t1=$(date +%s.%N)
  s1=$(cpu_of $server)
  items=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runs"][0]["n_scored"])' "$work/out.json")
  read -r u s <"$work/time"
  printf "%-9s %8s %10.1f %14.2f %14s\n" "$n" "$items" "$(echo "$t1 - $t0" | bc)" \
    "$(echo "$items / ($t1 - $t0)" | bc -l)" "$(echo "$u + $s" | bc)+$(echo "$s1 - $s0" | bc)"
done
echo "cpu_s: ctrust's user+sys + the server's user+sys during the run"
