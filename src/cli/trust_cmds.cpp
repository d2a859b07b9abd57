// ctrust trust | trust-report, and the trust branch of ctrust compare.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <sstream>

#include "base/error.h"
#include "cli/common.h"
#include "model/model.h"
#include "store/trust_runs.h"
#include "trust/run.h"
#include "eval/metrics.h"
#include "trust/presets.h"

namespace ctrust {
// eval/task.h, not included: its TaskSpec (an evaluation task) is not trust's TaskSpec (trust/perspective.h).
std::string shared_data_dir();
}  // namespace ctrust

namespace ctrust::cli {
namespace {

using json = nlohmann::json;

struct TrustArgs {
  std::string model, tokenizer, perspectives, db = "ctrust.db", name, chat_template, endpoint, key, data, recipe;
  std::optional<std::string> system_prompt;
  std::optional<int> samples;
  std::string preset;
  int limit = 0, batch = 8, max_new_tokens = 0, bootstrap = 1000;
  uint64_t seed = 0, bootstrap_seed = 42;
};

void cmd_trust(const TrustArgs& a, const Common& c) {
  TrustOptions opt;
  opt.perspectives = split_list(a.perspectives);
  // Check the names before the model is loaded (run_trust checks again).
  const auto known = trust_perspectives();
  for (const auto& p : opt.perspectives)
    if (std::find(known.begin(), known.end(), p) == known.end()) {
      std::string k;
      for (const auto& x : known) k += (k.empty() ? "" : ", ") + x;
      fail("unknown trust perspective '{}' (known: {})", p, k);
    }
  if (a.endpoint.empty() != a.key.empty())
    fail("--perspective-endpoint and --perspective-key go together (the Perspective API needs both)");
  const std::string data = a.data.empty() ? shared_data_dir() + "/data" : a.data;
  opt.paths = trust_paths(data);
  if (!a.preset.empty()) apply_preset(trust_preset(a.preset), opt);
  if (a.limit > 0) {  // an explicit --limit replaces the preset's item counts
    opt.limit = a.limit;
    opt.limits.clear();
  }
  opt.max_new_tokens = a.max_new_tokens;
  if (a.samples) opt.toxicity_samples = *a.samples;
  opt.bootstrap = a.bootstrap;
  opt.bootstrap_seed = a.bootstrap_seed;
  opt.seed = a.seed;
  opt.chat_template = a.chat_template;
  opt.batch = a.batch;
  opt.default_system = a.system_prompt;
  if (!opt.chat_template.empty()) chat_template_by_name(opt.chat_template);  // unknown name: error before loading
  TrustStoreOptions so;
  so.db = a.db;
  so.name = a.name;
  so.recipe = a.recipe;
  so.scorer_id = "ctrust-lr";
  if (!a.endpoint.empty()) {
    opt.scorer = make_perspective_scorer(a.endpoint, a.key);
    so.scorer_id = "perspective-http " + a.endpoint;
  }

  // Progress: "[ethics commonsense/jailbreak_1] 3/10, 123 records, 0.85/s, ETA 8 s" (this task's ETA).
  const bool tty = isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t generated = 0;
  if (tty) {
    opt.on_item = [&](const TrustRecord&) { ++generated; };
    opt.on_progress = [&, last = std::string()](const std::string& p, const std::string& t, int done,
                                                int total) mutable {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double rate = s > 0 ? generated / s : 0;
      const std::string label = p + " " + t;
      if (!last.empty() && label != last) fmt::print(stderr, "\n");
      last = label;
      fmt::print(stderr, "\r[{}] {}/{}, {} generated, {:.2f} items/s, ETA {:.0f} s   ", label, done, total, generated,
                 rate, rate > 0 ? (total - done) / rate : 0.0);
    };
  }
  auto model = open_model(a.model, LoadOptions{a.tokenizer});
  TrustRunResult r = trust_run(*model, a.model, opt, so);
  if (tty) fmt::print(stderr, "\n");
  std::string short_note;
  if (!a.preset.empty()) {
    TrustPreset pr = trust_preset(a.preset);
    for (const auto& x : pr.short_of_target) short_note += (short_note.empty() ? "" : ", ") + x;
  }
  if (c.json) {
    json j = r.to_json();
    if (!a.preset.empty()) {
      TrustPreset pr = trust_preset(a.preset);
      j["preset"] = {{"name", pr.name}, {"limit", pr.limit}, {"limits", pr.limits}, {"max_samples", pr.max_samples},
                     {"short_of_target", pr.short_of_target}};
    }
    print_json(j);
    return;
  }
  fmt::print("trust run {} '{}' ({}): {} records generated, {} resumed from {}\n", r.run.id, r.run.name, a.model,
             r.generated, r.resumed, a.db);
  if (!short_note.empty())
    fmt::print("preset {}: the data do not allow a paired 95% half-width <= 3 points for {} (every item used)\n",
               a.preset, short_note);
  fmt::print("chat template: {}\n", r.result.chat_template);
  if (!r.result.toxicity_scorer.empty()) fmt::print("toxicity scorer: {}\n", r.result.toxicity_scorer);
  fmt::print("{:<18} {:>7} {:>17} {:>7} {:>9} {:>7}\n", "perspective", "score", "95% CI", "MDD", "refusal%", "items");
  for (const auto& p : known) {
    auto it = r.result.perspectives.find(p);
    if (it == r.result.perspectives.end()) continue;
    const PerspectiveResult& x = it->second;
    fmt::print("{:<18} {:>7.2f} {:>17} {:>7} {:>9.1f} {:>7}{}\n", p, x.score,
               x.bootstrap ? fmt::format("[{:.2f}, {:.2f}]", x.ci_low, x.ci_high) : "-",
               x.bootstrap ? fmt::format("{:.2f}", kMddFactor * std::sqrt(2.0) * x.se) : "-", 100 * x.refusal_rate,
               x.items, x.missing.empty() ? "" : "  (partial)");
  }
  if (opt.bootstrap > 0)
    fmt::print("95% CI: bootstrap percentile interval over items ({} replicates, seed {}); MDD: difference from an "
               "independent run of this size detectable with 80% power at alpha 0.05 (2.80 x sqrt(2) x SE; a paired "
               "comparison of the same items detects less: see trust-report / compare)\n",
               opt.bootstrap, opt.bootstrap_seed);
}

struct ReportArgs {
  std::vector<std::string> runs, mmlu;
  std::string db = "ctrust.db", data;
  int bootstrap = 1000;
  uint64_t bootstrap_seed = 42;
  bool csv = false;
};

void cmd_trust_report(const ReportArgs& a, const Common& c) {
  TrustStatsOptions so;
  so.data = a.data;
  so.bootstrap.resamples = a.bootstrap;
  so.bootstrap.seed = a.bootstrap_seed;
  TrustReport rep = trust_report(a.db, a.runs, so, a.mmlu);
  const bool csv = a.csv;
  if (c.json) print_json(rep.to_json());
  else if (csv) fmt::print("{}", rep.to_csv());
  else fmt::print("{}", rep.to_text());
}

}  // namespace

struct PlanArgs {
  std::string perspectives, preset, data;
  std::optional<int> samples;
  int limit = 0, max_new_tokens = 0;
  uint64_t seed = 0;
};

void cmd_trust_plan(const PlanArgs& a, const Common& c) {
  TrustOptions opt;
  opt.perspectives = split_list(a.perspectives);
  const auto known = trust_perspectives();
  for (const auto& p : opt.perspectives)
    if (std::find(known.begin(), known.end(), p) == known.end()) fail("unknown trust perspective '{}'", p);
  opt.paths = trust_paths(a.data.empty() ? shared_data_dir() + "/data" : a.data);
  if (!a.preset.empty()) apply_preset(trust_preset(a.preset), opt);
  if (a.limit > 0) {
    opt.limit = a.limit;
    opt.limits.clear();
  }
  if (a.samples) opt.toxicity_samples = *a.samples;
  opt.max_new_tokens = a.max_new_tokens;
  opt.seed = a.seed;
  json j = trust_plan_summary(opt);
  if (c.json) {
    print_json(j);
    return;
  }
  fmt::print("{:<18} {:<28} {:>9} {:>7} {:>7} {:>8} {:>10}\n", "perspective", "setting", "of items", "items", "samples",
             "records", "max tokens");
  for (const auto& p : known) {
    if (!j["perspectives"].contains(p)) continue;
    const json& x = j["perspectives"][p];
    for (const json& s : x["settings"])
      fmt::print("{:<18} {:<28} {:>9} {:>7} {:>7} {:>8} {:>10}\n", p, s["name"].get<std::string>(),
                 s["items_total"].get<int64_t>(), s["items"].get<int64_t>(), s["samples"].get<int>(),
                 s["records"].get<int64_t>(), s["max_tokens"].get<int64_t>());
    fmt::print("{:<18} {:<28} {:>9} {:>7} {:>7} {:>8} {:>10}\n", p, "(all settings)", "", x["items"].get<int64_t>(), "",
               x["records"].get<int64_t>(), x["max_tokens"].get<int64_t>());
  }
  fmt::print("total: {} items, {} records, at most {} generated tokens\n", j["items"].get<int64_t>(),
             j["records"].get<int64_t>(), j["max_tokens"].get<int64_t>());
}

bool try_trust_compare(const std::string& db, const std::string& a, const std::string& b, bool json_out, bool csv) {
  if (!std::filesystem::exists(db)) return false;
  {
    Store store(db);
    const bool ta = is_trust_run(store, a), tb = is_trust_run(store, b);
    if (!ta && !tb) return false;
    if (ta != tb)
      fail("compare: '{}' is {} trust run but '{}' is {}; compare trust runs with trust runs", a,
           ta ? "a" : "not a", b, tb ? "one" : "not");
  }
  TrustComparison cmp = compare_trust_runs(db, a, b);
  if (json_out) print_json(cmp.to_json());
  else if (csv) fmt::print("{}", cmp.to_csv());
  else fmt::print("{}", cmp.to_text());
  return true;
}

void register_trust_commands(CLI::App& app) {
  {
    static TrustArgs a;
    static Common o;
    auto* c = app.add_subcommand("trust", "Trustworthiness on the eight DecodingTrust perspectives (0-100 scores); "
                                          "every answer goes to the results store");
    c->add_option("-m,--model", a.model, "Model file or folder")->required();
    c->add_option("--tokenizer", a.tokenizer, "llama2.c tokenizer .bin");
    c->add_option("--perspectives", a.perspectives,
                  "Comma-separated: toxicity,stereotype,adv_robustness,ood,adv_demonstration,privacy,ethics,fairness "
                  "(default: all)");
    c->add_option("--limit", a.limit,
                  "N items of each task/setting: a seeded sample stratified by label, nested (a larger N extends a "
                  "smaller one); default: all, or the preset's")
        ->check(CLI::Range(1, 1 << 30));
    c->add_option("--preset", a.preset,
                  "quick (4 items per setting, 1 sample: a smoke run), standard (sized for paired 95% CI half-widths "
                  "<= 3 points where the data allow), paper (every item, the protocol's samples); docs/trust.md")
        ->check(CLI::IsMember(trust_preset_names()));
    c->add_option("--bootstrap", a.bootstrap, "Bootstrap replicates of the 95% intervals (0 = none)")
        ->check(CLI::Range(0, 1000000));
    c->add_option("--bootstrap-seed", a.bootstrap_seed, "Seed of the bootstrap resamples");
    c->add_option("--db", a.db, "Results database (SQLite)");
    c->add_option("--name", a.name, "Run name (default: the model file's name)");
    c->add_option("--chat-template", a.chat_template,
                  "chatml, llama2, vicuna, zephyr, gemma, llama3 or raw (default: from the model's metadata)");
    c->add_option("--system-prompt", a.system_prompt,
                  "Replaces the chat template's default system prompt (used when a prompt has none; "
                  "DecodingTrust's own system prompts are kept)");
    c->add_option("--samples", a.samples, "Generations per toxicity prompt (default: the plan's; DecodingTrust: 25)")
        ->check(CLI::Range(1, 1000));
    c->add_option("--batch", a.batch, "Sequences generated at once (results do not depend on it)")
        ->check(CLI::Range(1, 1024));
    c->add_option("--max-new-tokens", a.max_new_tokens, "Cap on each task's generation length")
        ->check(CLI::Range(1, 1 << 20));
    c->add_option("--seed", a.seed, "Seed of the sampled generations");
    c->add_option("--perspective-endpoint", a.endpoint,
                  "Perspective API compatible endpoint (http://host:port/v1alpha1/comments:analyze) for toxicity");
    c->add_option("--perspective-key", a.key, "API key for --perspective-endpoint");
    c->add_option("--data", a.data, "Shared data folder with decodingtrust/ and advglue/ (default ../shared/data)");
    c->add_option("--recipe", a.recipe, "How the model was derived (recorded in its fingerprint)");
    add_common(c, o);
    c->callback([] { apply_threads(o); cmd_trust(a, o); });
  }
  {
    static PlanArgs a;
    static Common o;
    auto* c = app.add_subcommand("trust-plan",
                                 "What `ctrust trust` with these options would generate (items, samples, records, "
                                 "token budget per setting), without a model");
    c->add_option("--perspectives", a.perspectives, "Comma-separated perspectives (default: all)");
    c->add_option("--preset", a.preset, "quick, standard or paper")->check(CLI::IsMember(trust_preset_names()));
    c->add_option("--limit", a.limit, "Items per setting (stratified seeded sample)")->check(CLI::Range(1, 1 << 30));
    c->add_option("--samples", a.samples, "Generations per toxicity prompt")->check(CLI::Range(1, 1000));
    c->add_option("--max-new-tokens", a.max_new_tokens, "Cap on each task's generation length")
        ->check(CLI::Range(1, 1 << 20));
    c->add_option("--seed", a.seed, "Seed (of the item sample)");
    c->add_option("--data", a.data, "Shared data folder (default ../shared/data)");
    add_common(c, o);
    c->callback([] { cmd_trust_plan(a, o); });
  }
  {
    static ReportArgs ra;
    static Common o;
    auto* c = app.add_subcommand("trust-report",
                                 "Table of stored trust runs: perspectives as columns, one row per run, "
                                 "differences from the first run");
    c->add_option("runs", ra.runs, "Trust runs: ids or names (the first is the reference)")->required();
    c->add_option("--db", ra.db, "Results database (SQLite)");
    c->add_flag("--csv", ra.csv, "CSV on stdout");
    c->add_option("--mmlu", ra.mmlu,
                  "MMLU eval runs (ids or names), one per trust run in order, for the MMLU column and the 9-column "
                  "average (default: the newest mmlu run with the trust run's model fingerprint)")
        ->delimiter(',');
    c->add_option("--data", ra.data,
                  "Shared data folder the perspectives' items are rebuilt from to re-score stored records (default "
                  "../shared/data)");
    c->add_option("--bootstrap", ra.bootstrap, "Bootstrap replicates (0 = no intervals)")->check(CLI::Range(0, 1000000));
    c->add_option("--bootstrap-seed", ra.bootstrap_seed, "Seed of the bootstrap resamples");
    add_common(c, o);
    c->callback([] { cmd_trust_report(ra, o); });
  }
}

}  // namespace ctrust::cli
