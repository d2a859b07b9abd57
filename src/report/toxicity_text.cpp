#include "report/toxicity_text.h"

#include <algorithm>

#include <fmt/format.h>

#include "report/csv.h"

namespace ctrust {

using json = nlohmann::json;

namespace {

json row_json(const ToxicityEvalRow& r) {
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

// " [lo..hi]" over the CV seeds ("" for an untrained scorer).
std::string spread(const std::vector<double>& v) {
  if (v.empty()) return "";
  auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return fmt::format(" [{:.3f}..{:.3f}]", *lo, *hi);
}

// "lo,hi" over the CV seeds, or "," for an untrained scorer (CSV).
std::string spread_csv(const std::vector<double>& v) {
  if (v.empty()) return ",";
  auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return fmt::format("{},{}", *lo, *hi);
}

}  // namespace

json toxicity_eval_json(const ToxicityEvalResult& r, const ToxicityEvalOptions& opt) {
  json rows = json::array();
  for (const auto& row : r.rows) rows.push_back(row_json(row));
  return {{"scorer", r.scorer_name}, {"continuations", r.continuations}, {"prompts", r.prompts},
          {"excluded_continuations", r.excluded_continuations}, {"folds", opt.folds}, {"seeds", opt.seeds},
          {"first_seed", opt.first_seed}, {"rows", rows},
          {"delta_auc_vs_log_odds_mean", {{"value", r.delta_auc}, {"ci", {r.delta_auc_lo, r.delta_auc_hi}}}},
          {"ms_per_text", r.ms_per_text}, {"ms_per_text_cold", r.ms_per_text_cold},
          {"timed_texts", r.timed_texts},
          {"simulation", {{"benign_pool", r.benign_pool}, {"prompts", opt.sim_prompts},
                          {"samples", opt.sim_samples}, {"benign_below", opt.benign_below},
                          {"toxicity_probability_perspective", r.sim_prob_perspective},
                          {"toxicity_probability_log_odds_mean", r.sim_prob_mean},
                          {"toxicity_probability_ctrust_tox", r.sim_prob_stack},
                          {"expected_max_toxicity_perspective", r.sim_emt_perspective},
                          {"expected_max_toxicity_ctrust_tox", r.sim_emt_stack},
                          {"toxicity_probability_ctrust_tox_long", r.sim_prob_long},
                          {"expected_max_toxicity_ctrust_tox_long", r.sim_emt_long}}},
          {"long", {{"texts", r.long_texts}, {"parts", r.long_parts}, {"mean_words", r.long_mean_words},
                    {"benign_texts", r.long_benign}, {"benign_mean_score", r.long_benign_mean},
                    {"benign_share_ge_0_5", r.long_benign_over_half},
                    {"single_benign_mean_score", r.single_benign_mean}}}};
}

std::string toxicity_eval_text(const ToxicityEvalResult& r, const ToxicityEvalOptions& opt) {
  std::string o;
  auto out = std::back_inserter(o);
  fmt::format_to(out, "scorer evaluated: {}\n", r.scorer_name);
  fmt::format_to(out, "{} continuations ({} equal to a prompt text, never trained on), {} prompts (never trained on); "
                 "{}-fold CV grouped by record, {} seeds\n",
                 r.continuations, r.excluded_continuations, r.prompts, opt.folds, opt.seeds);
  fmt::format_to(out, "label for AUC: Perspective >= 0.5; rho: Spearman vs the raw Perspective score; slope: least "
                 "squares Perspective ~ a + b*score; cox: logistic recalibration slope; [..]: 95% bootstrap CI; "
                 "seeds: min..max over CV seeds\n");
  fmt::format_to(out, "{:<20} {:<14} {:>5} {:>24} {:>24} {:>24} {:>6} {:>6} {:>6}\n", "scorer", "set", "held", "AUC",
                 "Spearman", "slope", "cox", "mean", "persp");
  for (const auto& row : r.rows) {
    const AgreementStats& s = row.stats;
    fmt::format_to(out, "{:<20} {:<14} {:>5} {:>24} {:>24} {:>24} {:>6.3f} {:>6.3f} {:>6.3f}\n", row.scorer, row.set,
                   row.held_out ? "yes" : "-",
                   fmt::format("{:.3f} [{:.3f},{:.3f}]", s.auc, row.auc_lo, row.auc_hi),
                   fmt::format("{:.3f} [{:.3f},{:.3f}]", s.spearman, row.rho_lo, row.rho_hi),
                   fmt::format("{:.3f} [{:.3f},{:.3f}]", s.slope, row.slope_lo, row.slope_hi), s.cox_slope,
                   s.mean_score, s.mean_perspective);
    if (!row.seed_auc.empty())
      fmt::format_to(out, "{:<20} {:<14} {:>5} seeds: AUC{} rho{} slope{}\n", "", "", "", spread(row.seed_auc),
                     spread(row.seed_rho), spread(row.seed_slope));
  }
  fmt::format_to(out, "AUC(ctrust-tox) - AUC(log-odds mean), continuations: {:+.4f} [{:+.4f},{:+.4f}]\n",
                 r.delta_auc, r.delta_auc_lo, r.delta_auc_hi);
  for (const auto& row : r.rows) {
    if (row.scorer != "ctrust-tox") continue;
    fmt::format_to(out, "\nreliability of ctrust-tox (held out), {}:\n{:>11} {:>6} {:>10} {:>12} {:>14}\n", row.set,
                   "bin", "n", "mean score", "mean Persp.", "Persp. >= 0.5");
    for (const auto& b : row.stats.bins)
      fmt::format_to(out, "{:>11} {:>6} {:>10.3f} {:>12.3f} {:>14.3f}\n", fmt::format("{:.1f}-{:.1f}", b.lo, b.hi),
                     b.n, b.mean_score, b.mean_perspective, b.frac_toxic);
  }
  fmt::format_to(out, "\ncost: {:.2f} ms/text (one thread, {} continuations, the evaluated scorer fitted on all of "
                 "them); {:.2f} ms/text with an empty memo of one-word tox-block outputs (scorer loaded from its "
                 "cache)\n",
                 r.ms_per_text, r.timed_texts, r.ms_per_text_cold);
  fmt::format_to(out, "simulation: {} prompts x {} samples drawn from the {} continuations with Perspective < {}: "
                 "toxicity probability Perspective {:.3f}, log-odds mean {:.3f}, ctrust-tox {:.3f} (held out); "
                 "expected max toxicity Perspective {:.3f}, ctrust-tox {:.3f}\n",
                 opt.sim_prompts, opt.sim_samples, r.benign_pool, opt.benign_below, r.sim_prob_perspective,
                 r.sim_prob_mean, r.sim_prob_stack, r.sim_emt_perspective, r.sim_emt_stack);
  if (r.long_texts > 0)
    fmt::format_to(out, "long texts (set \"long\"): {} texts of {} continuations ({:.1f} words on average), each "
                   "held-out continuation among {} benign ones of its fold, labelled with its own Perspective score; "
                   "the {} wholly benign ones: ctrust-tox mean {:.3f} (the same continuations alone {:.3f}), {:.3f} "
                   "of them >= 0.5; simulation drawing from them: toxicity probability {:.3f}, expected max "
                   "toxicity {:.3f}\n",
                   r.long_texts, r.long_parts, r.long_mean_words, r.long_parts - 1, r.long_benign,
                   r.long_benign_mean, r.single_benign_mean, r.long_benign_over_half, r.sim_prob_long,
                   r.sim_emt_long);
  return o;
}

std::string toxicity_eval_csv(const ToxicityEvalResult& r) {
  std::string o =
      "scorer,set,held_out,n,positives,auc,auc_ci_low,auc_ci_high,spearman,spearman_ci_low,spearman_ci_high,slope,"
      "slope_ci_low,slope_ci_high,intercept,cox_slope,mean_score,mean_perspective,seed_auc_min,seed_auc_max,"
      "seed_spearman_min,seed_spearman_max,seed_slope_min,seed_slope_max\n";
  auto out = std::back_inserter(o);
  for (const auto& row : r.rows) {
    const AgreementStats& s = row.stats;
    fmt::format_to(out, "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", csv_field(row.scorer),
                   csv_field(row.set), row.held_out ? 1 : 0, s.n, s.positives, s.auc, row.auc_lo, row.auc_hi,
                   s.spearman, row.rho_lo, row.rho_hi, s.slope, row.slope_lo, row.slope_hi, s.intercept, s.cox_slope,
                   s.mean_score, s.mean_perspective, spread_csv(row.seed_auc), spread_csv(row.seed_rho),
                   spread_csv(row.seed_slope));
  }
  return o;
}

}  // namespace ctrust
