#!/usr/bin/env bash
# A trust run timed per perspective (issue 11 point 7; docs/benchmarks.md "Qwen2.5-Coder-1.5B-Instruct beside SmolLM2").
#
#   bash scripts/trust_timed.sh MODEL OUT_DIR NAME [ctrust trust options...]
#
# Starts WORKERS (2) `ctrust trust --worker` processes of one thread on OUT_DIR/trust.db under /usr/bin/time -v,
# time-stamps their stderr (OUT_DIR/wN.err, appended, so a resumed run keeps the earlier lines), and at the end prints
# each perspective's wall time (unit claimed -> done; summed over resumed segments), each worker's user CPU seconds,
# peak RSS and generation counts, and the whole run's wall time. Example:
#   bash scripts/trust_timed.sh ~/.cache/ctrust/models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/t smollm2 --preset standard --limit 2
set -euo pipefail
model=${1:?usage: trust_timed.sh MODEL OUT_DIR NAME [trust options]}; out=${2:?}; name=${3:?}; shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
ctrust=${CTRUST:-$root/build/ctrust}
workers=${WORKERS:-2}
mkdir -p "$out"
echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out/times.txt"
t0=$(date +%s.%N)
stamp=$(date +%H%M%S)
timer=(); [ -x /usr/bin/time ] && timer=(/usr/bin/time -v)  # GNU time (Debian `time`): CPU seconds, peak RSS
for w in $(seq 1 "$workers"); do
  OMP_NUM_THREADS=1 "${timer[@]}" "$ctrust" trust -m "$model" -t 1 --db "$out/trust.db" --name "$name" --worker \
    --json "$@" > "$out/w$w.$stamp.json" \
    2> >(while IFS= read -r l; do printf '%s %s\n' "$(date +%T)" "$l"; done >> "$out/w$w.err") &
done
wait
t1=$(date +%s.%N)
echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1 /proc/loadavg) wall_s $(python3 -c "print(round($t1 - $t0, 1))")" | tee -a "$out/times.txt"
sleep 1  # let the time-stamping loops flush
python3 - "$out" "$workers" "$stamp" <<'PY'
import datetime, glob, json, re, sys
out, workers, stamp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
walls = {}
for w in range(1, workers + 1):
    claimed = {}
    for line in open(f"{out}/w{w}.err", errors="replace"):
        m = re.match(r"(\d\d:\d\d:\d\d) worker \S+ unit (\S+) (claimed|done)", line)
        if not m: continue
        t = datetime.datetime.strptime(m.group(1), "%H:%M:%S")
        if m.group(3) == "claimed": claimed[m.group(2)] = t
        elif m.group(2) in claimed:
            walls[m.group(2)] = walls.get(m.group(2), 0) + ((t - claimed.pop(m.group(2))) % datetime.timedelta(days=1)).total_seconds()
    cpu = [l.split(":")[-1].strip() for l in open(f"{out}/w{w}.err") if "User time" in l or "Maximum resident" in l]
    print(f"worker {w}: user CPU s, peak RSS kB (per invocation): {cpu}")
    try:
        g = json.load(open(f"{out}/w{w}.{stamp}.json"))["generation"]
        print(f"  generated {g['generated_tokens']} tok, decode {g['decode_seconds']:.1f} s, prefill {g['prefill_tokens']} tok "
              f"in {g['prefill_seconds']:.1f} s, mean batch {g['mean_batch']:.1f}")
    except Exception as e:
        print(f"  no generation summary ({e.__class__.__name__}: interrupted?)")
for k, v in walls.items(): print(f"{k:20s} {v:8.0f} s wall (claimed -> done)")
PY
