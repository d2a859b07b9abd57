// Shared by the bench programs: wall clock, CPU time and peak resident memory of this process.
#pragma once
#include <sys/resource.h>

#include <chrono>

namespace ctrust::bench {

inline double now() {  // seconds, monotonic
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline double cpu_seconds() {  // user + system time of all threads
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
inline double peak_rss_mb() {  // ru_maxrss is in KiB on Linux
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}

}  // namespace ctrust::bench
