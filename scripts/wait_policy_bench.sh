#!/usr/bin/env bash
# docs/benchmarks.md, "Quiet machines: a short spin": `ctrust generate -n N -t T --json` tokens/s under HOGS busy loops
# (default "0 2 6") for each OpenMP wait setting in CFGS (passive auto s3k s10k s30k s100k default; auto = ctrust's own choice from the load), three interleaved
# rounds, threads TS (default "1 2"); M = model (default SmolLM2 Q4_1). One line per run: model hogs round threads
# setting seconds tokens/s load.
cd "$(dirname "$0")/.."
M=${M:-$HOME/.cache/ctrust/models/SmolLM2-135M-Instruct.Q4_1.gguf}
N=${N:-64}
run(){ env "$@" timeout 300 ${CTRUST_BIN:-./build/ctrust} generate -m $M -p "The capital of France is" -n $N -t $T --json 2>/dev/null | python3 -c "import json,sys; j=json.load(sys.stdin); print('%.3f %.1f'%(j['seconds'], j['tokens_per_s']))"; }
for hogs in ${HOGS:-0 2 6}; do
  pids=(); for ((i=0;i<hogs;i++)); do (while :; do :; done) & pids+=($!); done; sleep 1
  for r in 1 2 3; do for T in ${TS:-1 2}; do for cfg in ${CFGS:-passive s10k s3k default}; do
    case $cfg in passive) e=(OMP_WAIT_POLICY=passive);; auto) e=(-u OMP_WAIT_POLICY -u GOMP_SPINCOUNT);; s10k) e=(GOMP_SPINCOUNT=10000);; s3k) e=(GOMP_SPINCOUNT=3000);; s30k) e=(GOMP_SPINCOUNT=30000);; s100k) e=(GOMP_SPINCOUNT=100000);; default) e=(CTRUST_NO_REEXEC=1);; esac
    echo "$(basename $M) hogs=$hogs r=$r t=$T $cfg $(run "${e[@]}") load=$(cut -d' ' -f1 /proc/loadavg)"
  done; done; done
  for p in "${pids[@]}"; do kill $p; done; wait 2>/dev/null
done
