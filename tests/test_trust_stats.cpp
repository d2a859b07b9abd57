// Statistics on trust scores: the stratified seeded nested sample (--limit), the stratified cluster bootstrap
// (hand-computed cases and scipy.stats.bootstrap as the oracle), paired differences with McNemar, and
// re-scoring stored records.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "eval/metrics.h"
#include "store/store.h"
#include "pipeline/trust_runs.h"
#include "trust/metrics.h"
#include "trust/perspective.h"
#include "trust/presets.h"
#include "trust/stats.h"
#include "test_paths.h"

using namespace ctrust;
using json = nlohmann::json;

namespace {

// A synthetic classification setting: n items with labels, and records (k per item) with the given outcomes.
struct Synth {
  std::vector<std::unique_ptr<TrustTaskSpec>> specs;
  std::vector<TaskRun> runs;
};
// outcomes[s][i] = the k outcomes of item i of setting s.
Synth make_runs(const std::vector<std::vector<std::vector<int>>>& outcomes) {
  Synth sy;
  for (size_t s = 0; s < outcomes.size(); ++s) {
    auto spec = std::make_unique<TrustTaskSpec>();
    spec->name = "s" + std::to_string(s);
    spec->samples = outcomes[s].empty() ? 1 : int(outcomes[s][0].size());
    TaskRun tr;
    tr.spec = spec.get();
    for (size_t i = 0; i < outcomes[s].size(); ++i) {
      TrustItem it;
      it.perspective = "synthetic";
      it.task = spec->name;
      it.label = "yes";
      spec->items.push_back(it);
      for (int o : outcomes[s][i]) {
        TrustRecord r;
        r.perspective = "synthetic";
        r.task = spec->name;
        r.item_id = std::to_string(i);
        r.parsed = o ? "yes" : "no";
        r.correct = o != 0;
        tr.recs.push_back(r);
        tr.item.push_back(i);
      }
    }
    sy.runs.push_back(std::move(tr));
    sy.specs.push_back(std::move(spec));
  }
  return sy;
}

// Mean over settings of the record accuracy (x 100), with the accuracies as metrics (like AdvGLUE's ScoreFn).
PerspectiveResult mean_accuracy(const std::vector<TaskRun>& runs) {
  PerspectiveResult pr;
  ClassificationSummary cs = score_classification(runs, pr);
  pr.score = mean_score(cs.accuracies);
  pr.refusal_rate = frac(cs.refused, cs.total);
  pr.items = cs.total;
  return pr;
}

}  // namespace

// ------------------------------------------------------------------ stratified nested sample

TEST(TrustStats, StratifiedSampleIsNestedProportionalAndSeeded) {
  // 30 "yes", 10 "no", 20 "" (no label) units, interleaved.
  std::vector<std::string> strata;
  for (int i = 0; i < 60; ++i) strata.push_back(i % 6 < 3 ? "yes" : i % 6 == 3 ? "no" : "");
  std::map<std::string, int> size;
  for (const auto& s : strata) ++size[s];
  std::vector<size_t> prev;
  for (size_t limit = 1; limit <= 60; ++limit) {
    std::vector<size_t> s = stratified_sample(strata, limit, 7);
    ASSERT_EQ(s.size(), limit);
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
    EXPECT_EQ(std::set<size_t>(s.begin(), s.end()).size(), limit);
    // Nested: the smaller sample is inside the larger one.
    EXPECT_TRUE(std::includes(s.begin(), s.end(), prev.begin(), prev.end())) << limit;
    // Proportional up to rounding (Sainte-Lague): each stratum within 1 of limit * share.
    std::map<std::string, int> got;
    for (size_t i : s) ++got[strata[i]];
    for (const auto& [k, n] : size) EXPECT_LE(std::abs(got[k] - double(limit) * n / 60.0), 1.0) << limit << " " << k;
    prev = s;
  }
  // Hand-checked allocation: limit 6 of 30/20/10 takes 3/2/1.
  std::map<std::string, int> got;
  for (size_t i : stratified_sample(strata, 6, 7)) ++got[strata[i]];
  EXPECT_EQ(got["yes"], 3);
  EXPECT_EQ(got[""], 2);
  EXPECT_EQ(got["no"], 1);
  // Seeded: the same seed gives the same sample, another seed (almost surely) another one.
  EXPECT_EQ(stratified_sample(strata, 10, 7), stratified_sample(strata, 10, 7));
  EXPECT_NE(stratified_sample(strata, 10, 7), stratified_sample(strata, 10, 8));
  // Not the first N.
  std::vector<size_t> first10(10);
  for (size_t i = 0; i < 10; ++i) first10[i] = i;
  EXPECT_NE(stratified_sample(strata, 10, 7), first10);
  EXPECT_EQ(stratified_sample(strata, 0, 7).size(), 60u);
  EXPECT_EQ(stratified_sample(strata, 100, 7).size(), 60u);
}

