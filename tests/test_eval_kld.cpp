#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "eval/kld.h"

using namespace ctrust;

TEST(EvalKld, AccumulatorHandValues) {
  KldAccumulator acc;
  // Token 1: base (.5, .25, .25), B (.25, .5, .25), correct token 0:
  // KL = .5 ln 2 + .25 ln .5 = .25 ln 2; Δp = .25 - .5; NLL base ln 2, B ln 4; tops differ.
  float b1[3] = {std::log(0.5f), std::log(0.25f), std::log(0.25f)};
  float q1[3] = {std::log(0.25f), std::log(0.5f), std::log(0.25f)};
  acc.add(b1, q1, 3, 0);
  // Token 2: identical (.2, .3, .5), correct token 2 (p = .5): KL 0, Δp 0, same top.
  float b2[3] = {std::log(0.2f), std::log(0.3f), std::log(0.5f)};
  acc.add(b2, b2, 3, 2);
  KldStats s = acc.finish();
  const double ln2 = std::log(2.0);
  EXPECT_EQ(s.n_tokens, 2);
  EXPECT_NEAR(s.kl_mean, 0.125 * ln2, 1e-7);
  EXPECT_NEAR(s.kl_stderr, 0.125 * ln2, 1e-7);  // two values {x, 0}: sd x/sqrt2, se x/2
  EXPECT_NEAR(s.kl_pct[0], 0.25 * ln2, 1e-7);     // max
  EXPECT_NEAR(s.kl_pct[5], 0.125 * ln2, 1e-7);    // median
  EXPECT_NEAR(s.kl_pct[10], 0.0, 1e-7);           // min
  EXPECT_DOUBLE_EQ(s.same_top, 0.5);
  EXPECT_NEAR(s.dp_mean, -0.125, 1e-7);
  EXPECT_NEAR(s.dp_rms, std::sqrt(0.0625 / 2), 1e-7);
  EXPECT_NEAR(s.dp_pct[10], -0.25, 1e-7);
  EXPECT_NEAR(s.ppl_base, 2.0, 1e-6);
  EXPECT_NEAR(s.ppl_b, std::pow(2.0, 1.5), 1e-6);
  EXPECT_NEAR(s.ppl_ratio, std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(s.ln_ppl_ratio, 0.5 * ln2, 1e-7);
  nlohmann::json j = s.to_json();
  EXPECT_TRUE(j["kl_percentiles"].contains("p99.9"));
  EXPECT_TRUE(j["dp_percentiles"].contains("median"));
  EXPECT_THROW(acc.add(b1, q1, 3, 3), Error);
  EXPECT_THROW(KldAccumulator{}.finish(), Error);
}

TEST(EvalKld, CorrelationOfTokenNlls) {
  // Three tokens whose B-probabilities of the correct token are the squares of the base ones:
  // nll_B = 2 nll_base exactly, so the correlation is 1 and ln(PPL_B/PPL_base) = mean nll_base.
  KldAccumulator acc;
  const float p[3] = {0.9f, 0.6f, 0.3f};
  double sum = 0;
  for (float x : p) {
    float b[2] = {std::log(x), std::log(1 - x)};
    float q[2] = {std::log(x * x), std::log(1 - x * x)};
    acc.add(b, q, 2, 0);
    sum += -std::log(double(x));
  }
  KldStats s = acc.finish();
  EXPECT_NEAR(s.cor_ln_ppl, 1.0, 1e-6);
  EXPECT_NEAR(s.ln_ppl_ratio, sum / 3, 1e-6);
}
