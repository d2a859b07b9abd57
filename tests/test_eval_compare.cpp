// compare_runs / list_runs / summarize on a results store filled by hand (no model needed).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "base/error.h"
#include "cli_run.h"
#include "report/gate.h"
#include "pipeline/runs.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

StoredItem si(const std::string& task, int id, int pred, int gold, std::vector<double> ll = {-1, -2, -3, -4}) {
  StoredItem it;
  it.task = task;
  it.item_id = std::to_string(id);
  it.ll = std::move(ll);
  it.pred = pred;
  it.gold = gold;
  it.correct = pred == gold;
  it.extra = {{"correct_norm", pred == gold}, {"correct_mean", false}};
  return it;
}

int64_t add_run(Store& s, const std::string& name, const std::string& task, const std::vector<StoredItem>& items,
                const std::string& scoring = "multiple_choice") {
  RunInfo r;
  r.name = name;
  r.model_path = name + ".gguf";
  r.model_fp = name;
  r.tokenizer_fp = "tok";
  r.task = task;
  r.scoring = scoring;
  r.settings = {{"limit", 0}};
  s.open_run(r);
  s.add_items(r.id, items);
  return r.id;
}

std::string make_db() {
  std::string p = test::scratch_dir() + "/compare.db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  Store s(p);
  // arc_easy: 10 items as in EvalMetrics.PairMetricsOnHandTable (c2w 1, w2c 6), plus one item only in a.
  std::vector<StoredItem> a, b;
  a.push_back(si("arc_easy", 0, 0, 0));
  b.push_back(si("arc_easy", 0, 0, 0));
  a.push_back(si("arc_easy", 1, 0, 0));
  b.push_back(si("arc_easy", 1, 1, 0));
  for (int i = 2; i < 8; i++) {
    a.push_back(si("arc_easy", i, 1, 0));
    b.push_back(si("arc_easy", i, 0, 0));
  }
  a.push_back(si("arc_easy", 8, 1, 0));
  b.push_back(si("arc_easy", 8, 2, 0));
  a.push_back(si("arc_easy", 9, 1, 0));
  b.push_back(si("arc_easy", 9, 1, 0));
  a.push_back(si("arc_easy", 10, 1, 0));
  add_run(s, "base", "arc_easy", a);
  add_run(s, "quant", "arc_easy", b);
  // mmlu with two subjects: one flip each way.
  std::vector<StoredItem> ma = {si("mmlu_x", 0, 0, 0), si("mmlu_x", 1, 1, 1), si("mmlu_y", 0, 2, 1)};
  std::vector<StoredItem> mb = {si("mmlu_x", 0, 3, 0), si("mmlu_x", 1, 1, 1), si("mmlu_y", 0, 1, 1)};
  add_run(s, "base", "mmlu", ma);
  add_run(s, "quant", "mmlu", mb);
  // lambada-style: ppl = exp(-mean ll)
  add_run(s, "base", "lambada_openai", {si("lambada_openai", 0, 0, 0, {-1.0}), si("lambada_openai", 1, 0, 0, {-3.0})},
          "loglikelihood");
  return p;
}

}  // namespace