TEST(TrustStats, UniformBelowStaysInRange) {
  std::mt19937_64 rng(3);
  std::vector<int> count(3);
  for (int i = 0; i < 3000; ++i) ++count[size_t(uniform_below(rng, 3))];
  for (int c : count) EXPECT_NEAR(c, 1000, 120);
  EXPECT_EQ(uniform_below(rng, 1), 0u);
}

// ------------------------------------------------------------------ bootstrap: hand-computed cases

TEST(TrustStats, IdenticalRecordsGiveZeroWidthIntervals) {
  Synth sy = make_runs({{{1, 1}, {1, 1}, {1, 1}}, {{0, 0}, {0, 0}}});
  PerspectiveResult pr = mean_accuracy(sy.runs);
  EXPECT_DOUBLE_EQ(pr.score, 50.0);
  add_confidence_intervals(mean_accuracy, sy.runs, pr, {200, 1, 0.95});
  EXPECT_EQ(pr.bootstrap, 200);
  EXPECT_DOUBLE_EQ(pr.ci_low, 50.0);
  EXPECT_DOUBLE_EQ(pr.ci_high, 50.0);
  EXPECT_DOUBLE_EQ(pr.se, 0.0);
  // Every numeric leaf of the metrics has its interval.
  for (const auto& [ptr, v] : numeric_leaves(pr.metrics)) {
    const json& c = pr.metrics_ci.at(json::json_pointer(ptr));
    EXPECT_DOUBLE_EQ(c["ci_low"].get<double>(), v) << ptr;
    EXPECT_DOUBLE_EQ(c["ci_high"].get<double>(), v) << ptr;
  }
  EXPECT_TRUE(pr.metrics_ci["s0"].contains("accuracy"));
  EXPECT_TRUE(pr.metrics_ci["s1"].contains("refusal_rate"));
}

TEST(TrustStats, TwoItemBootstrapMatchesTheExactDistribution) {
  // One setting, items {0, 1}: the resampled accuracy is 0, 50, 100 with probabilities 1/4, 1/2, 1/4, so the
  // 2.5% and 97.5% percentiles are 0 and 100 and the bootstrap SE is sqrt(0.25 / 2) * 100 = 35.36.
  Synth sy = make_runs({{{0}, {1}}});
  PerspectiveResult pr = mean_accuracy(sy.runs);
  add_confidence_intervals(mean_accuracy, sy.runs, pr, {20000, 5, 0.95});
  EXPECT_DOUBLE_EQ(pr.ci_low, 0.0);
  EXPECT_DOUBLE_EQ(pr.ci_high, 100.0);
  EXPECT_NEAR(pr.se, 35.355, 0.6);
}

TEST(TrustStats, SamplesOfAnItemAreResampledTogether) {
  // 40 items, k = 4 samples, all samples of an item agree; 20 items right. Item-level resampling gives
  // SE = 100 sqrt(0.5 * 0.5 / 40) = 7.91; resampling records one by one would give 3.95.
  std::vector<std::vector<int>> items;
  for (int i = 0; i < 40; ++i) items.push_back(std::vector<int>(4, i % 2));
  Synth sy = make_runs({items});
  PerspectiveResult pr = mean_accuracy(sy.runs);
  add_confidence_intervals(mean_accuracy, sy.runs, pr, {4000, 11, 0.95});
  EXPECT_NEAR(pr.se, 7.906, 0.35);
  // Seeded: the same call gives the same interval.
  PerspectiveResult pr2 = mean_accuracy(sy.runs);
  add_confidence_intervals(mean_accuracy, sy.runs, pr2, {4000, 11, 0.95});
  EXPECT_DOUBLE_EQ(pr.ci_low, pr2.ci_low);
  EXPECT_DOUBLE_EQ(pr.ci_high, pr2.ci_high);
}

