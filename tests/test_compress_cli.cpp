// `ctrust compress` on bad input (issue 4, item 8): every case exits non-zero with one "ctrust: error:" line
// naming the problem and writes no output file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>

#include "test_paths.h"

namespace fs = std::filesystem;

namespace {

struct CliRun {
  int status = -1;
  std::string err;
};

CliRun run_ctrust(const std::string& args) {
  const char* bin = std::getenv("CTRUST_BIN");
  const std::string exe = bin ? bin : ctrust::test::source_dir() + "/build/ctrust";
  const std::string errf = ctrust::test::scratch_dir() + "/cli_err.txt";
  const std::string cmd = exe + " " + args + " > /dev/null 2> " + errf;
  CliRun r;
  const int st = std::system(cmd.c_str());
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream in(errf);
  std::getline(in, r.err, '\0');
  return r;
}

}  // namespace

TEST(CompressCli, BadInputErrorsBeforeWork) {
  const char* bin = std::getenv("CTRUST_BIN");
  if (!bin && !fs::exists(ctrust::test::source_dir() + "/build/ctrust")) GTEST_SKIP() << "no ctrust binary";
  const std::string model = ctrust::test::stories_gguf();
  const std::string out = ctrust::test::scratch_dir() + "/cli_bad.gguf";
  const std::string small = ctrust::test::scratch_dir() + "/cli_short_calib.txt";
  { std::ofstream(small) << "One day, a little bird sang.\n"; }
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"--method rtn --bits 1", "bits must be 2..8"},
      {"--method gptq --bits 9", "bits must be 2..8"},
      {"--method rtn --bits 4 --group-size 48", "group size 48 does not divide the input dimension"},
      {"--method gptq --group-size 32", "group size 32 does not divide the input dimension 172"},
      {"--method magnitude --sparsity 1", "sparsity must be in [0, 1)"},
      {"--method wanda --sparsity -0.1", "sparsity must be in [0, 1)"},
      {"--method sparsegpt --nm 4:2", "N:M needs N <= M"},
      {"--method sparsegpt --nm 2:3", "M = 3 does not divide"},
      {"--method gptq --group-size 0 --calib " + small, "fewer than N x L"},
      {"--method gptq --group-size 0 --only token_embd", "needs the inputs of a transformer-block Linear"},
      {"--method smoothquant --alpha 2", "alpha must be in [0, 1]"},
      {"--method int8 --only output", "changes how a transformer-block Linear runs"},
      {"--method rtn --sym --grid minmax", "minmax grid is asymmetric"},
      {"--method rtn --grid zero", "unknown quantization grid 'zero'"},
      {"--method wanda --grid minmax", "--grid applies to rtn, gptq and awq only"},
      {"--method bogus", "unknown compression method"},
      {"--method sparsegpt --sparsity 2:3", "M = 3 does not divide"},
      {"--method magnitude --sparsity half", "expected a fraction such as 0.5 or N:M"},
      {"--method sparsegpt --sparsity 2:4 --bits 4 --group-size 48", "group size 48 does not divide"},
      {"--bits 4", "--method (or --recipe FILE) is required"},
      {"--recipe " + small, "not valid JSON"},
  };
  for (const Case& c : cases) {
    fs::remove(out);
    CliRun r = run_ctrust("compress -m " + model + " -o " + out + " " + c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.err.find("ctrust: error:"), std::string::npos) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << ": " << r.err;
    EXPECT_FALSE(fs::exists(out)) << c.args;
  }
}