TEST(EvalCompare, RunsByNameOnCommonItems) {
  const std::string db = make_db();
  Comparison c = compare_runs(db, "base", "quant");
  ASSERT_EQ(c.runs_a.size(), 3u);
  ASSERT_EQ(c.runs_b.size(), 2u);
  const auto& arc = c.tasks.at("arc_easy");
  EXPECT_EQ(arc.m.n, 10);
  EXPECT_EQ(arc.only_a, 1);
  EXPECT_EQ(arc.only_b, 0);
  EXPECT_DOUBLE_EQ(arc.m.acc_a, 0.2);
  EXPECT_DOUBLE_EQ(arc.m.acc_b, 0.7);
  EXPECT_EQ(arc.m.c2w, 1);
  EXPECT_EQ(arc.m.w2c, 6);
  EXPECT_DOUBLE_EQ(arc.m.mcnemar_p, 0.125);
  EXPECT_DOUBLE_EQ(arc.m.all_flips, 0.8);
  // mmlu: per subject and the aggregate over both.
  EXPECT_EQ(c.tasks.at("mmlu_x").m.c2w, 1);
  EXPECT_EQ(c.tasks.at("mmlu_y").m.w2c, 1);
  EXPECT_EQ(c.tasks.at("mmlu").m.n, 3);
  EXPECT_DOUBLE_EQ(c.tasks.at("mmlu").m.flips, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(c.tasks.at("mmlu").m.agreement, 1.0 / 3.0);
  // Notes: differing item sets, task only in a.
  std::string notes;
  for (const auto& n : c.notes) notes += n + "\n";
  EXPECT_NE(notes.find("arc_easy: item sets differ (1 only in a, 0 only in b)"), std::string::npos) << notes;
  EXPECT_NE(notes.find("lambada_openai: only in a"), std::string::npos) << notes;

  nlohmann::json j = c.to_json();
  const auto& ja = j["tasks"]["arc_easy"];
  for (const char* k : {"n", "acc_a", "acc_b", "delta_acc", "c2w", "w2c", "flips", "all_flips", "agreement",
                        "kl_ab", "kl_ba", "mcnemar_p", "delta_acc_ci", "flips_ci", "kl_ab_ci"})
    EXPECT_TRUE(ja.contains(k)) << k;
  for (const char* k : {"acc_a", "acc_b", "flips", "all_flips", "agreement", "mcnemar_p"}) {
    EXPECT_GE(ja[k].get<double>(), 0.0) << k;
    EXPECT_LE(ja[k].get<double>(), 1.0) << k;
  }
  EXPECT_EQ(ja["delta_acc_ci"].size(), 2u);
  EXPECT_DOUBLE_EQ(ja["delta_acc"].get<double>(), 0.5);
}

TEST(EvalCompare, SelectByIdAndErrors) {
  const std::string db = make_db();
  auto runs = list_runs(db);
  ASSERT_EQ(runs.size(), 5u);
  EXPECT_EQ(runs[0].n_items, 11);
  Comparison c = compare_runs(db, std::to_string(runs[2].id), std::to_string(runs[3].id));
  ASSERT_EQ(c.tasks.count("mmlu"), 1u);
  EXPECT_EQ(c.tasks.count("arc_easy"), 0u);
  try {
    compare_runs(db, "base", "nobody");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no run named 'nobody' (runs: base, quant)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(compare_runs(db, "999", "base"), Error);
  EXPECT_EQ(to_json(runs)["runs"].size(), 5u);
}

TEST(EvalCompare, SummaryPerSubtaskAndAggregate) {
  const std::string db = make_db();
  Store s(db);
  auto runs = s.list_runs();
  auto sum = summarize(runs[2], s.items(runs[2].id));  // base mmlu
  ASSERT_EQ(sum.size(), 3u);
  EXPECT_EQ(sum[0].task, "mmlu");
  EXPECT_EQ(sum[0].n, 3);
  EXPECT_DOUBLE_EQ(sum[0].acc, 2.0 / 3.0);
  EXPECT_EQ(sum[1].task, "mmlu_x");
  EXPECT_DOUBLE_EQ(sum[1].acc, 1.0);
  EXPECT_DOUBLE_EQ(sum[2].acc_mean, 0.0);
  auto lam = summarize(runs[4], s.items(runs[4].id));
  ASSERT_EQ(lam.size(), 1u);
  EXPECT_NEAR(lam[0].ppl, std::exp(2.0), 1e-12);  // exp(-mean(-1, -3))
}

// Runs made in different compute modes (settings "compute": "native"; absent = f32) are compared with a WARNING
// note naming both modes; runs in the same mode get none.
TEST(EvalCompare, WarnsWhenComputeModesDiffer) {
  EXPECT_EQ(run_compute_mode(nlohmann::json::object()), "f32");
  EXPECT_EQ(run_compute_mode({{"compute", "native"}}), "native");
  std::string p = test::scratch_dir() + "/compare_modes.db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  {
    Store s(p);
    std::vector<StoredItem> items = {si("arc_easy", 0, 0, 0), si("arc_easy", 1, 1, 0)};
    add_run(s, "f32run", "arc_easy", items);
    add_run(s, "f32run2", "arc_easy", items);
    RunInfo r;
    r.name = "nativerun";
    r.model_path = "m.gguf";
    r.model_fp = "native-fp";
    r.tokenizer_fp = "tok";
    r.task = "arc_easy";
    r.scoring = "multiple_choice";
    r.settings = {{"limit", 0}, {"compute", "native"}};
    s.open_run(r);
    s.add_items(r.id, items);
  }
  auto joined = [](const Comparison& c) {
    std::string n;
    for (const auto& x : c.notes) n += x + "\n";
    return n;
  };
  const std::string mixed = joined(compare_runs(p, "f32run", "nativerun"));
  EXPECT_NE(mixed.find("WARNING"), std::string::npos) << mixed;
  EXPECT_NE(mixed.find("computed in the f32 mode"), std::string::npos) << mixed;
  EXPECT_NE(mixed.find("in the native mode"), std::string::npos) << mixed;
  const std::string same = joined(compare_runs(p, "f32run", "f32run2"));
  EXPECT_EQ(same.find("WARNING"), std::string::npos) << same;
}

// ---- ctrust gate (report/gate.h) on the same hand-filled store ----

TEST(Gate, DecideByRuleOnHandIntervals) {
  // flips 7% with interval [4%, 10%] against a budget of 8%: the three rules disagree as designed.
  GateCheck c;
  c.metric = "flips";
  c.scope = "t";
  c.value = 0.07, c.low = 0.04, c.high = 0.10, c.budget = 0.08;
  decide(c, GateRule::Strict);
  EXPECT_FALSE(c.pass);
  EXPECT_NE(c.reason.find("t: flips 7.00% [4.00, 10.00], 95% upper bound over budget 8.00%"), std::string::npos)
      << c.reason;
  decide(c, GateRule::Point);
  EXPECT_TRUE(c.pass);
  decide(c, GateRule::Significant);
  EXPECT_TRUE(c.pass);
  c.budget = 0.03;  // now even the lower bound is over
  decide(c, GateRule::Significant);
  EXPECT_FALSE(c.pass);
  c.budget = 0.10;  // the bound equal to the budget is within it
  decide(c, GateRule::Strict);
  EXPECT_TRUE(c.pass);
  c.high = std::nan("");  // no interval: the check fails as unknown
  decide(c, GateRule::Point);
  EXPECT_FALSE(c.pass);
  EXPECT_FALSE(c.known);
  EXPECT_THROW(gate_rule_from_name("lenient"), Error);
}

TEST(Gate, EvalBudgetsOnStoredRuns) {
  const std::string db = make_db();
  // arc_easy: flips 7/10 (bootstrap 95% interval [0.4, 1.0] or so: Binomial(10, 0.7) / 10), accuracy +50 points;
  // mmlu: flips 2/3; every item's choice scores are the same in both runs, so KL is 0 with interval [0, 0].
  GateBudget b;
  b.max_flips = 0.75;
  b.rule = GateRule::Point;
  GateResult r = run_gate(db, "base", "quant", b);
  ASSERT_EQ(r.checks.size(), 2u);  // the run tasks arc_easy and mmlu (lambada is only in base)
  EXPECT_TRUE(r.pass()) << r.to_text();
  EXPECT_EQ(r.checks[0].scope, "arc_easy");
  EXPECT_DOUBLE_EQ(r.checks[0].value, 0.7);
  EXPECT_EQ(r.checks[0].n, 10);
  EXPECT_GT(r.checks[0].high, 0.75);  // P(X >= 9) = 0.149 for X ~ Binomial(10, 0.7)
  b.rule = GateRule::Strict;
  r = run_gate(db, "base", "quant", b);
  EXPECT_FALSE(r.pass());
  EXPECT_EQ(r.reason().rfind("FAIL: arc_easy: flips 70.00%", 0), 0u) << r.reason();
  // Subtasks add the two MMLU subjects.
  b.subtasks = true;
  EXPECT_EQ(run_gate(db, "base", "quant", b).checks.size(), 4u);
  b.subtasks = false;
  // Accuracy drop budget 0 and KL budget 0, strict: arc_easy's accuracy went up by 50 points [10, 90] and passes;
  // mmlu's 3 items (one flip each way) give a drop of 0 with interval [-100, 100]: not vouched for, FAIL.
  // The significant rule passes it (its lower bound is not over budget).
  GateBudget z;
  z.max_acc_drop = 0;
  z.max_kl = 0;
  r = run_gate(db, "base", "quant", z);
  ASSERT_EQ(r.checks.size(), 4u);
  EXPECT_FALSE(r.pass()) << r.to_text();
  EXPECT_EQ(r.checks[0].metric, "acc_drop");
  EXPECT_TRUE(r.checks[0].pass);
  EXPECT_TRUE(r.checks[1].pass);  // KL 0 [0, 0]
  EXPECT_EQ(r.checks[2].scope, "mmlu");
  EXPECT_FALSE(r.checks[2].pass);
  EXPECT_NE(r.reason().find("mmlu: accuracy drop 0.00% [-100.00, 100.00], 95% upper bound over budget 0.00%"),
            std::string::npos) << r.reason();
  z.rule = GateRule::Significant;
  EXPECT_TRUE(run_gate(db, "base", "quant", z).pass());
  // Errors: no budget; a trust budget without trust runs; a run missing.
  EXPECT_THROW(run_gate(db, "base", "quant", GateBudget{}), Error);
  GateBudget t;
  t.max_trust_drop = 5;
  EXPECT_THROW(run_gate(db, "base", "quant", t), Error);
  EXPECT_THROW(run_gate(db, "base", "nobody", b), Error);
}

TEST(Gate, CliExitStatus) {
  if (!fs::exists(test::ctrust_bin())) GTEST_SKIP() << "no ctrust binary at " << test::ctrust_bin();
  const std::string db = make_db();
  auto gate = [&](const std::string& args) { return test::run_ctrust("gate base quant --db " + db + " " + args, "gate"); };
  test::CliResult ok = gate("--max-flips 75 --rule point");
  EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
  EXPECT_EQ(ok.out.rfind("gate base -> quant: PASS: all 2 checks within budget (rule point)", 0), 0u) << ok.out;
  test::CliResult over = gate("--max-flips 75 --json");
  EXPECT_EQ(over.status, 1) << over.out << over.err;
  const auto j = nlohmann::json::parse(over.out);
  EXPECT_FALSE(j["pass"].get<bool>());
  EXPECT_EQ(j["rule"], "strict");
  EXPECT_EQ(j["checks"].size(), 2u);
  test::CliResult none = gate("");
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.err.find("gate: no budget given"), std::string::npos) << none.err;
  test::CliResult nodb = test::run_ctrust("gate base quant --max-flips 5 --db " + db + ".missing", "gate");
  EXPECT_EQ(nodb.status, 2);
  EXPECT_NE(nodb.err.find("does not exist"), std::string::npos) << nodb.err;
}
