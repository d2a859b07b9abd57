// Statistics on the trust scores, generic over the perspectives: they only use a perspective's pure ScoreFn
// (perspective.h) and its TaskRuns.
//  - confidence intervals: a stratified cluster bootstrap. The units are the items of a setting (TaskRun) with
//    all their k samples (a cluster); each replicate resamples, in every setting independently, as many items
//    as it has, with replacement, and calls the ScoreFn on the resampled runs. The 95% interval of the score,
//    the refusal rate and every numeric leaf of the metrics is the percentile interval of the replicates.
//  - paired differences of two runs over their shared items: one resample of the shared items, both runs'
//    ScoreFns applied to it; the interval of score_b - score_a and the minimum detectable difference.
//  - flips of the classification records (items with a label) with the exact McNemar p.
// docs/trust.md (Statistics) describes the method and its limits.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "trust/perspective.h"

namespace ctrust {

// The numeric leaves of a JSON tree, as (JSON pointer, value), in the tree's order. Booleans are not numbers.
std::vector<std::pair<std::string, double>> numeric_leaves(const nlohmann::json& j);

// Bootstrap of one perspective's result: fills pr.ci_low/ci_high/se (score), refusal_ci and metrics_ci (a tree
// mirroring pr.metrics whose numeric leaves are {"ci_low","ci_high","se"}), and pr.bootstrap (replicates).
// pr must be score(runs). resamples == 0: nothing is computed (pr.bootstrap stays 0).
void add_confidence_intervals(const ScoreFn& score, const std::vector<TaskRun>& runs, PerspectiveResult& pr,
                              const BootstrapOptions& opt);

// Two runs of the same perspective restricted to the items both have (complete: all k samples), aligned:
// a[t] and b[t] hold the same items of setting t in the same (ascending item) order.
struct AlignedRuns {
  std::vector<TaskRun> a, b;
  int items = 0;  // shared items (clusters)
};
AlignedRuns align_shared(const std::vector<TaskRun>& a, const std::vector<TaskRun>& b);

struct PairedDelta {
  int items = 0;                  // shared items the difference is computed on
  double score_a = 0, score_b = 0;  // ScoreFns on the shared items
  double delta = 0;               // score_b - score_a
  Interval ci;                    // bootstrap percentile interval and SE of delta
  double mdd = 0;                 // kMddFactor x ci.se
  // Tree mirroring the metrics: each numeric leaf present in both runs -> {"a","b","delta","ci_low","ci_high","se"}.
  nlohmann::json metrics = nlohmann::json::object();
  // Classification records (item with a label) present in both runs: correct in a -> wrong in b and back,
  // changes of the parsed answer, exact McNemar p on (c2w, w2c). n = 0 when the perspective has none.
  int64_t n = 0, c2w = 0, w2c = 0, changed = 0;
  double mcnemar_p = 1;
};
// Paired bootstrap of two aligned runs (align_shared): each replicate draws one resample of the shared items and
// applies score_a to a's records and score_b to b's records of the same items.
PairedDelta paired_bootstrap(const ScoreFn& score_a, const std::vector<TaskRun>& a, const ScoreFn& score_b,
                             const std::vector<TaskRun>& b, const BootstrapOptions& opt);

}  // namespace ctrust
