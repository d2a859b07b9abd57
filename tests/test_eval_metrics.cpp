#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "eval/metrics.h"

using namespace ctrust;

namespace {

ItemResult item(std::string id, std::vector<double> ll, int pred, int gold) {
  return ItemResult{std::move(id), std::move(ll), pred, gold, pred == gold};
}

// 10 items, hand-tabulated: 1 both right, 1 c2w, 6 w2c, 1 wrong->other wrong, 1 same wrong answer.
void fixture(std::vector<ItemResult>& a, std::vector<ItemResult>& b) {
  const std::vector<double> flat = {-1.0, -1.0};
  a.push_back(item("q1", flat, 0, 0));
  b.push_back(item("q1", flat, 0, 0));
  // The only item with different distributions: p = (.5, .5), q = (.9, .1), shifted by constants.
  a.push_back(item("q2", {std::log(0.5) - 3, std::log(0.5) - 3}, 0, 0));
  b.push_back(item("q2", {std::log(0.9) - 7, std::log(0.1) - 7}, 1, 0));
  for (int i = 3; i <= 8; i++) {
    a.push_back(item("q" + std::to_string(i), flat, 1, 0));
    b.push_back(item("q" + std::to_string(i), flat, 0, 0));
  }
  a.push_back(item("q9", flat, 1, 0));
  b.push_back(item("q9", flat, 2, 0));
  a.push_back(item("q10", flat, 1, 0));
  b.push_back(item("q10", flat, 1, 0));
  // Third choice for q9 so pred 2 exists: give both runs three equal choices.
  a[8].ll = b[8].ll = {-1, -1, -1};
}

}  // namespace

TEST(EvalMetrics, McNemarExactHandValues) {
  // 2 * sum_{k<=1} C(7,k) / 2^7 = 2 * 8 / 128
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(1, 6), 0.125);
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(6, 1), 0.125);
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(0, 5), 0.0625);  // 2 / 32
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(3, 3), 1.0);     // capped at 1
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(0, 0), 1.0);
  // Values from Python's exact integer arithmetic (math.comb).
  EXPECT_NEAR(mcnemar_exact_p(10, 20), 0.09873714670538902, 1e-12);
  EXPECT_NEAR(mcnemar_exact_p(400, 460), 0.04416954819458901, 1e-12);
  EXPECT_NEAR(mcnemar_exact_p(1000, 1100), 0.030720707864242296, 1e-9);  // log-space branch
  EXPECT_THROW(mcnemar_exact_p(-1, 2), Error);
}

TEST(EvalMetrics, KlOfSoftmaxHandValues) {
  // p = (.5, .5), q = (.9, .1): KL(p||q) = .5 ln(25/9), KL(q||p) = .9 ln 1.8 + .1 ln .2
  std::vector<double> p = {std::log(0.5) + 2, std::log(0.5) + 2};
  std::vector<double> q = {std::log(0.9) - 1, std::log(0.1) - 1};
  EXPECT_NEAR(kl_softmax(p, q), 0.5 * std::log(25.0 / 9.0), 1e-12);
  EXPECT_NEAR(kl_softmax(q, p), 0.9 * std::log(1.8) + 0.1 * std::log(0.2), 1e-12);
  EXPECT_NEAR(kl_softmax(p, p), 0.0, 1e-15);
  std::vector<double> three = {0, 0, 0};
  EXPECT_THROW(kl_softmax(p, three), Error);
}

