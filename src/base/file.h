// Reading untrusted files with limits, and writing output files so that a crash never leaves a partial
// or stale file behind. Every error is a ctrust::Error naming the file (and the limit, if one was hit).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace ctrust {

// Fails unless `path` is a regular file (not a folder, device, FIFO or socket: /dev/zero would read forever).
// Returns its size in bytes. `what` names the file's role in the message ("task data", "lm-eval samples").
uint64_t require_regular_file(const std::string& path, const char* what);

// Size limit of the JSON files ctrust reads (config.json, tokenizer.json, task declarations): the largest real
// tokenizer.json files are tens of MB; parsed JSON takes several times its text in memory.
constexpr uint64_t kMaxJsonBytes = uint64_t(256) << 20;

// The whole of a regular file; fails if it is larger than max_bytes (message names the limit).
std::string read_regular_file(const std::string& path, const char* what, uint64_t max_bytes = uint64_t(1) << 32);

// Fails now, before long work, if `path` cannot be created: its folder must exist and be writable.
void check_output_path(const std::string& path);

// An output file written under a temporary name and moved into place by commit(): data fsync'ed, renamed,
// folder fsync'ed. On Linux the temporary file is unnamed (O_TMPFILE) until commit(), so a process killed
// mid-write (kill -9) leaves nothing behind; elsewhere it is "<path>.tmp.<pid>", removed on failure.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // creates the temporary file; throws Error
  ~AtomicFile();                                 // not committed: the temporary file is discarded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  std::FILE* fp() const { return fp_; }
  const std::string& path() const { return path_; }
  void commit();

 private:
  std::string path_, tmp_;  // tmp_ empty: unnamed O_TMPFILE
  std::FILE* fp_ = nullptr;
  int fd_ = -1;
  bool done_ = false;
};

}  // namespace ctrust
