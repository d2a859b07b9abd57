// ctrust toxicity-eval: held-out agreement of the built-in toxicity scorer with Perspective (trust/toxicity.h).
#include <unistd.h>

#include "base/error.h"
#include "cli/common.h"
#include "eval/task.h"
#include "trust/toxicity.h"

namespace ctrust::cli {
namespace {

using json = nlohmann::json;

struct EvalArgs {
  std::string data;
  int folds = 5, seeds = 3, first_seed = 1, bootstrap = 1000;
  ToxicityStackOptions stack;
  bool no_sparse = false, no_pooled = false, no_interactions = false, no_word_max = false;
};

json stats_json(const ToxicityEvalRow& r) {
  const AgreementStats& a = r.stats;
  json bins = json::array();
  for (const auto& b : a.bins)
    bins.push_back({{"lo", b.lo}, {"hi", b.hi}, {"n", b.n}, {"mean_score", b.mean_score},
                    {"mean_perspective", b.mean_perspective}, {"frac_perspective_ge_0_5", b.frac_toxic}});
  return {{"scorer", r.scorer}, {"set", r.set}, {"held_out", r.held_out}, {"n", a.n}, {"positives", a.positives},
          {"auc", a.auc}, {"auc_ci", {r.auc_lo, r.auc_hi}}, {"spearman", a.spearman}, {"spearman_ci", {r.rho_lo, r.rho_hi}},
          {"slope", a.slope}, {"slope_ci", {r.slope_lo, r.slope_hi}}, {"intercept", a.intercept},
          {"cox_slope", a.cox_slope}, {"mean_score", a.mean_score}, {"mean_perspective", a.mean_perspective},
          {"seed_auc", r.seed_auc}, {"seed_spearman", r.seed_rho}, {"seed_slope", r.seed_slope}, {"reliability", bins}};
}

std::string spread(const std::vector<double>& v) {
  if (v.empty()) return "";
  auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return fmt::format(" [{:.3f}..{:.3f}]", *lo, *hi);
}

void cmd_toxicity_eval(const EvalArgs& a, const Common& c) {
  const std::string data = a.data.empty() ? shared_data_dir() + "/data" : a.data;
  const std::string d = data + "/decodingtrust/toxicity/user_prompts/";
  ToxicityEvalOptions opt;
  opt.folds = a.folds;
  opt.seeds = a.seeds;
  opt.first_seed = a.first_seed;
  opt.bootstrap = a.bootstrap;
  opt.stack = a.stack;
  opt.stack.sparse = !a.no_sparse;
  opt.stack.pooled = !a.no_pooled;
  opt.stack.interactions = !a.no_interactions;
  opt.stack.word_max = !a.no_word_max;
  ProgressLine progress(10);
  opt.progress = [&](const std::string& s, int done, int total) {
    progress.show(fmt::format("[toxicity-eval {}] {}/{}", s, done, total), done == total);
  };
  ToxicityEvalResult r = toxicity_eval(data + "/toxicity", {d + "toxic.jsonl", d + "nontoxic.jsonl"}, opt);
  if (c.json) {
    json rows = json::array();
    for (const auto& row : r.rows) rows.push_back(stats_json(row));
    print_json({{"scorer", r.scorer_name}, {"continuations", r.continuations}, {"prompts", r.prompts},
                {"excluded_continuations", r.excluded_continuations}, {"folds", a.folds}, {"seeds", a.seeds},
                {"first_seed", a.first_seed}, {"rows", rows},
                {"delta_auc_vs_log_odds_mean", {{"value", r.delta_auc}, {"ci", {r.delta_auc_lo, r.delta_auc_hi}}}},
                {"ms_per_text", r.ms_per_text}, {"ms_per_text_cold", r.ms_per_text_cold},
                {"timed_texts", r.timed_texts},
                {"simulation", {{"benign_pool", r.benign_pool}, {"prompts", opt.sim_prompts},
                                {"samples", opt.sim_samples}, {"benign_below", opt.benign_below},
                                {"toxicity_probability_perspective", r.sim_prob_perspective},
                                {"toxicity_probability_log_odds_mean", r.sim_prob_mean},
                                {"toxicity_probability_ctrust_tox", r.sim_prob_stack},
                                {"expected_max_toxicity_perspective", r.sim_emt_perspective},
                                {"expected_max_toxicity_ctrust_tox", r.sim_emt_stack}}}});
    return;
  }
  fmt::print("scorer evaluated: {}\n", r.scorer_name);
  fmt::print("{} continuations ({} equal to a prompt text, never trained on), {} prompts (never trained on); "
             "{}-fold CV grouped by record, {} seeds\n",
             r.continuations, r.excluded_continuations, r.prompts, a.folds, a.seeds);
  fmt::print("label for AUC: Perspective >= 0.5; rho: Spearman vs the raw Perspective score; slope: least squares "
             "Perspective ~ a + b*score; cox: logistic recalibration slope; [..]: 95% bootstrap CI; "
             "seeds: min..max over CV seeds\n");
  fmt::print("{:<20} {:<14} {:>5} {:>24} {:>24} {:>24} {:>6} {:>6} {:>6}\n", "scorer", "set", "held", "AUC",
             "Spearman", "slope", "cox", "mean", "persp");
  for (const auto& row : r.rows) {
    const AgreementStats& s = row.stats;
    fmt::print("{:<20} {:<14} {:>5} {:>24} {:>24} {:>24} {:>6.3f} {:>6.3f} {:>6.3f}\n", row.scorer, row.set,
               row.held_out ? "yes" : "-",
               fmt::format("{:.3f} [{:.3f},{:.3f}]", s.auc, row.auc_lo, row.auc_hi),
               fmt::format("{:.3f} [{:.3f},{:.3f}]", s.spearman, row.rho_lo, row.rho_hi),
               fmt::format("{:.3f} [{:.3f},{:.3f}]", s.slope, row.slope_lo, row.slope_hi), s.cox_slope,
               s.mean_score, s.mean_perspective);
    if (!row.seed_auc.empty())
      fmt::print("{:<20} {:<14} {:>5} seeds: AUC{} rho{} slope{}\n", "", "", "", spread(row.seed_auc),
                 spread(row.seed_rho), spread(row.seed_slope));
  }
  fmt::print("AUC(ctrust-tox) - AUC(log-odds mean), continuations: {:+.4f} [{:+.4f},{:+.4f}]\n", r.delta_auc,
             r.delta_auc_lo, r.delta_auc_hi);
  for (const auto& row : r.rows) {
    if (row.scorer != "ctrust-tox") continue;
    fmt::print("\nreliability of ctrust-tox (held out), {}:\n{:>11} {:>6} {:>10} {:>12} {:>14}\n", row.set, "bin",
               "n", "mean score", "mean Persp.", "Persp. >= 0.5");
    for (const auto& b : row.stats.bins)
      fmt::print("{:>11} {:>6} {:>10.3f} {:>12.3f} {:>14.3f}\n", fmt::format("{:.1f}-{:.1f}", b.lo, b.hi), b.n,
                 b.mean_score, b.mean_perspective, b.frac_toxic);
  }
  fmt::print("\ncost: {:.2f} ms/text (one thread, {} continuations, the evaluated scorer fitted on all of them); "
             "{:.2f} ms/text with an empty memo of one-word tox-block outputs (scorer loaded from its cache)\n",
             r.ms_per_text, r.timed_texts, r.ms_per_text_cold);
  fmt::print("simulation: {} prompts x {} samples drawn from the {} continuations with Perspective < {}: toxicity "
             "probability Perspective {:.3f}, log-odds mean {:.3f}, ctrust-tox {:.3f} (held out); expected max "
             "toxicity Perspective {:.3f}, ctrust-tox {:.3f}\n",
             opt.sim_prompts, opt.sim_samples, r.benign_pool, opt.benign_below, r.sim_prob_perspective,
             r.sim_prob_mean, r.sim_prob_stack, r.sim_emt_perspective, r.sim_emt_stack);
}

}  // namespace

void register_toxicity_commands(CLI::App& app) {
  static EvalArgs a;
  static Common o;
  auto* c = app.add_subcommand("toxicity-eval",
                               "Held-out agreement of the built-in toxicity scorer (ctrust-tox) with Perspective "
                               "on RealToxicityPrompts continuations and prompts: AUC, Spearman, calibration, cost");
  c->add_option("--data", a.data, "Shared data folder with decodingtrust/ and toxicity/ (default ../shared/data)");
  c->add_option("--folds", a.folds, "Cross-validation folds")->check(CLI::Range(2, 100));
  c->add_option("--seeds", a.seeds, "Cross-validation repetitions")->check(CLI::Range(1, 100));
  c->add_option("--first-seed", a.first_seed, "First CV seed (seeds first..first+seeds-1; the reported figures use "
                "1-3, configurations were selected on 4-6)")->check(CLI::Range(1, 1000000));
  c->add_option("--bootstrap", a.bootstrap, "Bootstrap resamples for the CIs")->check(CLI::Range(10, 100000));
  c->add_option("--dense-l2", a.stack.dense_l2, "Stack: L2 of the dense part (evaluated configuration; "
                "the built-in scorer uses the defaults)");
  c->add_flag("--no-sparse", a.no_sparse, "Stack: no n-gram part");
  c->add_flag("--no-pooled", a.no_pooled, "Stack: without tox-block's pooled BiLSTM outputs");
  c->add_flag("--no-interactions", a.no_interactions, "Stack: without the pairwise products of the classifier outputs");
  c->add_flag("--no-word-max", a.no_word_max, "Stack: without the worst-word features");
  c->add_option("--sparse-l2", a.stack.sparse_l2, "Stack: L2 of the n-gram part");
  c->add_option("--learning-rate", a.stack.learning_rate, "Stack: Adagrad step of the n-gram part");
  c->add_option("--alt-refit", a.stack.alt_refit, "Stack: feature scale of the anchored refit of alt's SVM over its "
                "TF-IDF features (0 = off)")->check(CLI::Range(0.0, 100.0));
  c->add_option("--epochs", a.stack.epochs, "Stack: epochs of the n-gram part")->check(CLI::Range(1, 1000));
  c->add_option("--lm-layer", a.stack.lm_layer, "Stack: layer of the language model's hidden states for the linear "
                "probe (-1 = no probe)")->check(CLI::Range(-1, 1000));
  c->add_option("--lm-l2", a.stack.lm_l2, "Stack: L2 of the linear probe")->check(CLI::Range(1e-6, 1e9));
  c->add_option("--lm-model", a.stack.lm_model, "Stack: the probe's language model (default: "
                "SmolLM2-135M-Instruct.Q4_1.gguf in the models cache)");
  add_common(c, o);
  c->callback([] { apply_threads(o); cmd_toxicity_eval(a, o); });
}

}  // namespace ctrust::cli
