// ctrust: one thin front end over the library. Every command takes -t THREADS and --json.
#include <cstdio>
#include <omp.h>

#include "base/error.h"
#include "cli/common.h"

namespace ctrust::cli {

void apply_threads(const Common& c) {
  if (c.threads > 0) omp_set_num_threads(c.threads);
}

void print_json(const nlohmann::json& j) { std::printf("%s\n", j.dump(2).c_str()); }

}  // namespace ctrust::cli

int main(int argc, char** argv) {
  CLI::App app{"ctrust: does a compressed LLM still behave like the original, and is it still trustworthy?"};
  app.set_version_flag("--version", std::string("ctrust ") + CTRUST_VERSION);
  app.require_subcommand(1);
  ctrust::cli::register_model_commands(app);
  ctrust::cli::register_eval_commands(app);
  ctrust::cli::register_compress_commands(app);
  ctrust::cli::register_trust_commands(app);
  ctrust::cli::register_toxicity_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ctrust::Error& e) {
    std::fprintf(stderr, "ctrust: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ctrust: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctrust: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
