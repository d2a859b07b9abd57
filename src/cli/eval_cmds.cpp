// ctrust eval | runs | compare | kld
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <unistd.h>

#include "base/error.h"
#include "backend/openai.h"
#include "base/file.h"
#include "cli/common.h"
#include "eval/kld.h"
#include "eval/remote_score.h"
#include "model/model.h"
#include "report/eval_text.h"

namespace ctrust::cli {
namespace {

using json = nlohmann::json;

struct EvalArgs {
  std::string model, tokenizer, tasks, name, db = "ctrust.db", compute = "f32", sample = "stratified";
  int limit = 0, fewshot = -1, ctx = 2048;
  uint64_t seed = 0;
  RemoteArgs remote;
  WorkerOptions worker;
};


void cmd_eval(const EvalArgs& a, const Common& c) {
  // Everything that can be checked without the model is checked first: the task names (or declaration files),
  // the model path, and that the results database can be written (opened, and created if new, as eval will).
  std::vector<std::string> tasks = split_list(a.tasks);
  if (tasks.empty()) fail("--tasks: give at least one task");
  for (const std::string& t : tasks) load_task_spec(t);
  if (!a.remote.on() && a.model.empty()) fail("eval: -m/--model is required (or --backend openai)");
  if (!a.remote.on() && !std::filesystem::exists(a.model)) fail("{}: model not found", a.model);
  { Store probe(a.db); }
  std::unique_ptr<Model> model;
  std::unique_ptr<OpenAIBackend> backend;
  if (a.remote.on()) {
    model = open_tokenizer_model("eval", a.tokenizer, a.model);
    backend = open_backend(a.remote, model->tok, /*needs_logprobs=*/true);
  } else {
    model = open_model(a.model, LoadOptions{a.tokenizer, compute_mode_from_name(a.compute)});
  }
  EvalOptions opt;
  opt.remote = backend.get();
  opt.db = a.db;
  opt.name = a.name;
  opt.limit = a.limit;
  opt.limit_mode = a.sample == "first" ? LimitMode::First : LimitMode::Stratified;
  opt.seed = a.seed;
  opt.num_fewshot = a.fewshot;
  opt.max_ctx = a.ctx;
  opt.progress = true;  // stderr: redrawn on a terminal, a plain line every 10 s otherwise (stdout stays clean)
  opt.worker = a.worker;
  catch_interrupt();
  // One worker of several (--worker) with several tasks: a first pass over the tasks never waits for a unit another
  // worker holds (it goes on with the next task's units); a second pass then waits for each task that was left
  // incomplete. No worker idles at the end of each task while later tasks have free units; only the last units of
  // the whole call are waited for. The results are printed once every task is complete, in the order given.
  const bool two_passes = a.worker.on && tasks.size() > 1;
  std::vector<std::optional<EvalResult>> results(tasks.size());
  for (int pass = two_passes ? 0 : 1; pass < 2; pass++) {
    opt.worker.wait = pass == 1;
    for (size_t i = 0; i < tasks.size(); i++) {
      if (results[i] && results[i]->complete) continue;
      const std::string& t = tasks[i];
      opt.on_commit = [&](int64_t done, int64_t total) {
        if (interrupted())
          throw Interrupted(fmt::format("interrupted: {} of {} items of task {} are saved in {}{}; the same command "
                                        "resumes from there",
                                        done, total, t, a.db,
                                        a.worker.on ? "" : " (tasks before it are complete)"));
      };
      results[i] = eval_run(*model, a.remote.on() ? a.remote.served_model : a.model, t, opt);
      if (!two_passes && !c.json) fmt::print("{}", eval_result_text(*results[i]));  // each task as it completes
    }
  }
  json all = json::array();
  for (const auto& r : results) {
    if (c.json) all.push_back(r->to_json());
    else if (two_passes) fmt::print("{}", eval_result_text(*r));
  }
  if (c.json) print_json({{"runs", all}});
}

void cmd_runs(const std::string& db, const Common& c) {
  std::vector<RunInfo> runs = list_runs(db);
  if (c.json) {
    print_json(to_json(runs));
    return;
  }
  fmt::print("{}", runs_text(runs));
}

void cmd_compare(const std::string& db, const std::string& a, const std::string& b, const Common& c, bool csv) {
  if (try_trust_compare(db, a, b, c.json, csv)) return;  // trust runs: trust_cmds.cpp
  Comparison cmp = compare_runs(db, a, b);
  if (c.json) {
    print_json(cmp.to_json());
    return;
  }
  if (csv) {
    fmt::print("{}", compare_csv(cmp));
    // Notes (different item sets compared on their intersection, ...) go to stderr to keep the CSV clean.
    fmt::print(stderr, "{}", compare_notes_text(cmp));
    return;
  }
  fmt::print("{}", compare_text(cmp, a, b));
}

struct KldArgs {
  std::string base, model, tokenizer, file, save_base, load_base, save_tokens, compute = "f32";
  std::vector<std::string> paired;
  int ctx = 512, chunks = -1, top_k = 0;
  RemoteArgs remote;
};

// kld --paired A B: two --save-tokens files compared token by token (no model is loaded).
void cmd_kld_paired(const KldArgs& a, const Common& c) {
  if (!a.base.empty() || !a.model.empty() || !a.load_base.empty() || !a.save_base.empty() || !a.save_tokens.empty() ||
      !a.file.empty() || a.remote.on())
    fail("kld: --paired compares two --save-tokens files; it takes no models, text or baseline");
  const KldPaired p = kld_paired(load_kld_tokens(a.paired[0]), load_kld_tokens(a.paired[1]));
  if (c.json) {
    nlohmann::json j = p.to_json();
    j["file_a"] = a.paired[0];
    j["file_b"] = a.paired[1];
    print_json(j);
  } else {
    fmt::print("{}", kld_paired_text(p, a.paired[0], a.paired[1]));
  }
}

// "[3/40] chunks, 0.52 chunks/s, ETA 71 s" on stderr (base/progress.h).
std::function<void(int, int)> chunk_progress() {
  auto line = std::make_shared<ProgressLine>(10);
  return [line](int done, int total) {
    line->show(fmt::format("[{}/{}] chunks{}", done, total, rate_eta(done, total - done, line->seconds(), "chunks")),
               done == total);
  };
}

void cmd_kld(const KldArgs& a, const Common& c) {
  if (!a.paired.empty()) return cmd_kld_paired(a, c);
  KldRunOptions o;
  o.base = a.base;
  o.model = a.model;
  o.tokenizer = a.tokenizer;
  o.file = a.file;
  o.save_base = a.save_base;
  o.load_base = a.load_base;
  o.save_tokens = a.save_tokens;
  o.compute = a.compute;
  o.ctx = a.ctx;
  o.chunks = a.chunks;
  o.top_k = a.top_k;
  o.progress = chunk_progress;  // progress and notices on stderr; --json output goes to stdout
  o.notice = [](const std::string& s) { fmt::print(stderr, "{}", s); };
  if (a.remote.on()) {
    o.served_model = a.remote.served_model;
    o.open_tokenizer = [&] { return open_tokenizer_model("kld", a.tokenizer, ""); };
    o.connect = [&](const Tokenizer& tok) { return open_backend(a.remote, tok, /*needs_logprobs=*/true); };
  }
  const KldRunResult r = kld_run(o, [&](const KldSaved& s) {
    // --json: the saved baseline's document, except beside a served base's comparison (only the statistics).
    if (!c.json) fmt::print("{}", kld_saved_text(s));
    else if (!s.served || a.model.empty()) print_json(s.to_json());
  });
  if (!r.stats) return;
  if (c.json) print_json(r.to_json());
  else fmt::print("{}", kld_text(*r.stats, r.base, r.model));
}

struct ImportArgs {
  std::vector<std::string> files;
  std::string task, name, model, db = "ctrust.db";
};

void cmd_import(const ImportArgs& a, const Common& c) {
  LmEvalImportOptions o;
  o.db = a.db;
  o.name = a.name;
  o.task = a.task;
  o.model = a.model;
  LmEvalImport r = import_lm_eval(a.files, o);
  if (c.json) {
    print_json(r.to_json());
    return;
  }
  fmt::print("{}", lmeval_import_text(r, a.files.size(), summarize_run(a.db, r.run)));
}

void cmd_export(const std::string& db, const std::string& run, const std::string& format, const std::string& out,
                const Common& c) {
  if (format != "lm-eval") fail("export: unknown --format '{}' (known: lm-eval)", format);
  const std::vector<std::string> files = export_lm_eval(db, run, out);
  if (c.json) {
    print_json({{"run", run}, {"format", format}, {"files", files}});
    return;
  }
  for (const std::string& f : files) fmt::print("wrote {}\n", f);
}

}  // namespace

void register_eval_commands(CLI::App& app) {
  {
    static EvalArgs a;
    static Common o;
    auto* c = app.add_subcommand("eval", "Evaluate a model on tasks; every item goes to the results store");
    c->add_option("-m,--model", a.model, "Model file or folder");
    c->add_option("--tokenizer", a.tokenizer,
                  "llama2.c tokenizer .bin; with --backend openai: the served model's GGUF file or HF folder");
    add_remote(c, a.remote);
    c->add_option("--tasks", a.tasks, "Comma-separated task names or declaration files (tasks/*.json)")->required();
    c->add_option("--limit", a.limit,
                  "N items of each (sub)task: a seeded sample stratified by the gold answer, nested (a larger N "
                  "extends a smaller one); default: all")
        ->check(CLI::Range(1, 1 << 30));
    c->add_option("--sample", a.sample,
                  "How --limit picks items: stratified (default) or first (the first N, as lm-eval's --limit)")
        ->check(CLI::IsMember({"stratified", "first"}));
    c->add_option("--seed", a.seed, "Seed of the stratified sample (default 0)");
    c->add_option("--fewshot", a.fewshot, "Few-shot examples (overrides the task)")->check(CLI::Range(0, 64));
    c->add_option("--name", a.name, "Run name (default: the model file's name)");
    c->add_option("--db", a.db, kDbHelp);
    c->add_option("--ctx", a.ctx, "Context length for scoring")->check(CLI::Range(16, 1 << 20));
    add_worker(c, a.worker, true);
    add_compute(c, a.compute, "f32");
    add_common(c, o);
    c->callback([] { apply_threads(o); cmd_eval(a, o); });
  }
  {
    static std::string db = "ctrust.db";
    static Common o;
    auto* c = app.add_subcommand("runs", "List the runs in the results store");
    c->add_option("--db", db, kDbHelp);
    add_common(c, o);
    c->callback([] { cmd_runs(db, o); });
  }
  {
    static std::string db = "ctrust.db", a, b;
    static bool csv = false;
    static Common o;
    auto* c = app.add_subcommand("compare", "Compare two stored runs item by item (flips, KL, McNemar, CIs)");
    c->add_option("run_a", a, "Baseline run: id or name")->required();
    c->add_option("run_b", b, "Candidate run: id or name")->required();
    c->add_option("--db", db, kDbHelp);
    c->add_flag("--csv", csv, "CSV on stdout");
    add_common(c, o);
    c->callback([] { cmd_compare(db, a, b, o, csv); });
  }
  {
    static KldArgs a;
    static Common o;
    auto* c = app.add_subcommand("kld", "Token-level KL divergence of a model against a base model on a text "
                                        "(llama.cpp --kl-divergence statistics)");
    c->add_option("--base", a.base, "Base model (both models run in lockstep)");
    c->add_option("-m,--model", a.model, "Model to compare");
    c->add_option("-f,--file", a.file, "Text file");
    c->add_option("--ctx", a.ctx, "Tokens per chunk")->check(CLI::Range(4, 1 << 20));
    c->add_option("--chunks", a.chunks, "At most this many chunks")->check(CLI::Range(1, 1 << 30));
    c->add_option("--top-k", a.top_k,
                  "Saved baseline: log-probs kept per token (default 256); lockstep: also report the top-k "
                  "approximation's error")->check(CLI::Range(1, 1 << 24));
    c->add_option("--save-base", a.save_base, "Write a compact baseline (top-k log-probs + rest mass) of --base");
    c->add_option("--load-base", a.load_base, "Compare -m against a baseline written by --save-base");
    c->add_option("--save-tokens", a.save_tokens,
                  "Write the per-token results (KL, NLLs, same top) of the comparison, for --paired");
    c->add_option("--paired", a.paired,
                  "Compare two --save-tokens files of runs on the same tokens and base: the KL/NLL/same-top "
                  "differences B - A with token and chunk standard errors and a chunk bootstrap interval")
        ->expected(2)
        ->check(CLI::ExistingFile);
    c->add_option("--tokenizer", a.tokenizer, "llama2.c tokenizer .bin (both models)");
    add_remote(c, a.remote);
    add_compute(c, a.compute, "f32");
    add_common(c, o);
    c->callback([] { apply_threads(o); cmd_kld(a, o); });
  }
  {
    static ImportArgs a;
    static Common o;
    auto* c = app.add_subcommand("import-lm-eval",
                                 "Import lm-evaluation-harness --log_samples files (samples_<task>_<date>.jsonl) as a run");
    c->add_option("files", a.files, "Samples files (MMLU: one per subject; the subject comes from the file name)")
        ->required()
        ->check(CLI::ExistingFile);
    c->add_option("--task", a.task, "ctrust task the run belongs to (arc_easy, hellaswag, mmlu, ...)")->required();
    c->add_option("--name", a.name, "Run name")->required();
    c->add_option("--model", a.model, "Model recorded with the run (default: the first file)");
    c->add_option("--db", a.db, kDbHelp);
    add_common(c, o);
    c->callback([] { cmd_import(a, o); });
  }
  {
    static std::string db = "ctrust.db", run, format = "lm-eval", out;
    static Common o;
    auto* c = app.add_subcommand("export", "Export a run's per-item results (lm-evaluation-harness samples JSONL)");
    c->add_option("run", run, "Run id or name")->required();
    c->add_option("--format", format, "Output format: lm-eval");
    c->add_option("-o,--output", out, "File (one task) or folder (several tasks/subtasks)")->required();
    c->add_option("--db", db, kDbHelp);
    add_common(c, o);
    c->callback([] { cmd_export(db, run, format, out, o); });
  }
}

}  // namespace ctrust::cli
