// Golden agreement with DecodingTrust's own scoring code: tests/golden/trust_<perspective>.json hold the labels
// and sub-scores that the paper's fork (decoding-comp-trust/DecodingTrust, run by scripts/ref/dt_oracle.py)
// computes on the answers of a stored SmolLM2-135M-Instruct trust run and on hand-written tricky answers
// (tests/data/trust/tricky_answers.json). Here the same answers go through ctrust's parse and score functions
// (the perspectives' plans); per-answer labels must be equal, sub-scores equal up to floating-point summation
// order (1e-9).
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_paths.h"
#include "trust/perspective.h"

using namespace ctrust;
using json = nlohmann::json;

namespace {

constexpr double kTol = 1e-9;

json golden(const std::string& name) {
  std::ifstream f(test::source_dir() + "/tests/golden/" + name);
  if (!f) ADD_FAILURE() << "missing golden file " << name << " (scripts/ref/dt_oracle.py)";
  return f ? json::parse(f) : json::object();
}

TrustOptions options(uint64_t seed = 0) {
  TrustOptions o;
  o.paths = trust_paths(test::shared_dir() + "/data");
  o.seed = seed;
  return o;
}

size_t task_index(const PerspectivePlan& plan, const std::string& task) {
  for (size_t i = 0; i < plan.tasks.size(); ++i)
    if (plan.tasks[i].name == task) return i;
  ADD_FAILURE() << "no task '" << task << "' in the plan";
  return 0;
}

// One golden answer through the task's parse function.
TrustRecord parsed(const PerspectivePlan& plan, const json& g) {
  const TrustTaskSpec& spec = plan.tasks[task_index(plan, g.at("task"))];
  TrustRecord r;
  r.perspective = spec.items.at(0).perspective;
  r.task = g.at("task");
  r.item_id = g.at("item_id");
  r.output = g.at("output");
  spec.parse(spec.items.at(g.at("item").get<size_t>()), r);
  return r;
}

// The golden's stored answers as the TaskRuns the score function takes (plan order, answers in stored order).
std::vector<TaskRun> runs_of(const PerspectivePlan& plan, const json& records) {
  std::vector<TaskRun> runs(plan.tasks.size());
  for (size_t i = 0; i < plan.tasks.size(); ++i) runs[i].spec = &plan.tasks[i];
  for (const auto& g : records) {
    size_t t = task_index(plan, g.at("task"));
    runs[t].recs.push_back(parsed(plan, g));
    runs[t].item.push_back(g.at("item").get<size_t>());
  }
  return runs;
}

std::string trace(const json& g) { return g.at("task").get<std::string>() + " #" + g.at("item_id").get<std::string>() + ": '" + g.at("output").get<std::string>() + "'"; }

}  // namespace

TEST(TrustOracle, EthicsLabelsAndScoresEqualDecodingTrust) {
  json gold = golden("trust_ethics.json");
  PerspectivePlan plan = plan_ethics(options());
  int n = 0;
  for (const char* part : {"records", "tricky"})
    for (const auto& g : gold.at(part)) {
      SCOPED_TRACE(trace(g));
      TrustRecord r = parsed(plan, g);
      const json& f = g.at("fork");
      EXPECT_EQ(!r.refused, f.at("valid").get<bool>());
      if (g.at("task") == "commonsense") EXPECT_EQ(r.correct, f.at("correct").get<bool>());
      else EXPECT_EQ(!r.refused && !r.correct, f.at("false_positive").get<bool>());
      ++n;
    }
  EXPECT_GE(n, 80);
  PerspectiveResult pr = plan.score(runs_of(plan, gold.at("records")));
  const json& s = gold.at("subscores");
  for (const char* k : {"acc_zero", "ref_zero", "avg_fpr_jb", "avg_ref_jb", "avg_fpr_ev", "avg_ref_ev"})
    EXPECT_NEAR(pr.metrics.at(k).get<double>(), s.at(k).get<double>(), kTol) << k;
  EXPECT_NEAR(pr.score, s.at("agg_score").get<double>(), kTol);
  EXPECT_NEAR(pr.refusal_rate * 100, s.at("ref_rate").get<double>(), kTol);
  EXPECT_FALSE(pr.missing.empty());  // few-shot: cm_train.csv missing
}

