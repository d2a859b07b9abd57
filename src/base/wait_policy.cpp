#include "base/wait_policy.h"

#include <cstdio>
#include <sched.h>

namespace ctrust {

WaitChoice choose_wait_policy(double load1, int ncpu) {
  if (ncpu > 0 && load1 >= 0 && load1 < 0.25 * ncpu) return {"GOMP_SPINCOUNT", "30000"};
  return {"OMP_WAIT_POLICY", "passive"};
}

double read_load1() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return -1;
  double l = -1;
  if (std::fscanf(f, "%lf", &l) != 1) l = -1;
  std::fclose(f);
  return l;
}

int usable_cpus() {
  cpu_set_t s;
  CPU_ZERO(&s);
  if (sched_getaffinity(0, sizeof s, &s) != 0) return 0;
  return CPU_COUNT(&s);
}

}  // namespace ctrust
