// Shared pieces of the command-line front end: options every command has, output helpers.
#pragma once
#include <chrono>
#include <memory>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "pipeline/worker.h"
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/split.h"
#include "base/progress.h"  // ProgressLine: the progress of every long command

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

// check_output_path (base/file.h): an output file's folder must exist and be writable, checked before any model
// is loaded.

// Ctrl-C during long commands that store as they go (eval, trust): the first Ctrl-C asks the command to stop
// at its next commit (a few seconds at most); the command then throws Interrupted, whose text says how many
// items are saved and that the same command resumes; main() prints it and exits with 130. A second Ctrl-C
// stops at once (the default action). `compress` stops after its current tensor and writes nothing. Installing the
// handler also undoes the SIG_IGN a non-interactive shell gives background jobs (`cmd &` in a script).
void catch_interrupt(const char* stop_message = "\nctrust: stopping at the next commit (Ctrl-C again stops at once)\n");
bool interrupted();
struct Interrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void print_json(const nlohmann::json& j);

// A command that ends with a status other than 0 without an error (ctrust gate: 1 = over budget) throws
// ExitStatus; main() returns its code. error_exit_status() is the status main() returns for an error (1; ctrust
// gate sets 2 so that a CI job can tell "over budget" from "could not check").
struct ExitStatus {
  int code;
};
int& error_exit_status();

// Registration functions, one per command family (each file in src/cli/ registers its commands).
void register_model_commands(CLI::App& app);  // info, tokenize, generate, perplexity, convert
void register_eval_commands(CLI::App& app);   // eval, runs, compare, kld
void register_compress_commands(CLI::App& app);  // compress
void register_trust_commands(CLI::App& app);     // trust, trust-report (trust_cmds.cpp)
void register_toxicity_commands(CLI::App& app);  // toxicity-eval (toxicity_cmds.cpp)
void register_gate_commands(CLI::App& app);      // gate (gate_cmds.cpp)
void register_report_commands(CLI::App& app);    // report (report_cmds.cpp)
// ctrust compare on two trust runs (trust_cmds.cpp): prints and returns true if the runs are trust runs;
// false if neither is (the caller compares eval runs); Error if only one is.
bool try_trust_compare(const std::string& db, const std::string& a, const std::string& b, bool json, bool csv);

using ctrust::split_list;  // base/split.h

}  // namespace ctrust::cli

namespace ctrust {
class OpenAIBackend;
class Tokenizer;
struct Model;
}  // namespace ctrust

namespace ctrust::cli {

// --backend openai --base-url URL [--api-key-env VAR] --served-model NAME [--max-inflight N] [--timeout S]
// [--retries N] on eval, trust and kld (docs/remote.md).
// The --db option's help, every command.
inline constexpr const char* kDbHelp =
    "Results database: a SQLite file (default ctrust.db) or postgresql://user@host/db (docs/cluster.md)";

// --worker, --worker-id, --lease (and for eval --unit-items): many processes on one run (docs/cluster.md).
inline void add_worker(CLI::App* c, WorkerOptions& w, bool unit_items) {
  c->add_flag("--worker", w.on,
              "One of several processes working on the run (any machines, one shared --db): claim units of the run "
              "with leases until every unit is done (docs/cluster.md)");
  c->add_option("--worker-id", w.id, "This worker's name in the store (default: host:pid:start time)");
  c->add_option("--lease", w.lease_seconds,
                "Seconds a claimed unit stays this worker's without renewal (renewed every third of it; default 60): "
                "a dead worker's unit is taken over after this")
      ->check(CLI::Range(0.1, 86400.0));
  c->add_option("--max-attempts", w.max_attempts,
                "A unit claimed this many times (its workers died or lost their leases) is not claimed again: the "
                "workers finish the rest and then stop with an error naming it (default 5; 0 = no limit)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  if (unit_items)
    c->add_option("--unit-items", w.unit_items, "Items per unit of a --worker run (default 100)")
        ->check(CLI::Range(1, 1 << 30));
}

struct RemoteArgs {
  std::string backend = "local", base_url, api_key_env, served_model, logprobs_mode;
  int max_inflight = 4, retries = 4;
  double timeout = 600;
  bool on() const { return backend == "openai"; }
};
void add_remote(CLI::App* app, RemoteArgs& r);
// Connects (probe: the served model exists, which log-probability mode the server has), then checks the server's
// tokenizer against the local one on a sample; one line on stderr says what was found.
std::unique_ptr<OpenAIBackend> open_backend(const RemoteArgs& r, const Tokenizer& tok, bool needs_logprobs);
// The model that supplies the tokenizer (and the context length, chat template) of a remote run: --tokenizer FILE
// (the served model's GGUF file or Hugging Face folder), loaded without dequantizing; -m must be empty.
std::unique_ptr<Model> open_tokenizer_model(const std::string& cmd, const std::string& tokenizer,
                                            const std::string& model);

}  // namespace ctrust::cli