TEST(TrustOracle, FairnessLabelsAndScoresEqualDecodingTrust) {
  json gold = golden("trust_fairness.json");
  PerspectivePlan plan = plan_fairness(options(gold.at("seed").get<uint64_t>()));
  int n = 0;
  for (const char* part : {"records", "tricky"})
    for (const auto& g : gold.at(part)) {
      SCOPED_TRACE(trace(g));
      TrustRecord r = parsed(plan, g);
      const json& f = g.at("fork");
      bool crime = g.at("task").get<std::string>().rfind("crime", 0) == 0;
      EXPECT_EQ(!r.refused, f.at("answered").get<bool>());
      EXPECT_EQ(r.parsed == (crime ? "low" : "yes") ? 1 : 0, f.at("prediction").get<int>());
      ++n;
    }
  EXPECT_GE(n, 60);
  PerspectiveResult pr = plan.score(runs_of(plan, gold.at("records")));
  const json& s = gold.at("subscores");
  for (const auto& [setting, v] : s.at("settings").items()) {
    SCOPED_TRACE(setting);
    const json& m = pr.metrics.at(setting);
    EXPECT_NEAR(m.at("accuracy").get<double>(), v.at("accuracy").get<double>(), kTol);
    EXPECT_NEAR(m.at("demographic_parity_difference").get<double>(), v.at("demographic parity difference").get<double>(), kTol);
    EXPECT_NEAR(m.at("equalized_odds_difference").get<double>(), v.at("equalized odds difference").get<double>(), kTol);
    EXPECT_NEAR(m.at("rejection_rate").get<double>(), v.at("rejection rate").get<double>(), kTol);
  }
  EXPECT_NEAR(pr.metrics.at("averaged_accuracy").get<double>(), s.at("averaged accuracy").get<double>(), kTol);
  EXPECT_NEAR(pr.metrics.at("averaged_demographic_parity_difference").get<double>(),
              s.at("averaged demographic parity difference").get<double>(), kTol);
  EXPECT_NEAR(pr.metrics.at("averaged_equalized_odds_difference").get<double>(),
              s.at("averaged equalized odds difference").get<double>(), kTol);
  EXPECT_NEAR(pr.metrics.at("fairness_score_dpd_only").get<double>(), s.at("fairness score").get<double>(), kTol);
  EXPECT_NEAR(pr.score, s.at("fairness score (new)").get<double>(), kTol);
  EXPECT_NEAR(pr.refusal_rate, s.at("rejection rate").get<double>(), kTol);
}

TEST(TrustOracle, OodLabelsAndScoresEqualDecodingTrust) {
  json gold = golden("trust_ood.json");
  PerspectivePlan plan = plan_ood(options());
  int n = 0;
  for (const char* part : {"records", "tricky"})
    for (const auto& g : gold.at(part)) {
      SCOPED_TRACE(trace(g));
      TrustRecord r = parsed(plan, g);
      const json& f = g.at("fork");
      EXPECT_EQ(r.correct, f.at("correct").get<bool>());
      if (f.contains("abstain")) EXPECT_EQ(r.refused, f.at("abstain").get<bool>());
      else EXPECT_EQ(r.parsed.empty(), f.at("no_answer").get<bool>());
      ++n;
    }
  EXPECT_GE(n, 80);
  PerspectiveResult pr = plan.score(runs_of(plan, gold.at("records")));
  const json& s = gold.at("subscores");
  for (const auto& [task, v] : s.at("tasks").items()) {
    SCOPED_TRACE(task);
    for (const auto& [k, x] : v.items()) EXPECT_NEAR(pr.metrics.at(task).at(k).get<double>(), x.get<double>(), kTol) << k;
  }
  ASSERT_TRUE(s.at("subscores").is_object());
  EXPECT_EQ(s.at("subscores").size(), 8u);  // 4 sub-scores and their refusal rates
  for (const auto& [k, x] : s.at("subscores").items())
    EXPECT_NEAR(pr.metrics.at("subscores").at(k).get<double>(), x.get<double>(), kTol) << k;
  EXPECT_NEAR(pr.metrics.at("rr").get<double>(), s.at("rr").get<double>(), kTol);
  EXPECT_NEAR(pr.score, s.at("score").get<double>(), kTol);
  EXPECT_NEAR(pr.refusal_rate * 100, s.at("rr").get<double>(), kTol);
}

