// Shared pieces of the command-line front end: options every command has, output helpers.
#pragma once
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace ctrust::cli {

struct Common {
  int threads = 0;  // 0 = all cores
  bool json = false;
};

// Adds -t/--threads and --json to a subcommand.
inline void add_common(CLI::App* app, Common& c) {
  app->add_option("-t,--threads", c.threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  app->add_flag("--json", c.json, "Machine-readable JSON on stdout");
}

// --compute native|f32 on a model-loading command, with the command's default (docs/architecture.md,
// "Compute modes": native for generate/trust, f32 for eval/perplexity/kld).
inline void add_compute(CLI::App* app, std::string& v, const char* def) {
  v = def;
  app->add_option("--compute", v,
                  std::string("Weights: native (kept in their file type, 8-bit activations as llama.cpp) or f32 "
                              "(dequantized, exact); default ") + def)
      ->check(CLI::IsMember({"native", "f32"}));
}

void apply_threads(const Common& c);
void print_json(const nlohmann::json& j);

// Registration functions, one per command family (each file in src/cli/ registers its commands).
void register_model_commands(CLI::App& app);  // info, tokenize, generate, perplexity, convert
void register_eval_commands(CLI::App& app);   // eval, runs, compare, kld
void register_compress_commands(CLI::App& app);  // compress
void register_trust_commands(CLI::App& app);     // trust, trust-report (trust_cmds.cpp)
// ctrust compare on two trust runs (trust_cmds.cpp): prints and returns true if the runs are trust runs;
// false if neither is (the caller compares eval runs); Error if only one is.
bool try_trust_compare(const std::string& db, const std::string& a, const std::string& b, bool json, bool csv);

// "a,b,,c" -> {"a", "b", "c"} (option values such as --tasks and --perspectives).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace ctrust::cli
