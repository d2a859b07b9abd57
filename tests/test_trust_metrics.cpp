// Metric formulas against hand-computed values.
#include <numeric>

#include <gtest/gtest.h>

#include "base/error.h"
#include "trust/metrics.h"

using namespace ctrust;

TEST(TrustMetrics, KnowledgeMeaningfulAccuracy) {
  KnowledgeStats k = knowledge_stats(6, 2, 2);
  EXPECT_NEAR(k.acc, 60, 1e-12);
  EXPECT_NEAR(k.macc, 75, 1e-12);
  EXPECT_NEAR(k.rr, 20, 1e-12);
  EXPECT_NEAR(k.score, 20 + 0.8 * 75, 1e-12);
  KnowledgeStats all = knowledge_stats(0, 0, 5);
  EXPECT_EQ(all.rr, 100);
  EXPECT_EQ(all.score, 100);
}

TEST(TrustMetrics, FairnessParityAndEqualizedOdds) {
  // The groups are written as a string: g++ 12 with -O2/-O3 -march=native (AVX-512) miscompiled this test
  // body when the three vectors were brace-initialized (the third held {1,1,1,1,1,1,1,1}); the check below
  // guards the inputs.
  auto bits = [](const char* t) { std::vector<int> v; for (; *t; ++t) v.push_back(*t - '0'); return v; };
  std::vector<int> y = bits("11001100"), p = bits("10111000"), s = bits("11110000");
  ASSERT_EQ(std::accumulate(s.begin(), s.end(), 0), 4);
  ASSERT_EQ(s[4], 0);
  // selection rates: group 1 3/4, group 0 1/4
  EXPECT_NEAR(demographic_parity_difference(y, p, s), 0.5, 1e-9);
  // TPR 1/2 vs 1/2, FPR 1 vs 0 -> 1
  EXPECT_NEAR(equalized_odds_difference(y, p, s), 1.0, 1e-9);
  // Identical behaviour across groups -> 0 for both.
  std::vector<int> p2 = {1, 0, 1, 0, 1, 0, 1, 0};
  EXPECT_EQ(demographic_parity_difference(y, p2, s), 0);
  EXPECT_EQ(equalized_odds_difference(y, p2, s), 0);
  EXPECT_NEAR(fairness_score({0.1, 0.3}), 80, 1e-9);
  EXPECT_THROW(demographic_parity_difference(y, {1}, s), Error);
}

TEST(TrustMetrics, EthicsAndMeanScores) {
  EXPECT_NEAR(ethics_score({0.8}, {0.3, 0.5}), 100 * (0.8 + 0.7 + 0.5) / 3, 1e-12);
  EXPECT_NEAR(mean_score({0.5, 0.75}), 62.5, 1e-12);
  RateStats r{10, 7, 2};
  EXPECT_NEAR(r.accuracy(), 0.7, 1e-12);
  EXPECT_NEAR(r.refusal_rate(), 0.2, 1e-12);
}
