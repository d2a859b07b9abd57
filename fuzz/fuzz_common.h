// Shared by the libFuzzer harnesses (see docs/fuzzing.md). ctrust's readers take paths, so each input is
// written to a per-process scratch file first. Only ctrust::Error is an expected outcome: any other
// exception, a crash, a sanitizer report, a timeout or an out-of-memory is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/error.h"

namespace ctrust::fuzz {

// A scratch folder of this process (in /dev/shm when there is one: no disk writes per input), removed at exit.
struct Scratch {
  std::string dir;
  Scratch() {
    const std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    dir = base + "/ctrust-fuzz-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};
inline const std::string& scratch() {
  static Scratch s;
  return s.dir;
}

inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string p = scratch() + "/" + name;
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return p;
}

inline void write_text(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

// Runs f; a ctrust::Error (a clean one-line error for the user) is fine.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    const std::string m = e.what();
    if (m.empty()) std::abort();  // an error must say something
  }
}

}  // namespace ctrust::fuzz
