// The trust tables as text and CSV: `ctrust trust` (a run's scores), `ctrust trust-plan`, `ctrust trust-report`
// (TrustReport) and `ctrust compare` on two trust runs (TrustComparison). The tables' data and their JSON are built
// by pipeline/trust_runs.h (and trust/presets.h for the plan).
#pragma once
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "pipeline/trust_runs.h"
#include "trust/presets.h"

namespace ctrust {

// `ctrust trust`: the run, the generation statistics, one line per perspective (score, 95% CI, MDD, refusals),
// the partial perspectives and the legend. preset: the --preset given ("" = none); bootstrap, bootstrap_seed: the
// run's options.
std::string trust_run_text(const TrustRunResult& r, const std::string& model_path, const std::string& db,
                           const std::string& preset, int bootstrap, uint64_t bootstrap_seed);
// The preset as `ctrust trust --json` shows it.
nlohmann::json trust_preset_json(const TrustPreset& p);
// `ctrust trust-plan`: the table of trust_plan_summary(opt).
std::string trust_plan_text(const nlohmann::json& plan);

std::string trust_report_text(const TrustReport& rep);
// id,name,<column>...,<column>_delta...,<column>_ci_low,<column>_ci_high...,<column>_delta_ci_low/high...
std::string trust_report_csv(const TrustReport& rep);
// Scores side by side, the paired differences, and the first `max_flips` flips.
std::string trust_compare_text(const TrustComparison& cmp, size_t max_flips = 20);
std::string trust_compare_csv(const TrustComparison& cmp);

}  // namespace ctrust
