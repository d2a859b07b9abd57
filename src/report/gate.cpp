#include "report/gate.h"

#include <cmath>
#include <set>

#include <fmt/format.h>

#include "base/error.h"
#include "store/store.h"

namespace ctrust {

using nlohmann::json;

const char* gate_rule_name(GateRule r) {
  switch (r) {
    case GateRule::Strict: return "strict";
    case GateRule::Significant: return "significant";
    case GateRule::Point: return "point";
  }
  return "?";
}

GateRule gate_rule_from_name(const std::string& name) {
  if (name == "strict") return GateRule::Strict;
  if (name == "significant") return GateRule::Significant;
  if (name == "point") return GateRule::Point;
  fail("gate: unknown rule '{}' (strict, significant or point)", name);
}

namespace {

// The unit a metric is shown in: fractions as percent, KL in nats, trust scores in points.
double shown(const std::string& metric, double v) { return metric == "flips" || metric == "acc_drop" ? 100 * v : v; }
const char* unit(const std::string& metric) {
  if (metric == "flips" || metric == "acc_drop") return "%";
  if (metric == "kl") return " nats";
  return " points";
}
std::string num(const std::string& metric, double v) {
  v += 0.0;  // -0 (a negated zero difference) prints as 0
  return metric == "kl" ? fmt::format("{:.5f}", v) : fmt::format("{:.2f}", shown(metric, v));
}
std::string label(const std::string& metric) {
  if (metric == "flips") return "flips";
  if (metric == "kl") return "KL(base||variant)";
  if (metric == "acc_drop") return "accuracy drop";
  return "trust drop";
}

GateCheck unknown(const std::string& metric, const std::string& scope, double budget, const std::string& why) {
  GateCheck c;
  c.metric = metric;
  c.scope = scope;
  c.known = false;
  c.budget = budget;
  c.pass = false;
  c.reason = fmt::format("{}: {} cannot be checked: {}", scope, label(metric), why);
  return c;
}

}  // namespace

void decide(GateCheck& c, GateRule rule) {
  if (!c.known || !std::isfinite(c.value) || !std::isfinite(c.low) || !std::isfinite(c.high)) {
    c.known = false;
    c.pass = false;
    if (c.reason.empty()) c.reason = fmt::format("{}: {} has no value", c.scope, label(c.metric));
    return;
  }
  const double held = rule == GateRule::Strict ? c.high : rule == GateRule::Significant ? c.low : c.value;
  c.pass = held <= c.budget;
  const char* which = rule == GateRule::Strict ? "95% upper bound" : rule == GateRule::Significant ? "95% lower bound"
                                                                                                   : "estimate";
  c.reason = fmt::format("{}: {} {}{} [{}, {}], {} {} budget {}{}", c.scope, label(c.metric), num(c.metric, c.value),
                         unit(c.metric), num(c.metric, c.low), num(c.metric, c.high), which,
                         c.pass ? "within" : "over", num(c.metric, c.budget), unit(c.metric));
}

bool GateResult::pass() const {
  for (const GateCheck& c : checks)
    if (!c.pass) return false;
  return !checks.empty();
}

std::string GateResult::reason() const {
  int failed = 0;
  const GateCheck* first = nullptr;
  for (const GateCheck& c : checks)
    if (!c.pass) {
      if (!first) first = &c;
      failed++;
    }
  if (!first) return fmt::format("PASS: all {} checks within budget (rule {})", checks.size(), gate_rule_name(rule));
  return fmt::format("FAIL: {}{} (rule {})", first->reason,
                     failed > 1 ? fmt::format("; {} more check(s) failed", failed - 1) : std::string(),
                     gate_rule_name(rule));
}

json GateResult::to_json() const {
  json cs = json::array();
  for (const GateCheck& c : checks) {
    json j = {{"metric", c.metric}, {"scope", c.scope}, {"n", c.n},       {"known", c.known},
              {"budget", c.budget}, {"pass", c.pass},   {"reason", c.reason}};
    if (c.known) {
      j["value"] = c.value;
      j["ci_low"] = c.low;
      j["ci_high"] = c.high;
    }
    cs.push_back(j);
  }
  return {{"pass", pass()}, {"reason", reason()}, {"rule", gate_rule_name(rule)}, {"base", base},
          {"variant", variant}, {"checks", cs},  {"notes", notes}};
}

std::string GateResult::to_text() const {
  std::string s = fmt::format("gate {} -> {}: {}\n", base, variant, reason());
  s += fmt::format("  {:<18} {:<40} {:>6} {:>28} {:>10}  {}\n", "check", "scope", "n", "estimate [95% CI]", "budget",
                   "result");
  for (const GateCheck& c : checks) {
    const std::string est = c.known ? fmt::format("{} [{}, {}]", num(c.metric, c.value), num(c.metric, c.low),
                                                  num(c.metric, c.high))
                                    : std::string("-");
    s += fmt::format("  {:<18} {:<40} {:>6} {:>28} {:>10}  {}\n",
                     label(c.metric) + (c.metric == "kl" ? "" : c.metric == "trust_drop" ? " (pt)" : " (%)"), c.scope,
                     c.n, est, num(c.metric, c.budget), c.pass ? "pass" : c.known ? "FAIL" : "FAIL (unknown)");
  }
  s += fmt::format(
      "rule {}: {}; a check whose figure cannot be computed fails. Exit status 0 = pass, 1 = fail, 2 = error.\n",
      gate_rule_name(rule),
      rule == GateRule::Strict        ? "a check passes when its 95% upper bound is within budget"
      : rule == GateRule::Significant ? "a check fails only when its 95% lower bound is over budget"
                                      : "a check passes when its estimate is within budget");
  for (const std::string& n : notes) s += "note: " + n + "\n";
  return s;
}

void gate_eval(const Comparison& cmp, const GateBudget& b, GateResult& r) {
  std::set<std::string> run_tasks;
  for (const RunInfo& ra : cmp.runs_a) run_tasks.insert(ra.task);
  for (const auto& entry : cmp.tasks) {
    // Not a structured binding: clang 14 (the sanitizer tree's compiler) cannot capture one in a lambda.
    const std::string& name = entry.first;
    const auto& t = entry.second;
    const PairMetrics& m = t.m;
    if (!b.subtasks && !run_tasks.count(name)) continue;
    auto add = [&](const char* metric, double budget, double v, double lo, double hi) {
      GateCheck c;
      c.metric = metric;
      c.scope = name;
      c.n = m.n;
      c.value = v;
      c.low = lo;
      c.high = hi;
      c.budget = budget;
      decide(c, b.rule);
      r.checks.push_back(c);
    };
    if (m.n == 0) {
      for (auto [metric, budget] : {std::pair{"flips", b.max_flips}, {"kl", b.max_kl}, {"acc_drop", b.max_acc_drop}})
        if (budget) r.checks.push_back(unknown(metric, name, *budget, "no item in both runs"));
      continue;
    }
    if (b.max_flips) add("flips", *b.max_flips, m.flips, m.flips_ci[0], m.flips_ci[1]);
    if (b.max_acc_drop) add("acc_drop", *b.max_acc_drop, -m.delta_acc, -m.delta_acc_ci[1], -m.delta_acc_ci[0]);
    if (b.max_kl) {
      if (t.ppl_a >= 0)  // one continuation per item: there is no distribution over choices
        r.notes.push_back(fmt::format("{}: a likelihood task (perplexity): the KL budget does not apply", name));
      else
        add("kl", *b.max_kl, m.kl_ab, m.kl_ab_ci[0], m.kl_ab_ci[1]);
    }
  }
  for (const std::string& n : cmp.notes) r.notes.push_back(n);
}

void gate_trust(const TrustComparison& cmp, const GateBudget& b, GateResult& r) {
  if (!b.max_trust_drop) return;
  const double budget = *b.max_trust_drop;
  for (const std::string& p : cmp.order) {
    auto it = cmp.perspectives.find(p);
    if (it == cmp.perspectives.end()) continue;
    const TrustPerspectiveCompare& pc = it->second;
    if (pc.score_a < 0 && pc.score_b < 0) continue;
    if (pc.score_a < 0 || pc.score_b < 0) {
      r.checks.push_back(unknown("trust_drop", p, budget, pc.score_a < 0 ? "not in the base run" : "not in the variant run"));
      continue;
    }
    if (!pc.paired) {
      r.checks.push_back(unknown("trust_drop", p, budget, pc.note.empty() ? "no paired difference" : pc.note));
      continue;
    }
    GateCheck c;
    c.metric = "trust_drop";
    c.scope = p;
    c.n = pc.paired->items;
    c.value = -pc.paired->delta;
    c.low = -pc.paired->ci.high;
    c.high = -pc.paired->ci.low;
    c.budget = budget;
    decide(c, b.rule);
    r.checks.push_back(c);
  }
  for (const std::string& n : cmp.notes) r.notes.push_back(n);
}

GateResult run_gate(const std::string& db, const std::string& base, const std::string& variant, const GateBudget& b) {
  if (!b.any()) fail("gate: no budget given (--max-flips, --max-kl, --max-acc-drop or --max-trust-drop)");
  GateResult r;
  r.rule = b.rule;
  r.base = base;
  r.variant = variant;
  bool eval_a = false, eval_b = false, trust_a = false, trust_b = false;
  {
    Store s(db, StoreMode::ReadOnly);
    trust_a = is_trust_run(s, base);
    trust_b = is_trust_run(s, variant);
    const auto runs = s.list_runs();
    auto has_eval = [&](const std::string& sel) {
      for (const RunInfo& ri : runs)
        if (ri.task != "trust" && (ri.name == sel || std::to_string(ri.id) == sel)) return true;
      return false;
    };
    eval_a = has_eval(base);
    eval_b = has_eval(variant);
  }
  // A budget that was asked for is checked or the gate is an error: it never passes unchecked.
  auto missing = [](bool a, bool b, const std::string& sa, const std::string& sb) {
    return !a && !b ? fmt::format("neither '{}' nor '{}' has one", sa, sb)
                    : fmt::format("'{}' has none", a ? sb : sa);
  };
  if (b.max_flips || b.max_kl || b.max_acc_drop) {
    if (!eval_a || !eval_b)
      fail("gate: the flips, KL and accuracy budgets need an evaluation run of both models; {} (ctrust runs)",
           missing(eval_a, eval_b, base, variant));
    gate_eval(compare_runs(db, base, variant), b, r);
  }
  if (b.max_trust_drop) {
    if (!trust_a || !trust_b)
      fail("gate: --max-trust-drop needs a trust run of both models; {} (ctrust runs)",
           missing(trust_a, trust_b, base, variant));
    gate_trust(compare_trust_runs(db, base, variant), b, r);
  }
  if (r.checks.empty()) fail("gate: no check could be made: the runs share no task or perspective a budget applies to");
  return r;
}

}  // namespace ctrust