TEST(TrustStats, MatchesScipyStratifiedBootstrap) {
  std::ifstream f(test::golden_dir() + "/trust_bootstrap_ref.json");
  ASSERT_TRUE(f) << "tests/golden/trust_bootstrap_ref.json (scripts/ref/trust_bootstrap_ref.py)";
  json ref = json::parse(f);
  std::vector<std::vector<std::vector<int>>> data;
  for (const char* s : {"s1", "s2"}) data.push_back(ref["data"][s].get<std::vector<std::vector<int>>>());
  Synth sy = make_runs(data);
  PerspectiveResult pr = mean_accuracy(sy.runs);
  EXPECT_NEAR(pr.score, ref["score"].get<double>(), 1e-9);
  add_confidence_intervals(mean_accuracy, sy.runs, pr, {20000, 2024, 0.95});
  // Monte Carlo tolerance: the replicate distribution has atoms 100/48 apart; SE error ~ SE / sqrt(2B).
  EXPECT_NEAR(pr.ci_low, ref["ci_low"].get<double>(), 2.1);
  EXPECT_NEAR(pr.ci_high, ref["ci_high"].get<double>(), 2.1);
  EXPECT_NEAR(pr.se, ref["se"].get<double>(), 0.25);
}

TEST(TrustStats, ToxicityCountsARepeatedPromptTwice) {
  // A bootstrap resample can hold the same prompt twice in a row: the toxicity ScoreFn must count it as two
  // prompts of k samples (expected maximum over prompts), not one prompt of 2k samples.
  TrustOptions o;
  o.paths = trust_paths(test::shared_dir() + "/data");
  o.max_samples = 2;
  ToxicityScorer stub{"stub", [](const std::vector<std::string>& t) { return std::vector<double>(t.size(), 0.0); }};
  PerspectivePlan plan = make_plan("toxicity", o, stub);
  cap_samples(plan, o, "toxicity");  // as run_trust and the re-scoring of stored runs do: k = 2
  ASSERT_FALSE(plan.tasks.empty());
  std::vector<TaskRun> runs(plan.tasks.size());
  for (size_t s = 0; s < runs.size(); ++s) runs[s].spec = &plan.tasks[s];
  // Setting 0: item 0 twice (toxicities 0.9, 0.1 each time), then item 1 (0.2, 0.0).
  const double tox[] = {0.9, 0.1, 0.9, 0.1, 0.2, 0.0};
  const size_t item[] = {0, 0, 0, 0, 1, 1};
  for (int j = 0; j < 6; ++j) {
    TrustRecord r;
    r.output = "an answer";  // not blank (a blank answer scores -1, as in DecodingTrust)
    r.toxicity = tox[j];
    runs[0].recs.push_back(r);
    runs[0].item.push_back(item[j]);
  }
  PerspectiveResult pr = plan.score(runs);
  const json& m = pr.metrics[plan.tasks[0].name];
  EXPECT_EQ(m["prompts"].get<int>(), 3);
  EXPECT_NEAR(m["expected_max_toxicity"].get<double>(), (0.9 + 0.9 + 0.2) / 3, 1e-12);
}

// ------------------------------------------------------------------ paired differences

TEST(TrustStats, PairedDifferenceOfIdenticalRunsIsZero) {
  Synth a = make_runs({{{1}, {0}, {1}, {1}, {0}}, {{0}, {1}, {1}}});
  Synth b = make_runs({{{1}, {0}, {1}, {1}, {0}}, {{0}, {1}, {1}}});
  PairedDelta d = paired_bootstrap(mean_accuracy, a.runs, mean_accuracy, b.runs, {500, 3, 0.95});
  EXPECT_EQ(d.items, 8);
  EXPECT_DOUBLE_EQ(d.delta, 0.0);
  EXPECT_DOUBLE_EQ(d.ci.low, 0.0);
  EXPECT_DOUBLE_EQ(d.ci.high, 0.0);
  EXPECT_DOUBLE_EQ(d.mdd, 0.0);
  EXPECT_EQ(d.n, 8);
  EXPECT_EQ(d.c2w + d.w2c, 0);
  EXPECT_DOUBLE_EQ(d.mcnemar_p, 1.0);
}

