// ctrust: one thin front end over the library. Every command takes -t THREADS and --json.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <omp.h>
#include <signal.h>
#include <unistd.h>

#include "base/error.h"
#include "base/wait_policy.h"
#include "cli/common.h"
#include "ops/linear.h"
#include "ops/qmatmul.h"

namespace ctrust::cli {

void apply_threads(const Common& c) {
  if (c.threads > 0) omp_set_num_threads(c.threads);
}

// Invalid UTF-8 in a string (a byte-fallback token's piece, a model's partial output) is shown as U+FFFD, not an error.
void print_json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

namespace {
volatile sig_atomic_t g_interrupted = 0;
const char* g_stop_message = "";
void on_sigint(int) {
  g_interrupted = 1;
  ssize_t n = write(STDERR_FILENO, g_stop_message, std::strlen(g_stop_message));
  (void)n;
}
}  // namespace

void catch_interrupt(const char* stop_message) {
  g_stop_message = stop_message;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // the second Ctrl-C gets the default action
  sigaction(SIGINT, &sa, nullptr);
}
bool interrupted() { return g_interrupted != 0; }
int& error_exit_status() {
  static int status = 1;
  return status;
}

}  // namespace ctrust::cli

namespace {

// libgomp (and OpenBLAS, which runs on its threads) reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when the
// library is loaded -- before main(). Its default spins for up to ~300k iterations at every barrier; on a busy
// 2-core machine a spinning thread takes the core its partner needs, and `generate -t 2` ran 8x slower than
// `-t 1`; on a quiet one a sleeping thread's wake-up at each of a decode step's ~200 barriers made `-t 2` 1.5-4x
// slower than a short spin (docs/benchmarks.md, "Threads on a busy machine"). So unless the user chose a policy,
// ctrust re-executes itself once with the choice of choose_wait_policy (base/wait_policy.h): a short spin on a
// nearly idle machine, OMP_WAIT_POLICY=passive otherwise. CTRUST_NO_REEXEC=1 skips this (debugging).
void ensure_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || std::getenv("CTRUST_NO_REEXEC")) return;
  const ctrust::WaitChoice w = ctrust::choose_wait_policy(ctrust::read_load1(), ctrust::usable_cpus());
  if (setenv(w.var, w.value, 1) != 0) return;
  execv("/proc/self/exe", argv);
  // exec failed (no /proc): carry on with libgomp's default; the variable is still set for child processes.
}

}  // namespace

int main(int argc, char** argv) {
  ensure_wait_policy(argv);
  CLI::App app{"ctrust: does a compressed LLM still behave like the original, and is it still trustworthy?"};
  // The version, and the two things that set the speed (and f32's last bits) of this machine's arithmetic.
  app.set_version_flag("--version", std::string("ctrust ") + CTRUST_VERSION + " (kernels " +
                                        ctrust::kernel_isa_name(ctrust::kernel_isa()) + ", OpenBLAS core " +
                                        ctrust::blas_core_name() + ")");
  app.require_subcommand(1);
  ctrust::cli::register_model_commands(app);
  ctrust::cli::register_eval_commands(app);
  ctrust::cli::register_compress_commands(app);
  ctrust::cli::register_trust_commands(app);
  ctrust::cli::register_toxicity_commands(app);
  ctrust::cli::register_gate_commands(app);
  ctrust::cli::register_report_commands(app);
  const int& err = ctrust::cli::error_exit_status();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ctrust::cli::ExitStatus& e) {
    return e.code;
  } catch (const ctrust::cli::Interrupted& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "ctrust: %s\n", e.what());
    return 130;
  } catch (const ctrust::Error& e) {
    std::fprintf(stderr, "ctrust: error: %s\n", e.what());
    return err;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ctrust: error: out of memory\n");
    return err;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctrust: error: %s\n", e.what());
    return err;
  }
  return 0;
}
