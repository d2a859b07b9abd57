// `ctrust gate BASE VARIANT`: a pass/fail decision on a compressed variant against budgets, for CI pipelines
// (docs/gate.md). The checks are built from the item-by-item comparisons (pipeline/runs.h, pipeline/trust_runs.h) and
// decided with their 95% intervals by one of three rules.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/runs.h"
#include "pipeline/trust_runs.h"

namespace ctrust {

// How an interval [low, high] of a "higher is worse" quantity is held against a budget B:
//   Strict      pass iff high <= B: the budget is met with 95% confidence (the default: a gate should not pass
//               what it cannot vouch for; a small sample therefore fails and says why)
//   Significant pass iff low <= B: fail only when the excess is statistically clear
//   Point       pass iff the estimate <= B (the intervals are shown but not used)
enum class GateRule { Strict, Significant, Point };
const char* gate_rule_name(GateRule r);
GateRule gate_rule_from_name(const std::string& name);  // strict | significant | point; Error otherwise

struct GateBudget {
  std::optional<double> max_flips;       // fraction of items whose correctness changed ((c2w + w2c) / n)
  std::optional<double> max_kl;          // nats: mean answer-level KL(base || variant)
  std::optional<double> max_acc_drop;    // fraction: acc_base - acc_variant
  std::optional<double> max_trust_drop;  // points (0-100) per perspective: score_base - score_variant
  GateRule rule = GateRule::Strict;
  bool subtasks = false;  // also check each subtask (e.g. every MMLU subject), not only each run's task
  bool any() const { return max_flips || max_kl || max_acc_drop || max_trust_drop; }
};

struct GateCheck {
  std::string metric;  // flips | kl | acc_drop | trust_drop
  std::string scope;   // the task or the perspective
  int64_t n = 0;       // items (eval) or shared items (trust) the figure is computed on
  bool known = true;   // false: the figure could not be computed (reason says why); such a check fails
  double value = 0, low = 0, high = 0;  // the estimate and its 95% interval, in the metric's unit
  double budget = 0;
  bool pass = false;
  std::string reason;  // one line
};

struct GateResult {
  GateRule rule = GateRule::Strict;
  std::string base, variant;
  std::vector<GateCheck> checks;
  std::vector<std::string> notes;  // from the comparisons (different item sets, compute modes, ...)
  bool pass() const;
  std::string reason() const;  // one line: the first failing check, or that every check is within budget
  nlohmann::json to_json() const;
  std::string to_text() const;
};

// Decides one check (value, interval and budget set; known = true) by the rule; fills pass and reason.
void decide(GateCheck& c, GateRule rule);

// The checks of an evaluation comparison (flips, KL, accuracy drop per task) and of a trust comparison
// (trust drop per perspective), appended to r.
void gate_eval(const Comparison& cmp, const GateBudget& b, GateResult& r);
void gate_trust(const TrustComparison& cmp, const GateBudget& b, GateResult& r);

// Both from a store: evaluation runs and trust runs selected by the same BASE / VARIANT names (or ids).
// Error when no check can be made (no budget given, or the runs share no task or perspective a budget applies to).
GateResult run_gate(const std::string& db, const std::string& base, const std::string& variant, const GateBudget& b);

}  // namespace ctrust