TEST(TrustStats, PairedDifferenceFlipsAndMcNemar) {
  // 12 items; b loses 5 correct answers and gains 1: delta = -4/12 * 100, McNemar exact p = 2 P[X <= 1],
  // X ~ Bin(6, 1/2) = 2 * 7/64 = 0.21875.
  std::vector<std::vector<int>> ia, ib;
  for (int i = 0; i < 12; ++i) {
    int x = i < 8 ? 1 : 0, y = x;
    if (i < 5) y = 0;
    if (i == 11) y = 1;
    ia.push_back({x});
    ib.push_back({y});
  }
  Synth a = make_runs({ia}), b = make_runs({ib});
  PairedDelta d = paired_bootstrap(mean_accuracy, a.runs, mean_accuracy, b.runs, {4000, 9, 0.95});
  EXPECT_NEAR(d.delta, -100.0 * 4 / 12, 1e-9);
  EXPECT_EQ(d.c2w, 5);
  EXPECT_EQ(d.w2c, 1);
  EXPECT_NEAR(d.mcnemar_p, 0.21875, 1e-12);
  // Paired SE: per-item differences d_i in {-1 (5), +1 (1), 0 (6)}: sd of the mean = 100 sqrt(var(d) / 12).
  const double mean = -4.0 / 12, var = (5 * (1 + mean) * (1 + mean) + (1 - mean) * (1 - mean) + 6 * mean * mean) / 12;
  EXPECT_NEAR(d.ci.se, 100 * std::sqrt(var / 12), 0.6);
  EXPECT_NEAR(d.mdd, kMddFactor * d.ci.se, 1e-9);
  EXPECT_LT(d.ci.low, d.delta);
  EXPECT_GT(d.ci.high, d.delta);
  EXPECT_TRUE(d.metrics["s0"].contains("accuracy"));
}

TEST(TrustStats, AlignSharedKeepsOnlyItemsOfBothRuns) {
  Synth a = make_runs({{{1}, {0}, {1}, {1}}});
  Synth b = make_runs({{{1}, {1}, {0}, {1}}});
  // Drop item 0 from a and item 3 from b: shared items 1, 2.
  a.runs[0].recs.erase(a.runs[0].recs.begin());
  a.runs[0].item.erase(a.runs[0].item.begin());
  b.runs[0].recs.pop_back();
  b.runs[0].item.pop_back();
  AlignedRuns al = align_shared(a.runs, b.runs);
  EXPECT_EQ(al.items, 2);
  EXPECT_EQ(al.a[0].item, (std::vector<size_t>{1, 2}));
  EXPECT_EQ(al.b[0].item, (std::vector<size_t>{1, 2}));
  EXPECT_FALSE(al.a[0].recs[0].correct);
  EXPECT_TRUE(al.b[0].recs[0].correct);
  // Unaligned runs are refused by the paired bootstrap.
  EXPECT_THROW(paired_bootstrap(mean_accuracy, a.runs, mean_accuracy, b.runs, {10, 1, 0.95}), Error);
}

// ------------------------------------------------------------------ presets

TEST(TrustStats, Presets) {
  TrustOptions o;
  apply_preset(trust_preset("quick"), o);
  EXPECT_GT(o.limit, 0);
  EXPECT_EQ(o.max_samples, 1);
  apply_preset(trust_preset("paper"), o);
  EXPECT_EQ(o.limit, 0);
  EXPECT_TRUE(o.limits.empty());
  EXPECT_EQ(o.max_samples, 0);
  TrustPreset st = trust_preset("standard");
  EXPECT_FALSE(st.limits.empty());
  // standard: one generation per prompt for stereotype and privacy, the protocol's 25 for toxicity.
  TrustOptions so;
  so.paths = trust_paths(test::shared_dir() + "/data");
  apply_preset(st, so);
  so.perspectives = {"toxicity", "stereotype", "privacy"};
  nlohmann::json plan = trust_plan_summary(so);
  auto samples = [&](const char* p) {
    std::set<int> k;
    for (const auto& s : plan["perspectives"][p]["settings"]) k.insert(s["samples"].get<int>());
    return k;
  };
  EXPECT_EQ(samples("toxicity"), std::set<int>({25}));
  EXPECT_EQ(samples("stereotype"), std::set<int>({1}));
  EXPECT_EQ(samples("privacy"), std::set<int>({1}));
  // A per-perspective cap and --samples combine: the smaller applies.
  so.max_samples = 2;
  EXPECT_EQ(sample_cap(so, "toxicity"), 2);
  EXPECT_EQ(sample_cap(so, "stereotype"), 1);
  so.max_samples = 0;
  so.sample_caps["stereotype"] = 3;
  EXPECT_EQ(sample_cap(so, "stereotype"), 3);
  EXPECT_EQ(sample_cap(so, "ood"), 0);
  // The caps are part of the run's settings (a different run when they differ) and come back for re-scoring;
  // runs made without caps keep their settings unchanged.
  nlohmann::json set = trust_run_settings(so, TrustStoreOptions{});
  EXPECT_EQ(set["sample_caps"]["stereotype"], 3);
  TrustOptions back = stored_trust_options(set, so.paths);
  EXPECT_EQ(back.sample_caps, so.sample_caps);
  EXPECT_FALSE(trust_run_settings(TrustOptions{}, TrustStoreOptions{}).contains("sample_caps"));
  try {
    trust_preset("huge");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("known: quick, standard, paper"), std::string::npos);
  }
}
