#include "base/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace ctrust {

ProgressLine::ProgressLine(double every)
    : tty_(isatty(STDERR_FILENO)), every_(every), t0_(std::chrono::steady_clock::now()) {}

double ProgressLine::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void ProgressLine::restart() {
  t0_ = std::chrono::steady_clock::now();
  last_ = -1e9;
}

void ProgressLine::show(const std::string& line, bool final) {
  const double s = seconds();
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    open_ = true;
    if (final) finish();
  } else if (final || s - last_ >= every_) {
    std::fprintf(stderr, "%s\n", line.c_str());
    last_ = s;
  }
  std::fflush(stderr);
}

void ProgressLine::finish() {
  if (tty_ && open_) std::fprintf(stderr, "\n");
  open_ = false;
}

std::string rate_eta(int64_t done, int64_t left, double seconds, const char* unit) {
  const double rate = seconds > 0 && done > 0 ? double(done) / seconds : 0;
  if (rate <= 0) return "";
  return fmt::format(", {:.2f} {}/s, ETA {:.0f} s", rate, unit, double(left) / rate);
}

}  // namespace ctrust
