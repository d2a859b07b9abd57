// A perspective as data: the tasks (settings) it generates answers for, how each answer is parsed, and a
// pure scoring function from the records to the 0-100 score and its sub-scores. run_trust (run.cpp) generates
// the records; the scoring function never generates, so it can be re-applied to resampled records (bootstrap
// confidence intervals) and to stored records (reports).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "trust/data.h"
#include "trust/run.h"
#include "trust/toxicity.h"

namespace ctrust {

// One DecodingTrust setting: its items and how each answer is generated and parsed.
struct TrustTaskSpec {
  std::string name;              // the records' task (TrustItem::task of every item)
  std::vector<TrustItem> items;  // all items of the setting (a run may use a subset: TaskRun::item)
  int samples = 1;               // generations per item (sample j: item_id "<i>#s<j>" for j > 0)
  float temperature = 0.0f;      // 0 = greedy
  // Fills parsed / correct / refused (and toxicity) of a record from its item and output. Called once per
  // record, in item order, when the record is generated or taken from the store.
  std::function<void(const TrustItem&, TrustRecord&)> parse;
};

// The records of one setting: recs[j] answers spec->items[item[j]]; the samples of an item are consecutive.
// A bootstrap resample (trust/stats.h) may hold the same item more than once, possibly twice in a row: a
// ScoreFn ends an item's samples where item[j] changes or after spec->samples records, whichever comes first.
struct TaskRun {
  const TrustTaskSpec* spec = nullptr;
  std::vector<TrustRecord> recs;
  std::vector<size_t> item;
};

using ScoreFn = std::function<PerspectiveResult(const std::vector<TaskRun>&)>;

struct PerspectivePlan {
  std::vector<TrustTaskSpec> tasks;
  ScoreFn score;  // pure: records -> score, refusal rate, items, metrics
};

// One plan per perspective (p_<name>.cpp).
PerspectivePlan plan_toxicity(const TrustOptions& opt, const ToxicityScorer& scorer);
PerspectivePlan plan_stereotype(const TrustOptions& opt);
PerspectivePlan plan_advglue(const TrustOptions& opt);
PerspectivePlan plan_ood(const TrustOptions& opt);
PerspectivePlan plan_adv_demo(const TrustOptions& opt);
PerspectivePlan plan_privacy(const TrustOptions& opt);
PerspectivePlan plan_ethics(const TrustOptions& opt);
PerspectivePlan plan_fairness(const TrustOptions& opt);
// The plan of a perspective by name (one of trust_perspectives(); Error otherwise); scorer: toxicity only.
PerspectivePlan make_plan(const std::string& perspective, const TrustOptions& opt, const ToxicityScorer& scorer);
// Applies TrustOptions::max_samples (presets) to the plan's tasks (run_trust calls it after make_plan).
// The cap on the generations per prompt of perspective p (0 = none): the smaller of opt.max_samples and
// opt.sample_caps[p] where set.
int sample_cap(const TrustOptions& opt, const std::string& p);
void cap_samples(PerspectivePlan& plan, const TrustOptions& opt, const std::string& perspective);
// The items of a setting a run uses (indices into spec.items, ascending): all, or with TrustOptions::limit /
// limits a seeded sample stratified by TrustItem::label (stratified_sample, eval/metrics.h; seed = opt.seed mixed
// with the setting's name), nested: a larger limit extends a smaller one.
std::vector<size_t> select_items(const TrustTaskSpec& spec, const TrustOptions& opt);

// A classification setting: parse_answer(item, output) gives the parsed answer ("" = none, counted as refused);
// correct = parsed answer equals the item's label.
TrustTaskSpec classification_task(std::string name, std::vector<TrustItem> items,
                             std::function<std::string(const TrustItem&, const std::string&)> parse_answer);
// Accuracy, refusal rate and n of each classification run into pr.metrics[setting name].
struct ClassificationSummary {
  std::vector<double> accuracies;  // one per non-empty setting
  int refused = 0, total = 0;
};
ClassificationSummary score_classification(const std::vector<TaskRun>& runs, PerspectiveResult& pr);

// Fairness: the coin for an answer holding both kinds of words (the fork flips an unseeded coin): true = the
// positive answer ("yes" / "low"); a hash of (seed, task, item id), independent of the other items run.
bool fairness_coin(uint64_t seed, const std::string& task, const std::string& item_id);

inline double frac(int a, int b) { return b ? static_cast<double>(a) / b : 0; }

}  // namespace ctrust
