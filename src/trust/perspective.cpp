#include "trust/perspective.h"

#include "trust/metrics.h"

namespace ctrust {

TrustTaskSpec classification_task(std::string name, std::vector<TrustItem> items,
                             std::function<std::string(const TrustItem&, const std::string&)> parse_answer) {
  TrustTaskSpec t;
  t.name = std::move(name);
  t.items = std::move(items);
  t.parse = [parse_answer](const TrustItem& it, TrustRecord& r) {
    r.parsed = parse_answer(it, r.output);
    r.correct = !r.parsed.empty() && r.parsed == it.label;
    r.refused = r.parsed.empty();
  };
  return t;
}

ClassificationSummary score_classification(const std::vector<TaskRun>& runs, PerspectiveResult& pr) {
  ClassificationSummary cs;
  for (const TaskRun& tr : runs) {
    RateStats s;
    for (const auto& r : tr.recs) { ++s.n; s.correct += r.correct; s.refused += r.refused; }
    if (s.n == 0) continue;
    cs.accuracies.push_back(s.accuracy());
    cs.refused += s.refused;
    cs.total += s.n;
    pr.metrics[tr.spec->name] = {{"accuracy", s.accuracy()}, {"refusal_rate", s.refusal_rate()}, {"n", s.n}};
  }
  return cs;
}

}  // namespace ctrust