TEST(EvalMetrics, PairMetricsOnHandTable) {
  std::vector<ItemResult> a, b;
  fixture(a, b);
  PairMetrics m = compare_items(a, b);
  EXPECT_EQ(m.n, 10);
  EXPECT_DOUBLE_EQ(m.acc_a, 0.2);
  EXPECT_DOUBLE_EQ(m.acc_b, 0.7);
  EXPECT_EQ(m.c2w, 1);
  EXPECT_EQ(m.w2c, 6);
  EXPECT_DOUBLE_EQ(m.delta_acc, 0.5);
  EXPECT_DOUBLE_EQ(m.delta_acc, double(m.w2c - m.c2w) / double(m.n));  // the identity
  EXPECT_DOUBLE_EQ(m.flips, 0.7);
  EXPECT_EQ(m.all_flip_count, 8);
  EXPECT_DOUBLE_EQ(m.all_flips, 0.8);
  EXPECT_DOUBLE_EQ(m.agreement, 0.2);
  EXPECT_DOUBLE_EQ(m.mcnemar_p, 0.125);
  EXPECT_NEAR(m.kl_ab, 0.5 * std::log(25.0 / 9.0) / 10, 1e-12);
  EXPECT_NEAR(m.kl_ba, (0.9 * std::log(1.8) + 0.1 * std::log(0.2)) / 10, 1e-12);
  // Bootstrap intervals: ordered, contain the estimate, reproducible with the seed, fractions.
  EXPECT_LE(m.delta_acc_ci[0], m.delta_acc);
  EXPECT_GE(m.delta_acc_ci[1], m.delta_acc);
  EXPECT_LT(m.delta_acc_ci[0], m.delta_acc_ci[1]);
  EXPECT_LE(m.flips_ci[0], m.flips);
  EXPECT_GE(m.flips_ci[1], m.flips);
  EXPECT_GE(m.flips_ci[0], 0.0);
  EXPECT_LE(m.flips_ci[1], 1.0);
  // KL(A||B) is non-zero on one item of the ten (k1 = 0.5 log(25/9)), so a resample's mean KL is
  // (copies of that item drawn) x k1 / 10, copies ~ Binomial(10, 0.1): P(0) = 0.349 puts the 2.5% point at 0;
  // P(>= 4) = 1.3% and P(>= 3) = 7.0% put the 97.5% point at 3 copies.
  const double k1 = 0.5 * std::log(25.0 / 9.0);
  EXPECT_EQ(m.kl_ab_ci[0], 0.0);
  EXPECT_NEAR(m.kl_ab_ci[1], 3 * k1 / 10, 1e-12);
  PairMetrics m2 = compare_items(a, b);
  EXPECT_EQ(m.kl_ab_ci, m2.kl_ab_ci);
  EXPECT_EQ(m.delta_acc_ci, m2.delta_acc_ci);
  EXPECT_EQ(m.flips_ci, m2.flips_ci);
  PairMetrics m3 = compare_items(a, b, BootstrapOptions{1000, 7, 0.95});
  EXPECT_TRUE(m3.delta_acc_ci != m.delta_acc_ci || m3.flips_ci != m.flips_ci);
}

TEST(EvalMetrics, BootstrapDegenerateAndIdentity) {
  // Every item w2c: each resample has delta = flips = 1.
  std::vector<ItemResult> a, b;
  for (int i = 0; i < 20; i++) {
    a.push_back(item(std::to_string(i), {0, -1}, 0, 1));
    b.push_back(item(std::to_string(i), {-1, 0}, 1, 1));
  }
  PairMetrics m = compare_items(a, b);
  EXPECT_EQ(m.delta_acc_ci, (std::array<double, 2>{1.0, 1.0}));
  EXPECT_EQ(m.flips_ci, (std::array<double, 2>{1.0, 1.0}));
  EXPECT_NEAR(m.kl_ab_ci[0], m.kl_ab, 1e-15);  // every item has the same KL
  EXPECT_NEAR(m.kl_ab_ci[1], m.kl_ab, 1e-15);
  EXPECT_DOUBLE_EQ(m.agreement, 0.0);
  EXPECT_DOUBLE_EQ(m.mcnemar_p, 2.0 / double(1 << 20));
  // A run against itself: nothing changes.
  PairMetrics s = compare_items(a, a);
  EXPECT_EQ(s.c2w + s.w2c + s.all_flip_count, 0);
  EXPECT_DOUBLE_EQ(s.agreement, 1.0);
  EXPECT_DOUBLE_EQ(s.kl_ab, 0.0);
  EXPECT_EQ(s.delta_acc_ci, (std::array<double, 2>{0.0, 0.0}));
  EXPECT_EQ(s.kl_ab_ci, (std::array<double, 2>{0.0, 0.0}));
}

TEST(EvalMetrics, MismatchedRunsAreErrors) {
  std::vector<ItemResult> a = {item("x", {0, 0}, 0, 0)};
  std::vector<ItemResult> b = {item("y", {0, 0}, 0, 0)};
  EXPECT_THROW(compare_items(a, b), Error);
  b = {item("x", {0, 0, 0}, 0, 0)};
  EXPECT_THROW(compare_items(a, b), Error);
  std::vector<ItemResult> none;
  EXPECT_THROW(compare_items(a, none), Error);
  EXPECT_EQ(compare_items(none, none).n, 0);
}

TEST(EvalMetrics, PercentileLikeNumpy) {
  std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0.5), 2.5);    // numpy.percentile([1,2,3,4], 50)
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0.025), 1.075);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 1.0), 4.0);
  EXPECT_TRUE(std::isnan(percentile_sorted(std::vector<double>{}, 0.5)));
}
