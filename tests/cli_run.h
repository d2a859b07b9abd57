// Runs the ctrust command-line program from a test: one helper for every CLI test file.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "test_paths.h"

namespace ctrust::test {

// The binary under test: $CTRUST_BIN (set by CTest), else build/ctrust of the checkout.
inline std::string ctrust_bin() {
  if (const char* e = std::getenv("CTRUST_BIN")) return e;
  return source_dir() + "/build/ctrust";
}

struct CliResult {
  int status = -1;
  std::string out, err;
};

// Runs `env_prefix ctrust args` through the shell (no quoting: test arguments have no spaces); stdout and stderr
// captured apart (stderr through scratch file `<tag>_stderr.txt`), or together when merge is set.
inline CliResult run_ctrust(const std::string& args, const std::string& tag, const std::string& env_prefix = "",
                            bool merge = false) {
  const std::string err_file = scratch_dir() + "/" + tag + "_stderr.txt";
  const std::string cmd = env_prefix + " " + ctrust_bin() + " " + args + (merge ? " 2>&1" : " 2>" + err_file);
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (!merge) {
    std::ifstream e(err_file);
    r.err.assign(std::istreambuf_iterator<char>(e), {});
  }
  return r;
}

}  // namespace ctrust::test
