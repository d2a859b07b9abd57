// How idle OpenMP threads wait at a barrier, chosen once per process (src/cli/main.cpp) when the user set neither
// OMP_WAIT_POLICY nor GOMP_SPINCOUNT. libgomp reads both when it is loaded, so the CLI re-executes itself with the
// chosen variable. docs/benchmarks.md, "Threads on a busy machine", has the measurements behind the rule.
#pragma once

namespace ctrust {

struct WaitChoice {
  const char* var;    // the environment variable to set
  const char* value;  // its value
};

// On a machine that is nearly idle (1-minute load average below a quarter of the CPUs this process may use), idle
// threads spin briefly (GOMP_SPINCOUNT=30000, then sleep): a decode step runs ~200 back-to-back parallel products,
// and a sleeping partner's wake-up per barrier made `generate -t 2` 1.5x (Qwen2.5-1.5B) to 4x (SmolLM2) slower than spinning. Otherwise they
// sleep at once (OMP_WAIT_POLICY=passive): beside other work a spinning thread holds the core its partner needs.
// An unreadable load (load1 < 0) or no CPU count counts as busy.
WaitChoice choose_wait_policy(double load1, int ncpu);

// The 1-minute load average from /proc/loadavg, or -1 when it cannot be read.
double read_load1();
// The number of CPUs this process may run on (sched_getaffinity), or 0 when unknown.
int usable_cpus();

}  // namespace ctrust
