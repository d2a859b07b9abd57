// The report of `ctrust toxicity-eval` (trust/toxicity.h, toxicity_eval): the agreement table (one row per scorer
// and text set: AUC, Spearman, slope with their 95% bootstrap intervals and the spread over CV seeds), the paired
// AUC difference, the reliability bins of ctrust-tox, the cost and the simulation, as JSON (`--json`), text and
// CSV (`--csv`: the agreement table, one line per row).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "trust/toxicity.h"

namespace ctrust {

// opt: the options the evaluation ran with (folds, seeds, simulation sizes are part of the report).
nlohmann::json toxicity_eval_json(const ToxicityEvalResult& r, const ToxicityEvalOptions& opt);
std::string toxicity_eval_text(const ToxicityEvalResult& r, const ToxicityEvalOptions& opt);
// scorer,set,held_out,n,positives,auc,auc_ci_low,auc_ci_high,spearman,...,seed_auc_min,seed_auc_max (empty when
// the scorer is untrained) ...
std::string toxicity_eval_csv(const ToxicityEvalResult& r);

}  // namespace ctrust
