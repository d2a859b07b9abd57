// Where tests find the real models and data. Nothing is copied into the repository:
// ../shared sits beside the project root; SmolLM2-135M is fetched by scripts/setup.sh into the cache.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "base/paths.h"

namespace ctrust::test {

inline std::string source_dir() { return ctrust::source_dir(); }
inline std::string shared_dir() {
  const char* e = std::getenv("CTRUST_SHARED");
  return e ? e : source_dir() + "/../shared";
}
inline std::string cache_dir() {
  if (const char* e = std::getenv("CTRUST_CACHE")) return e;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.cache/ctrust";
}
inline std::string golden_dir() { return source_dir() + "/tests/golden"; }
inline std::string stories_gguf() { return shared_dir() + "/models/stories260K/stories260K-f32.gguf"; }
inline std::string stories_bin() { return shared_dir() + "/models/stories260K/stories260K.bin"; }
inline std::string stories_tok() { return shared_dir() + "/models/stories260K/tok512.bin"; }
inline std::string smollm_q4_1() { return cache_dir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"; }
// F32 copy of SmolLM2 written by ctrust's own GGUF writer (scripts/setup.sh makes it).
inline std::string smollm_f32() { return cache_dir() + "/models/SmolLM2-135M-Instruct.F32.gguf"; }
// The optional Qwen2.5-Coder-Instruct Q4_K_M files (bash scripts/fetch_models.sh qwen0.5b qwen1.5b).
// size: "0.5b" or "1.5b". Tests that need them skip with a message naming the fetch command.
inline std::string qwen_q4_k_m(const std::string& size) {
  return cache_dir() + "/models/qwen2.5-coder-" + size + "-instruct-q4_k_m.gguf";
}
#define CTRUST_REQUIRE_QWEN(size)                                                                          \
  if (!std::filesystem::exists(ctrust::test::qwen_q4_k_m(size)))                                          \
  GTEST_SKIP() << "optional model " << ctrust::test::qwen_q4_k_m(size)                                   \
               << " is absent (fetch it with: bash scripts/fetch_models.sh qwen" << size << ")"

// The optional Gemma-3-270M base Q4_K_M file (bash scripts/fetch_models.sh gemma3-270m). Tests that need it
// skip with a message naming the fetch command.
inline std::string gemma3_q4_k_m() { return cache_dir() + "/models/gemma-3-270m-q4_k_m.gguf"; }
#define CTRUST_REQUIRE_GEMMA3()                                                                             \
  if (!std::filesystem::exists(ctrust::test::gemma3_q4_k_m()))                                             \
  GTEST_SKIP() << "optional model " << ctrust::test::gemma3_q4_k_m()                                      \
               << " is absent (fetch it with: bash scripts/fetch_models.sh gemma3-270m)"

// A scratch folder for files a test writes, one per checkout: test runs of several checkouts on one machine
// must not share databases (two runs writing the same trust_cli.db mixed their records).
// Under ctest each test also gets its own subfolder (CTRUST_TEST_SCRATCH, set per test by CMakeLists.txt), so
// tests that ctest runs at the same time (-j2 in scripts/test.sh) never share a file name.
inline std::string scratch_dir() {
  auto p = std::filesystem::temp_directory_path() /
           ("ctrust-tests-" + std::to_string(std::hash<std::string>{}(source_dir()) % 1000000007ull));
  if (const char* t = std::getenv("CTRUST_TEST_SCRATCH"); t && *t) p /= t;
  std::filesystem::create_directories(p);
  return p.string();
}

}  // namespace ctrust::test
