# Step timing for scripts/test.sh and scripts/fuzz.sh (sourced, not run): `step_done NAME` prints the wall time
# and the CPU time (user+sys) of the processes finished since the last step, with the load, prefixed by
# $steps_prefix. CPU time comes from bash's `times` (second line: the children), written to a file because `times`
# in a pipe or $(...) would report that subshell's children.
steps_times_file=$(mktemp)
trap 'rm -f "$steps_times_file"' EXIT
child_cpu() {  # sets cpu_now; called directly, not in $(...), whose subshell would have no children
  times > "$steps_times_file"
  cpu_now=$(tail -n 1 "$steps_times_file" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%.0f", s }')
}
child_cpu
step_wall=$SECONDS step_cpu=$cpu_now
step_done() {  # step_done NAME: prints the step's wall and CPU time and starts the next step
  local cpu
  child_cpu
  cpu=$cpu_now
  echo "$steps_prefix $1: $((SECONDS - step_wall)) s wall, $((cpu - step_cpu)) s CPU (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  step_wall=$SECONDS step_cpu=$cpu
}