TEST(TrustOracle, AdvDemonstrationLabelsAndScoresEqualDecodingTrust) {
  json gold = golden("trust_adv_demonstration.json");
  PerspectivePlan plan = plan_adv_demo(options());
  int n = 0;
  for (const char* part : {"records", "tricky"})
    for (const auto& g : gold.at(part)) {
      SCOPED_TRACE(trace(g));
      TrustRecord r = parsed(plan, g);
      EXPECT_EQ(r.correct, g.at("fork").at("correct").get<bool>());
      EXPECT_EQ(r.refused, g.at("fork").at("refused").get<bool>());
      ++n;
    }
  EXPECT_GE(n, 80);
  PerspectiveResult pr = plan.score(runs_of(plan, gold.at("records")));
  const json& s = gold.at("subscores");
  // Per data file: the fork's key "snli_premise_cf/42" or "badword_setup1_cacc/42".
  int sets = 0;
  for (const TrustTaskSpec& t : plan.tasks) {
    if (!pr.metrics.contains(t.name)) continue;
    std::string key = t.name;
    if (key.rfind("counterfactual/", 0) == 0) {
      key = key.substr(15);
    } else {  // backdoor/experiment1/sst-2_<setup>_<attack>_<k>/<seed>
      std::string tail = key.substr(key.find("sst-2_") + 6);  // <setup>_<attack>_<k>/<seed>
      size_t a = tail.find('_'), b = tail.find('_', a + 1), c = tail.find('/');
      key = tail.substr(a + 1, b - a - 1) + "_" + tail.substr(0, a) + "_" + tail.substr(b + 1, c - b - 1) + tail.substr(c);
    }
    SCOPED_TRACE(key);
    ASSERT_TRUE(s.at("sets").contains(key));
    EXPECT_NEAR(pr.metrics.at(t.name).at("acc").get<double>(), s.at("sets").at(key).at(0).get<double>(), kTol);
    EXPECT_NEAR(pr.metrics.at(t.name).at("rej").get<double>(), s.at("sets").at(key).at(1).get<double>(), kTol);
    ++sets;
  }
  EXPECT_EQ(sets, static_cast<int>(s.at("sets").size()));
  EXPECT_GE(sets, 30);  // every counterfactual task and backdoor (attack, setup, cacc/asr) with at least one seed
  const json& cf = s.at("counterfactual");
  const json& bd = s.at("backdoor");
  ASSERT_TRUE(cf.is_object() && bd.is_object()) << "the fork computed no counterfactual/backdoor score";
  EXPECT_NEAR(pr.metrics.at("counterfactual").at("avg_acc").get<double>(), cf.at("avg_acc").get<double>(), kTol);
  EXPECT_NEAR(pr.metrics.at("counterfactual").at("avg_rej").get<double>(), cf.at("avg_rej").get<double>(), kTol);
  for (const char* k : {"avg_cacc", "1-avg_asr", "cacc_avg_rej", "asr_avg_rej"})
    EXPECT_NEAR(pr.metrics.at("backdoor").at(k).get<double>(), bd.at(k).get<double>(), kTol) << k;
  // aggregate_all's mean over the parts present (spurious is missing upstream; the fork would return None).
  EXPECT_NEAR(pr.score, 100 * (cf.at("avg_acc").get<double>() + bd.at("1-avg_asr").get<double>()) / 2, kTol);
  EXPECT_NEAR(pr.refusal_rate, (cf.at("avg_rej").get<double>() + bd.at("asr_avg_rej").get<double>()) / 2, kTol);
  ASSERT_EQ(pr.missing.size(), 1u);
  EXPECT_NE(pr.missing[0].find("spurious"), std::string::npos);
}

// The two score bugs the issue names, on hand-built answers through the real plans.
TEST(TrustOracle, AnsweringFourEverywhereIsNotAnAbstention) {
  PerspectivePlan plan = plan_ood(options());
  std::vector<TaskRun> runs(plan.tasks.size());
  for (size_t t = 0; t < plan.tasks.size(); ++t) {
    runs[t].spec = &plan.tasks[t];
    for (size_t i = 0; i < 5; ++i) {
      TrustRecord r;
      r.task = plan.tasks[t].name;
      r.item_id = std::to_string(i);
      r.output = "4";
      plan.tasks[t].parse(plan.tasks[t].items[i], r);
      runs[t].recs.push_back(r);
      runs[t].item.push_back(i);
    }
  }
  PerspectiveResult pr = plan.score(runs);
  // evaluation_ood.py: "4" is no digit answer and holds no refusal word -> wrong: ACC 0, RR 0, MACC 0.
  EXPECT_EQ(pr.metrics.at("qa_2023_idk").at("rr").get<double>(), 0.0);
  EXPECT_EQ(pr.metrics.at("subscores").at("knowledge").get<double>(), 0.0);
  EXPECT_EQ(pr.metrics.at("subscores").at("knowledge_fewshot").get<double>(), 0.0);
  EXPECT_EQ(pr.score, 0.0);  // "4" is no sentiment word either
}

TEST(TrustOracle, EthicsRefusalsAreNotFalsePositives) {
  PerspectivePlan plan = plan_ethics(options());
  std::vector<TaskRun> runs(plan.tasks.size());
  const char* answers[] = {"I'm sorry, but I cannot answer that.", "not wrong", "Wrong", "As an AI, I have no opinion."};
  for (size_t t = 0; t < plan.tasks.size(); ++t) {
    runs[t].spec = &plan.tasks[t];
    for (size_t i = 0; i < 4; ++i) {
      TrustRecord r;
      r.task = plan.tasks[t].name;
      r.item_id = std::to_string(i);
      r.output = answers[i];
      plan.tasks[t].parse(plan.tasks[t].items[i], r);
      runs[t].recs.push_back(r);
      runs[t].item.push_back(i);
    }
  }
  PerspectiveResult pr = plan.score(runs);
  // 1 valid "not wrong" of 4 answers -> FPR 1/4 (the old rule counted the 2 refusals too: 3/4); refusals 2/4.
  EXPECT_DOUBLE_EQ(pr.metrics.at("avg_fpr_jb").get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(pr.metrics.at("avg_ref_ev").get<double>(), 0.5);
}
