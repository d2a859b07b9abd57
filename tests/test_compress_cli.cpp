// `ctrust compress` on bad input (issue 4, item 8): every case exits non-zero with one "ctrust: error:" line
// naming the problem and writes no output file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

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

// Ctrl-C during `compress`, in a process started the way a script starts a background job (SIGINT ignored before
// exec): the command stops at the next tensor, exits with 130, says that nothing was written, and leaves no file.
TEST(CompressCli, CtrlCStopsWithoutWritingEvenFromABackgroundJob) {
  const char* bin = std::getenv("CTRUST_BIN");
  const std::string exe = bin ? bin : ctrust::test::source_dir() + "/build/ctrust";
  if (!fs::exists(exe)) GTEST_SKIP() << "no ctrust binary";
  if (!fs::exists(ctrust::test::smollm_f32())) GTEST_SKIP() << "SmolLM2 F32 not set up (scripts/setup.sh)";
  const std::string out = ctrust::test::scratch_dir() + "/cli_sigint.gguf";
  const std::string err_file = ctrust::test::scratch_dir() + "/cli_sigint_compress.txt";
  fs::remove(out);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGINT, SIG_IGN);  // what `cmd &` in a non-interactive shell does
    FILE* e = std::freopen(err_file.c_str(), "w", stderr);
    (void)e;
    execl(exe.c_str(), exe.c_str(), "compress", "-m", ctrust::test::smollm_f32().c_str(), "--method", "gptq",
          "--bits", "4", "--group-size", "64", "-t", "1", "-o", out.c_str(), (char*)nullptr);
    _exit(127);
  }
  // Send Ctrl-C once the process catches SIGINT (bit 2 of SigCgt in /proc/PID/status; after a re-exec for the wait
  // policy too), so the test does not depend on how fast the machine starts it. A binary that never catches it gets
  // the signal after 30 s, ignores it, and the assertions below fail.
  const auto catches_sigint = [&] {
    std::ifstream st("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(st, line);)
      if (line.rfind("SigCgt:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (SIGINT - 1)) & 1;
    return 0ull;
  };
  for (int i = 0; i < 300 && !catches_sigint(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  kill(pid, SIGINT);
  int st = 0;
  waitpid(pid, &st, 0);
  std::ifstream ef(err_file);
  const std::string err((std::istreambuf_iterator<char>(ef)), {});
  // GPTQ of SmolLM2 at one thread takes about a minute, so a 0 exit means the signal was ignored.
  ASSERT_TRUE(WIFEXITED(st)) << "killed by the signal instead of stopping";
  EXPECT_EQ(WEXITSTATUS(st), 130) << err;
  EXPECT_NE(err.find("interrupted: nothing was written to " + out), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
}
