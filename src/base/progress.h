// The one progress reporter of long work (eval, trust, kld, perplexity, compress, imatrix, toxicity-eval): a line
// on stderr, redrawn in place on a terminal; otherwise (a pipe, a log file) a plain line at most every `every`
// seconds plus the final one, so logs show signs of life. stdout stays clean (--json goes there).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace ctrust {

class ProgressLine {
 public:
  explicit ProgressLine(double every = 10);
  void show(const std::string& line, bool final = false);
  void finish();  // ends a redrawn line with a newline (terminal only)
  bool tty() const { return tty_; }
  double seconds() const;  // since construction (or restart())
  void restart();          // the clock of seconds() starts again

 private:
  bool tty_;
  double every_, last_ = -1e9;
  bool open_ = false;
  std::chrono::steady_clock::time_point t0_;
};

// ", 1.52 items/s, ETA 250 s": the rate of the `done` units of `seconds` and the time the `left` units take at that
// rate; "" while nothing is done. unit: "items", "chunks".
std::string rate_eta(int64_t done, int64_t left, double seconds, const char* unit);

}  // namespace ctrust
