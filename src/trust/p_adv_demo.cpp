// Adversarial demonstrations (DecodingTrust adv_demonstration/): counterfactual SNLI demonstrations;
// score = mean accuracy.
#include "trust/metrics.h"
#include "trust/parse.h"
#include "trust/perspective.h"

namespace ctrust {

PerspectivePlan plan_adv_demo(const TrustOptions& opt) {
  PerspectivePlan plan;
  for (const auto& t : adv_demo_tasks())
    plan.tasks.push_back(classification_task(t, adv_demo_items(opt.paths, t), [](const TrustItem& it, const std::string& out) {
      return parse_classification(out, it.options);
    }));
  plan.score = [](const std::vector<TaskRun>& runs) {
    PerspectiveResult pr;
    ClassificationSummary cs = score_classification(runs, pr);
    pr.score = mean_score(cs.accuracies);
    pr.refusal_rate = frac(cs.refused, cs.total);
    pr.items = cs.total;
    return pr;
  };
  return plan;
}

}  // namespace ctrust
