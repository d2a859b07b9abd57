// ctrust eval | runs | compare | kld
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <unistd.h>

#include "base/error.h"
#include "backend/openai.h"
#include "base/file.h"
#include "cli/common.h"
#include "eval/kld.h"
#include "eval/remote_score.h"
#include "model/model.h"
#include "report/tables.h"
#include "store/lmeval.h"
#include "store/runs.h"

namespace ctrust::cli {
namespace {

using json = nlohmann::json;

std::string pct(double x) { return fmt::format("{:.2f}", 100.0 * x); }

// p-values with a fixed number of decimals (1.0000, 0.5000, 0.0391), "<0.0001" below that.
std::string p_value(double p) { return p < 1e-4 ? std::string("<0.0001") : fmt::format("{:.4f}", p); }

// What the columns of `ctrust compare` mean (printed under the table).
constexpr const char* kCompareLegend =
    "n: items in both runs; acc: accuracy; Δacc = acc_B - acc_A with a 95% bootstrap interval (1000 resamples)\n"
    "c2w / w2c: items correct in A and wrong in B / wrong in A and correct in B\n"
    "flips%: (c2w + w2c) / n with a 95% bootstrap interval; allfl%: items whose chosen answer changed, "
    "also from one wrong answer to another\n"
    "agree%: items with the same chosen answer; KL(A‖B): mean KL divergence (nats) between the softmaxes of "
    "the choices' log-likelihoods\n"
    "McNemar: exact two-sided p-value of c2w against w2c (small: B's accuracy differs from A's beyond chance)\n";

struct EvalArgs {
  std::string model, tokenizer, tasks, name, db = "ctrust.db", compute = "f32", sample = "stratified";
  int limit = 0, fewshot = -1, ctx = 2048;
  uint64_t seed = 0;
  RemoteArgs remote;
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
  catch_interrupt();
  json all = json::array();
  for (const std::string& t : tasks) {
    opt.on_commit = [&](int64_t done, int64_t total) {
      if (interrupted())
        throw Interrupted(fmt::format("interrupted: {} of {} items of task {} are saved in {} (tasks before it "
                                      "are complete); the same command resumes from there",
                                      done, total, t, a.db));
    };
    EvalResult r = eval_run(*model, a.remote.on() ? a.remote.served_model : a.model, t, opt);
    if (c.json) {
      all.push_back(r.to_json());
      continue;
    }
    fmt::print("run {} '{}' task {}: {} items ({} resumed from the store, {} scored now)\n", r.run.id, r.run.name,
               r.run.task, r.n_total, r.n_skipped, r.n_scored);
    fmt::print("  {:<40} {:>6} {:>8} {:>8} {:>8} {:>10}\n", "task", "n", "acc%", "acc_norm%", "acc_mean%", "ppl");
    for (const TaskSummary& s : r.tasks)
      fmt::print("  {:<40} {:>6} {:>8} {:>8} {:>8} {:>10}\n", s.task, s.n, pct(s.acc), pct(s.acc_norm),
                 pct(s.acc_mean), s.ppl >= 0 ? fmt::format("{:.4f}", s.ppl) : "-");
    if (!r.tasks.empty() && r.tasks[0].n_truncated > 0)
      fmt::print("  truncated: {} of {} items are longer than the context of {} tokens and were cut from the left "
                 "(lm-eval's rule)\n", r.tasks[0].n_truncated, r.tasks[0].n, r.run.settings.value("max_ctx", 0));
  }
  if (c.json) print_json({{"runs", all}});
}

void cmd_runs(const std::string& db, const Common& c) {
  std::vector<RunInfo> runs = list_runs(db);
  if (c.json) {
    print_json(to_json(runs));
    return;
  }
  // Control characters (ANSI escapes, newlines) in names stored by older versions are shown escaped.
  auto shown = [](const std::string& s) {
    std::string o;
    for (unsigned char ch : s) o += ch < 0x20 || ch == 0x7f ? fmt::format("\\x{:02x}", ch) : std::string(1, char(ch));
    return o;
  };
  fmt::print("{:>4}  {:<24} {:<16} {:>7}  {:<20} {:<22} {}\n", "id", "name", "task", "items", "created", "recipe",
             "model");
  for (const RunInfo& r : runs)
    fmt::print("{:>4}  {:<24} {:<16} {:>7}  {:<20} {:<22} {}\n", r.id, shown(r.name), shown(r.task), r.n_items,
               r.created,
               shown(recipe_label(r.settings.value("recipe", json()).is_string()
                                      ? r.settings["recipe"].get<std::string>()
                                      : std::string())),
               shown(r.model_path));
  fmt::print("recipe: how the model was made (ctrust compress writes it into the file; '-' = as downloaded); "
             "ctrust runs --json shows it in full\n");
}

void cmd_compare(const std::string& db, const std::string& a, const std::string& b, const Common& c, bool csv) {
  if (try_trust_compare(db, a, b, c.json, csv)) return;  // trust runs: trust_cmds.cpp
  Comparison cmp = compare_runs(db, a, b);
  if (c.json) {
    print_json(cmp.to_json());
    return;
  }
  if (csv) {
    fmt::print("task,n,acc_a,acc_b,delta_acc,delta_acc_lo,delta_acc_hi,c2w,w2c,flips,flips_lo,flips_hi,all_flips,"
               "agreement,kl_ab,kl_ba,mcnemar_p\n");
    for (const auto& [name, t] : cmp.tasks) {
      const PairMetrics& m = t.m;
      fmt::print("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", name, m.n, m.acc_a, m.acc_b, m.delta_acc,
                 m.delta_acc_ci[0], m.delta_acc_ci[1], m.c2w, m.w2c, m.flips, m.flips_ci[0], m.flips_ci[1],
                 m.all_flips, m.agreement, m.kl_ab, m.kl_ba, m.mcnemar_p);
    }
    // Notes (different item sets compared on their intersection, ...) go to stderr to keep the CSV clean.
    for (const std::string& n : cmp.notes) fmt::print(stderr, "note: {}\n", n);
    return;
  }
  fmt::print("A = {}   B = {}\n", a, b);
  fmt::print("{:<36} {:>6} {:>7} {:>7} {:>22} {:>5} {:>5} {:>20} {:>7} {:>7} {:>9} {:>9}\n", "task", "n", "acc_A%",
             "acc_B%", "Δacc% [95% CI]", "c2w", "w2c", "flips% [95% CI]", "allfl%", "agree%", "KL(A‖B)", "McNemar p");
  for (const auto& [name, t] : cmp.tasks) {
    const PairMetrics& m = t.m;
    fmt::print("{:<36} {:>6} {:>7} {:>7} {:>22} {:>5} {:>5} {:>20} {:>7} {:>7} {:>9.5f} {:>9}\n", name, m.n,
               pct(m.acc_a), pct(m.acc_b),
               fmt::format("{:+.2f} [{:+.2f},{:+.2f}]", 100 * m.delta_acc, 100 * m.delta_acc_ci[0],
                           100 * m.delta_acc_ci[1]),
               m.c2w, m.w2c,
               fmt::format("{:.2f} [{:.2f},{:.2f}]", 100 * m.flips, 100 * m.flips_ci[0], 100 * m.flips_ci[1]),
               pct(m.all_flips), pct(m.agreement), m.kl_ab, p_value(m.mcnemar_p));
  }
  fmt::print("{}", kCompareLegend);
  for (const std::string& n : cmp.notes) fmt::print("note: {}\n", n);
}

struct KldArgs {
  std::string base, model, tokenizer, file, save_base, load_base, compute = "f32";
  int ctx = 512, chunks = -1, top_k = 0;
  RemoteArgs remote;
};

std::string read_text(const std::string& path) { return read_regular_file(path, "text file"); }

// "[3/40] chunks, 0.52 chunks/s, ETA 71 s" on stderr: redrawn on a terminal, a plain line every 10 s otherwise.
std::function<void(int, int)> chunk_progress() {
  auto t0 = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  auto line = std::make_shared<ProgressLine>(10);
  return [t0, line](int done, int total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - *t0).count();
    const double rate = s > 0 ? done / s : 0;
    line->show(fmt::format("[{}/{}] chunks, {:.2f} chunks/s, ETA {:.0f} s", done, total, rate,
                           rate > 0 ? (total - done) / rate : 0.0), done == total);
  };
}

void print_kld(const KldStats& s, const KldArgs& a) {
  auto name = [](double q) {
    return q >= 1 ? std::string("Maximum") : q <= 0 ? std::string("Minimum") : q == 0.5 ? std::string("Median")
                                                                                        : fmt::format("{:.1f}%", 100 * q);
  };
  fmt::print("base  {}\nmodel {}\n{} tokens scored in {} chunks of {}{}\n\n", a.load_base.empty() ? a.base : a.load_base,
             a.model, s.n_tokens, s.n_chunks, s.n_ctx,
             s.mode == "topk" ? fmt::format(" (saved baseline, top-{} log-probs + rest: KL is a lower bound)", s.top_k)
                              : "");
  fmt::print("====== Perplexity statistics ======\n");
  fmt::print("Mean PPL(Q)                   : {:10.6f} ± {:10.6f}\n", s.ppl_b, s.ppl_b_stderr);
  fmt::print("Mean PPL(base)                : {:10.6f} ± {:10.6f}\n", s.ppl_base, s.ppl_base_stderr);
  fmt::print("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2f}%\n", 100 * s.cor_ln_ppl);
  fmt::print("Mean ln(PPL(Q)/PPL(base))     : {:10.6f} ± {:10.6f}\n", s.ln_ppl_ratio, s.ln_ppl_ratio_stderr);
  fmt::print("Mean PPL(Q)/PPL(base)         : {:10.6f}\n\n", s.ppl_ratio);
  fmt::print("====== KL divergence statistics ======\n");
  fmt::print("Mean    KLD: {:10.6f} ± {:10.6f}\n", s.kl_mean, s.kl_stderr);
  for (size_t i = 0; i < s.kl_pct.size(); ++i)
    fmt::print("{:<7} KLD: {:10.6f}\n", name(kKldPercentiles[i]), s.kl_pct[i]);
  if (s.topk_kl_mean >= 0)
    fmt::print("Top-{} KLD : {:10.6f} (saved-baseline approximation; error mean {:.3g} = {:.2f}%, max {:.3g})\n",
               s.top_k, s.topk_kl_mean, s.topk_err_mean, 100 * s.topk_err_rel, s.topk_err_max);
  fmt::print("\n====== Token probability statistics ======\n");
  fmt::print("Mean    Δp: {:6.3f} ± {:5.3f} %\n", 100 * s.dp_mean, 100 * s.dp_stderr);
  for (size_t i = 0; i < s.dp_pct.size(); ++i)
    fmt::print("{:<7} Δp: {:6.3f}%\n", name(kDpPercentiles[i]), 100 * s.dp_pct[i]);
  fmt::print("RMS Δp    : {:6.3f} %\n", 100 * s.dp_rms);
  fmt::print("Same top p: {:6.3f} ± {:5.3f} %\n", 100 * s.same_top, 100 * s.same_top_stderr);
}

// kld with --backend openai: the served model is the base. The server returns top-k log-probabilities only, so
// the KL is the top-k lower bound (as --load-base); -m is the local model compared with it, whose tokenizer
// builds the chunks (checked against the server's).
void cmd_kld_remote(const KldArgs& a, const Common& c) {
  if (!a.base.empty() || !a.load_base.empty())
    fail("kld: with --backend openai the served model is the base: drop --base / --load-base");
  if (a.file.empty()) fail("kld: -f/--file is required");
  if (a.save_base.empty() && a.model.empty()) fail("kld: -m/--model is required (unless --save-base)");
  if (!a.save_base.empty()) check_output_path(a.save_base);
  const std::string text = read_text(a.file);
  std::unique_ptr<Model> b = a.model.empty() ? open_tokenizer_model("kld", a.tokenizer, "")
                                             : open_model(a.model, LoadOptions{a.tokenizer, compute_mode_from_name(a.compute)});
  auto backend = open_backend(a.remote, b->tok, /*needs_logprobs=*/true);
  KldOptions opt;
  opt.n_ctx = a.ctx;
  opt.max_chunks = a.chunks;
  opt.progress = chunk_progress();
  const int k = a.top_k > 0 ? a.top_k : 20;
  fmt::print(stderr, "kld: the server returns top-{} log-probabilities only: KL is computed on the top-{} tokens + "
             "the rest, a lower bound of the full-vocabulary KL\n", k, k);
  KldBase kb = make_kld_base_remote(*backend, b->tok, b->cfg.n_vocab, text, k, opt);
  if (!a.save_base.empty()) {
    save_kld_base(kb, a.save_base);
    if (!c.json) fmt::print("saved {}: {} chunks of {}, {} scored tokens, top-{} log-probs of {}\n", a.save_base,
                            kb.n_chunks, a.ctx, kb.n_scored(), k, a.remote.served_model);
    if (a.model.empty()) {
      if (c.json) print_json({{"base", a.remote.served_model}, {"saved", a.save_base}, {"top_k", k},
                              {"n_chunks", kb.n_chunks}, {"n_tokens", kb.n_scored()}});
      return;
    }
  }
  opt.progress = chunk_progress();
  KldStats s = kl_divergence(kb, *b, text, opt);
  if (c.json) {
    json j = s.to_json();
    j["base"] = a.remote.served_model;
    j["backend"] = backend->settings();
    j["model"] = a.model;
    j["file"] = a.file;
    j["compute"] = a.compute;
    print_json(j);
    return;
  }
  print_kld(s, a);
}

void cmd_kld(const KldArgs& a, const Common& c) {
  if (a.remote.on()) return cmd_kld_remote(a, c);
  if (a.base.empty() == a.load_base.empty()) fail("kld: give either --base MODEL or --load-base FILE");
  if (!a.load_base.empty() && !a.save_base.empty()) fail("kld: --save-base and --load-base exclude each other");
  if (a.save_base.empty() && a.model.empty()) fail("kld: -m/--model is required (unless --save-base)");
  if (a.load_base.empty() && a.file.empty()) fail("kld: -f/--file is required (unless --load-base)");
  if (!a.save_base.empty()) check_output_path(a.save_base);
  KldOptions opt;  // progress on stderr; --json output goes to stdout
  opt.n_ctx = a.ctx;
  opt.max_chunks = a.chunks;
  opt.progress = chunk_progress();
  const std::string text = a.file.empty() ? std::string() : read_text(a.file);
  if (!a.save_base.empty()) {
    auto base = open_model(a.base, LoadOptions{a.tokenizer, compute_mode_from_name(a.compute)});
    const int k = a.top_k > 0 ? a.top_k : 256;
    KldBase kb = make_kld_base(*base, text, k, opt);
    save_kld_base(kb, a.save_base);
    const uint64_t bytes = std::filesystem::file_size(a.save_base);
    if (c.json) {
      print_json({{"base", a.base}, {"file", a.file}, {"saved", a.save_base}, {"top_k", k}, {"n_ctx", a.ctx},
                  {"n_chunks", kb.n_chunks}, {"n_tokens", kb.n_scored()}, {"bytes", bytes}});
    } else {
      fmt::print("saved {}: {} chunks of {}, {} scored tokens, top-{} log-probs, {:.1f} MB (llama.cpp's 16-bit "
                 "file would be {:.1f} MB)\n", a.save_base, kb.n_chunks, a.ctx, kb.n_scored(), k, bytes / 1e6,
                 (double(kb.n_scored()) * (2 * ((kb.n_vocab + 1) / 2) + 4) * 2 + double(kb.tokens.size()) * 4) / 1e6);
    }
    if (a.model.empty()) return;
  }
  auto b = open_model(a.model, LoadOptions{a.tokenizer, compute_mode_from_name(a.compute)});
  KldStats s;
  if (!a.load_base.empty()) {
    s = kl_divergence(load_kld_base(a.load_base), *b, text, opt);
  } else {
    auto base = open_model(a.base, LoadOptions{a.tokenizer, compute_mode_from_name(a.compute)});
    opt.top_k = a.top_k;
    s = kl_divergence(*base, *b, text, opt);
  }
  if (c.json) {
    json j = s.to_json();
    j["base"] = a.load_base.empty() ? a.base : a.load_base;
    j["model"] = a.model;
    j["file"] = a.file;
    j["compute"] = a.compute;
    print_json(j);
    return;
  }
  print_kld(s, a);
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
  fmt::print("run {} '{}' task {}: {} items imported from {} file(s), {} items in the run\n", r.run.id, r.run.name,
             r.run.task, r.n_items, a.files.size(), r.run.n_items);
  for (const TaskSummary& t : summarize(r.run, Store(a.db).items(r.run.id)))
    fmt::print("  {:<40} {:>6} acc {:>6}%  acc_norm {:>6}%\n", t.task, t.n, pct(t.acc), pct(t.acc_norm));
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
    c->add_option("--db", a.db, "Results database (SQLite)");
    c->add_option("--ctx", a.ctx, "Context length for scoring")->check(CLI::Range(16, 1 << 20));
    add_compute(c, a.compute, "f32");
    add_common(c, o);
    c->callback([] { apply_threads(o); cmd_eval(a, o); });
  }
  {
    static std::string db = "ctrust.db";
    static Common o;
    auto* c = app.add_subcommand("runs", "List the runs in the results store");
    c->add_option("--db", db, "Results database (SQLite)");
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
    c->add_option("--db", db, "Results database (SQLite)");
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
    c->add_option("--db", a.db, "Results database (SQLite)");
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
    c->add_option("--db", db, "Results database (SQLite)");
    add_common(c, o);
    c->callback([] { cmd_export(db, run, format, out, o); });
  }
}

}  // namespace ctrust::cli
