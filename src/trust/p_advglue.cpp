// Adversarial robustness (DecodingTrust adv-glue/): AdvGLUE dev, six tasks; score = mean accuracy.
#include "trust/metrics.h"
#include "trust/parse.h"
#include "trust/perspective.h"

namespace ctrust {

PerspectivePlan plan_advglue(const TrustOptions& opt) {
  PerspectivePlan plan;
  for (const auto& t : advglue_tasks())
    plan.tasks.push_back(classification_task(t, advglue_items(opt.paths, t), [](const TrustItem& it, const std::string& out) {
      int l = parse_advglue(out, it.task);
      if (l < 0) return std::string();
      // label index -> answer word, the inverse of the task's mapping
      if (it.task == "qqp") return std::string(l == 1 ? "yes" : "no");
      return it.options.at(static_cast<size_t>(l));
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
