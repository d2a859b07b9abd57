// ctrust gate: exit status 0 when a compressed variant stays within its budgets, 1 when not, 2 on error.
#include <fmt/format.h>

#include "cli/common.h"
#include "report/gate.h"

namespace ctrust::cli {

namespace {
struct GateArgs {
  std::string base, variant, db = "ctrust.db", rule = "strict";
  double max_flips = -1, max_kl = -1, max_acc_drop = -1, max_trust_drop = -1;
  bool subtasks = false;
};
}  // namespace

void register_gate_commands(CLI::App& app) {
  static GateArgs a;
  static Common o;
  auto* c = app.add_subcommand(
      "gate", "Pass/fail a compressed variant against budgets (exit 0 = within budget, 1 = over, 2 = error)");
  c->add_option("BASE", a.base, "Base run (name or id)")->required();
  c->add_option("VARIANT", a.variant, "Variant run (name or id)")->required();
  c->add_option("--db", a.db, kDbHelp);
  c->add_option("--max-flips", a.max_flips, "Budget: % of items whose correctness changed, per task")
      ->check(CLI::Range(0.0, 100.0));
  c->add_option("--max-kl", a.max_kl, "Budget: mean answer-level KL(base||variant) in nats, per task")
      ->check(CLI::Range(0.0, 1e9));
  c->add_option("--max-acc-drop", a.max_acc_drop, "Budget: accuracy drop in % points, per task")
      ->check(CLI::Range(0.0, 100.0));
  c->add_option("--max-trust-drop", a.max_trust_drop, "Budget: score drop (0-100 points) per trust perspective")
      ->check(CLI::Range(0.0, 100.0));
  c->add_option("--rule", a.rule,
                "How the 95% intervals are used: strict (pass when the upper bound is within budget; default), "
                "significant (fail only when the lower bound is over), point (the estimate only)")
      ->check(CLI::IsMember({"strict", "significant", "point"}));
  c->add_flag("--subtasks", a.subtasks, "Also check every subtask (e.g. each MMLU subject)");
  add_common(c, o);  // -t is accepted like everywhere; the gate computes no model
  c->callback([] {
    error_exit_status() = 2;
    GateBudget b;
    if (a.max_flips >= 0) b.max_flips = a.max_flips / 100;
    if (a.max_kl >= 0) b.max_kl = a.max_kl;
    if (a.max_acc_drop >= 0) b.max_acc_drop = a.max_acc_drop / 100;
    if (a.max_trust_drop >= 0) b.max_trust_drop = a.max_trust_drop;
    b.rule = gate_rule_from_name(a.rule);
    b.subtasks = a.subtasks;
    const GateResult r = run_gate(a.db, a.base, a.variant, b);
    if (o.json) print_json(r.to_json());
    else fmt::print("{}", r.to_text());
    std::fflush(stdout);
    if (!r.pass()) throw ExitStatus{1};
  });
}

}  // namespace ctrust::cli
