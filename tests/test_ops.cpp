#include <gtest/gtest.h>

#include <cstring>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/attention.h"
#include "ops/linear.h"
#include "ops/ops.h"
#include "ops/qmatmul.h"
#include "ops/vexp.h"

using namespace ctrust;

namespace {

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Straightforward triple loop, double accumulation.
std::vector<float> ref_matmul(const std::vector<float>& x, const std::vector<float>& w, int rows, int in, int out) {
  std::vector<float> y((size_t)rows * out);
  for (int r = 0; r < rows; ++r)
    for (int o = 0; o < out; ++o) {
      double s = 0;
      for (int j = 0; j < in; ++j) s += (double)x[(size_t)r * in + j] * w[(size_t)o * in + j];
      y[(size_t)r * out + o] = (float)s;
    }
  return y;
}

// int8 round-trip of the entries of v selected by sel, scale from their max |v|.
void ref_q8(float* v, int n, const std::vector<bool>& sel) {
  float amax = 0;
  for (int i = 0; i < n; ++i)
    if (sel[i]) amax = std::max(amax, std::fabs(v[i]));
  if (amax == 0) return;
  float s = amax / 127.0f;
  for (int i = 0; i < n; ++i)
    if (sel[i]) v[i] = std::nearbyint(v[i] / s) * s;  // ties to even
}

}  // namespace

TEST(Ops, RmsNormHandComputed) {
  // x = (1, 2, 3, 4): mean of squares 7.5; y = x / sqrt(7.5 + eps) * w
  const float x[4] = {1, 2, 3, 4}, w[4] = {1, 0.5f, 2, -1};
  float y[4];
  rmsnorm(x, w, y, 1, 4, 1e-5f);
  const double r = 1.0 / std::sqrt(7.5 + 1e-5);
  EXPECT_NEAR(y[0], 1 * r, 1e-6);
  EXPECT_NEAR(y[1], 2 * r * 0.5, 1e-6);
  EXPECT_NEAR(y[2], 3 * r * 2, 1e-6);
  EXPECT_NEAR(y[3], -4 * r, 1e-6);
}

TEST(Ops, RopeInterleavedHandComputed) {
  // head_dim 4, base 10000: theta_0 = pos, theta_1 = pos * 10000^(-1/2) = pos / 100. pos = 3, freq_scale 0.5.
  const int hd = 4;
  float c[2], s[2];
  rope_tables(3, 1, hd, 10000.0f, 0.5f, c, s);
  const double a0 = 3 * 0.5, a1 = 3 * 0.5 / 100.0;
  EXPECT_NEAR(c[0], std::cos(a0), 1e-6);
  EXPECT_NEAR(s[1], std::sin(a1), 1e-6);
  float v[4] = {1, 2, 3, 4};
  rope(v, 1, 1, hd, RopeLayout::Interleaved, c, s);
  // pairs (0,1) and (2,3)
  EXPECT_NEAR(v[0], 1 * std::cos(a0) - 2 * std::sin(a0), 1e-5);
  EXPECT_NEAR(v[1], 1 * std::sin(a0) + 2 * std::cos(a0), 1e-5);
  EXPECT_NEAR(v[2], 3 * std::cos(a1) - 4 * std::sin(a1), 1e-5);
  EXPECT_NEAR(v[3], 3 * std::sin(a1) + 4 * std::cos(a1), 1e-5);
}

TEST(Ops, RopeNeoXHandComputed) {
  // Two heads of head_dim 4 at pos 2 (base 100: theta_1 = pos / 10); pairs (0,2) and (1,3) in each head.
  const int hd = 4;
  float c[2], s[2];
  rope_tables(2, 1, hd, 100.0f, 1.0f, c, s);
  const double a0 = 2.0, a1 = 0.2;
  float v[8] = {1, 2, 3, 4, -1, 0.5f, 0.25f, 2};
  float o[8];
  std::copy(v, v + 8, o);
  rope(v, 1, 2, hd, RopeLayout::NeoX, c, s);
  for (int h = 0; h < 2; ++h) {
    const float* x = o + 4 * h;
    const float* y = v + 4 * h;
    EXPECT_NEAR(y[0], x[0] * std::cos(a0) - x[2] * std::sin(a0), 1e-5);
    EXPECT_NEAR(y[2], x[0] * std::sin(a0) + x[2] * std::cos(a0), 1e-5);
    EXPECT_NEAR(y[1], x[1] * std::cos(a1) - x[3] * std::sin(a1), 1e-5);
    EXPECT_NEAR(y[3], x[1] * std::sin(a1) + x[3] * std::cos(a1), 1e-5);
  }
  // Position 0 is the identity in both layouts.
  rope_tables(0, 1, hd, 100.0f, 1.0f, c, s);
  std::copy(o, o + 8, v);
  rope(v, 1, 2, hd, RopeLayout::NeoX, c, s);
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(v[i], o[i]);
}

TEST(Ops, SoftmaxStableAndSilu) {
  float x[3] = {1000.0f, 1001.0f, 999.0f};  // naive exp overflows
  softmax(x, 3);
  const double e = std::exp(1.0), z = 1 + e + 1 / e;
  EXPECT_NEAR(x[0], 1 / z, 1e-6);
  EXPECT_NEAR(x[1], e / z, 1e-6);
  EXPECT_NEAR(x[2], 1 / e / z, 1e-6);
  EXPECT_NEAR(silu(1.0f), 1.0 / (1 + std::exp(-1.0)), 1e-7);
  EXPECT_NEAR(silu(-2.0f), -2.0 / (1 + std::exp(2.0)), 1e-7);
  EXPECT_EQ(silu(-200.0f), -0.0f);
}

TEST(Ops, LinearF32GemvAndGemm) {
  const int in = 37, out = 23;
  auto w = randn((size_t)in * out, 1), b = randn(out, 2);
  for (int rows : {1, 5}) {
    auto x = randn((size_t)rows * in, 3 + rows);
    std::vector<float> y((size_t)rows * out);
    Linear L{w.data(), b.data(), in, out};
    linear(L, x.data(), y.data(), rows);
    auto r = ref_matmul(x, w, rows, in, out);
    for (int i = 0; i < rows; ++i)
      for (int o = 0; o < out; ++o) EXPECT_NEAR(y[(size_t)i * out + o], r[(size_t)i * out + o] + b[o], 1e-4);
  }
}

TEST(Ops, LinearW8A8MatchesReference) {
  const int in = 64, out = 16, rows = 3;
  auto w = randn((size_t)in * out, 4), x = randn((size_t)rows * in, 5, 2.0f);
  x[7] = 0.0f;
  std::vector<float> y((size_t)rows * out);
  Linear L{w.data(), nullptr, in, out, LinearMode::W8A8};
  linear(L, x.data(), y.data(), rows);
  auto xq = x;
  for (int r = 0; r < rows; ++r) ref_q8(xq.data() + (size_t)r * in, in, std::vector<bool>(in, true));
  auto ref = ref_matmul(xq, w, rows, in, out);
  auto exact = ref_matmul(x, w, rows, in, out);
  double max_q_err = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    EXPECT_NEAR(y[i], ref[i], 1e-4);
    max_q_err = std::max(max_q_err, (double)std::fabs(ref[i] - exact[i]));
  }
  EXPECT_GT(max_q_err, 1e-4);  // the rounding really happened
  // Every rounded activation sits on its row's int8 grid: a row of all-equal magnitudes is exact.
  std::vector<float> ones(in, 0.5f), y1(out);
  linear(L, ones.data(), y1.data(), 1);
  auto r1 = ref_matmul(ones, w, 1, in, out);
  for (int o = 0; o < out; ++o) EXPECT_NEAR(y1[o], r1[o], 1e-5);
  // Hand-computed ties: amax 127 -> scale 1; 2.5 -> 2, 3.5 -> 4, -2.5 -> -2 (to even, as torch.round).
  const float eye[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  const float xt[4] = {127.0f, 2.5f, 3.5f, -2.5f};
  float yt[4];
  linear(Linear{eye, nullptr, 4, 4, LinearMode::W8A8}, xt, yt, 1);
  EXPECT_EQ(yt[0], 127.0f);
  EXPECT_EQ(yt[1], 2.0f);
  EXPECT_EQ(yt[2], 4.0f);
  EXPECT_EQ(yt[3], -2.0f);
}

TEST(Ops, LinearInt8OutlierHandComputed) {
  // bitsandbytes' LLM.int8() on one call of 2 rows, in = 3, out = 1, threshold 6, W = (1, 2, 3) used as is.
  // x row 0 = (2, 6.5, -1): 6.5 >= 6 makes column 1 an outlier column; row 1 = (-0.5, 5, 4).
  // Row scales: absmax over the entries below the threshold, outlier column included: row 0 max(2, 1) = 2,
  // row 1 max(0.5, 5, 4) = 5 (its 5 in the outlier column counts, as in int8_vectorwise_quant).
  // Regular columns rounded: row 0: 2 -> 127 -> 2, -1 -> -63.5 -> -64 (ties to even) -> -64 * 2/127;
  // row 1: -0.5 -> -12.7 -> -13 -> -13 * 5/127, 4 -> 101.6 -> 102 -> 102 * 5/127. Outlier column exact.
  const float w[3] = {1, 2, 3}, x[6] = {2, 6.5f, -1, -0.5f, 5, 4};
  Linear L{w, nullptr, 3, 1, LinearMode::Int8Outlier, 6.0f};
  float y[2];
  linear(L, x, y, 2);
  EXPECT_NEAR(y[0], 2.0f * 1 + 6.5f * 2 + (-64 * 2.0f / 127) * 3, 1e-5);
  EXPECT_NEAR(y[1], (-13 * 5.0f / 127) * 1 + 5.0f * 2 + (102 * 5.0f / 127) * 3, 1e-5);
  // Exactly at the threshold is an outlier (bitsandbytes: >=); just below it is not.
  const float x2[3] = {6.0f, 1.0f, 0.0f}, x3[3] = {5.99f, 1.0f, 0.0f};
  linear(L, x2, y, 1);
  EXPECT_NEAR(y[0], 6.0f + std::nearbyint(1.0f * 127) * (1.0f / 127) * 2, 1e-5);  // scale from |1| alone
  linear(L, x3, y, 1);
  EXPECT_NEAR(y[0], 5.99f + std::nearbyint(1.0f * (127 / 5.99f)) * (5.99f / 127) * 2, 1e-5);
}

TEST(Ops, LinearInt8OutlierMatchesReference) {
  const int in = 32, out = 8, rows = 4;
  auto w = randn((size_t)in * out, 6), x = randn((size_t)rows * in, 7);
  x[1 * in + 5] = 9.0f;    // column 5 is an outlier (row 1)
  x[3 * in + 20] = -7.5f;  // column 20 too
  x[0 * in + 20] = 4.0f;   // a large regular-size entry of an outlier column: part of row 0's scale
  std::vector<float> y((size_t)rows * out);
  Linear L{w.data(), nullptr, in, out, LinearMode::Int8Outlier, 6.0f};
  linear(L, x.data(), y.data(), rows);
  // The reference: each row's scale over its entries below 6; regular columns rounded; W as is.
  auto xq = x;
  for (int r = 0; r < rows; ++r) {
    float* v = xq.data() + (size_t)r * in;
    float amax = 0;
    for (int j = 0; j < in; ++j)
      if (std::fabs(v[j]) < 6.0f) amax = std::max(amax, std::fabs(v[j]));
    ASSERT_GT(amax, 0.0f);
    for (int j = 0; j < in; ++j)
      if (j != 5 && j != 20) v[j] = std::nearbyint(v[j] * (127.0f / amax)) * (amax / 127.0f);
  }
  EXPECT_GE(std::fabs(x[20]), 4.0f);
  auto ref = ref_matmul(xq, w, rows, in, out);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-4);
  // The outlier columns are exact: with only outliers nonzero, the result equals the f32 product.
  std::vector<float> xo((size_t)rows * in, 0.0f);
  xo[1 * in + 5] = 9.0f;
  xo[3 * in + 20] = -7.5f;
  linear(L, xo.data(), y.data(), rows);
  auto exact = ref_matmul(xo, w, rows, in, out);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], exact[i], 1e-5);
  // With a huge threshold nothing is an outlier: every row of x int8 over all columns (W still as is).
  L.threshold = 1e9f;
  linear(L, x.data(), y.data(), rows);
  xq = x;
  std::vector<bool> all(in, true);
  for (int r = 0; r < rows; ++r) ref_q8(xq.data() + (size_t)r * in, in, all);
  ref = ref_matmul(xq, w, rows, in, out);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-4);
}

TEST(Ops, AttentionMatchesNaiveGqa) {
  // 4 query heads over 2 kv heads, head_dim 8; 3 cached positions + 70 new ones (sgemm path) and 1 new (loop path).
  const AttentionShape s{4, 2, 8};
  const int kvd = 16, qd = 32;
  for (int n : {70, 1}) {
    const int pos0 = 3, T = pos0 + n;
    auto q = randn((size_t)n * qd, 8), k = randn((size_t)T * kvd, 9), v = randn((size_t)T * kvd, 10);
    std::vector<float> o((size_t)n * qd);
    attention(s, q.data(), k.data(), v.data(), kvd, pos0, n, o.data());
    for (int i = 0; i < n; ++i)
      for (int h = 0; h < 4; ++h) {
        const int g = h / 2;
        std::vector<double> p(pos0 + i + 1);
        double mx = -1e300, z = 0;
        for (int j = 0; j <= pos0 + i; ++j) {
          double d = 0;
          for (int c = 0; c < 8; ++c) d += (double)q[(size_t)i * qd + h * 8 + c] * k[(size_t)j * kvd + g * 8 + c];
          p[j] = d / std::sqrt(8.0);
          mx = std::max(mx, p[j]);
        }
        for (auto& e : p) z += (e = std::exp(e - mx));
        for (int c = 0; c < 8; ++c) {
          double acc = 0;
          for (int j = 0; j <= pos0 + i; ++j) acc += p[j] / z * v[(size_t)j * kvd + g * 8 + c];
          EXPECT_NEAR(o[(size_t)i * qd + h * 8 + c], acc, 1e-5) << "n " << n << " i " << i << " h " << h;
        }
      }
  }
}

// The decode path's score kernel (eight keys per AVX2 register after a transpose) against its plain reference
// twin: bit-identical (the same fma chain per key), for head sizes that are and are not multiples of 8, strided
// keys, ranges with and without a remainder; and within float error of a double-precision dot product.
TEST(Ops, AttentionScoresKernelEqualsReference) {
  for (int hd : {64, 8, 128, 12, 3}) {
    const int stride = 3 * hd + 5, T = 45;
    auto q = randn((size_t)hd, 11 + hd), k = randn((size_t)T * stride, 12 + hd);
    for (auto [lo, len] : {std::pair{0, 45}, std::pair{0, 8}, std::pair{3, 19}, std::pair{7, 7}, std::pair{44, 45},
                           std::pair{0, 1}}) {
      std::vector<float> a(T, -1.0f), b(T, -1.0f);
      attention_scores(q.data(), k.data(), stride, hd, lo, len, 0.125f, a.data());
      attention_scores_ref(q.data(), k.data(), stride, hd, lo, len, 0.125f, b.data());
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * T)) << "hd " << hd << " lo " << lo << " len " << len;
      for (int j = lo; j < len; ++j) {
        double d = 0;
        for (int c = 0; c < hd; ++c) d += (double)q[c] * k[(size_t)j * stride + c];
        EXPECT_NEAR(a[j], d * 0.125, 1e-5 * (1 + std::fabs(d))) << "hd " << hd << " key " << j;
      }
      // Grouped heads: 1..6 query heads (rows of q, stride hd + 1) over the same keys, each equal to the reference.
      for (int nh : {1, 2, 3, 4, 6}) {
        auto qs = randn((size_t)nh * (hd + 1), 13 + hd + nh);
        std::vector<float> g((size_t)nh * T, -1.0f), r((size_t)nh * T, -1.0f);
        attention_scores_heads(qs.data(), hd + 1, nh, k.data(), stride, hd, lo, len, 0.125f, g.data(), T);
        for (int i = 0; i < nh; ++i)
          attention_scores_ref(qs.data() + (size_t)i * (hd + 1), k.data(), stride, hd, lo, len, 0.125f,
                               r.data() + (size_t)i * T);
        ASSERT_EQ(0, std::memcmp(g.data(), r.data(), sizeof(float) * g.size())) << "heads " << nh << " hd " << hd;
      }
      for (int j = 0; j < T; ++j) {
        if (j < lo || j >= len) {
          EXPECT_EQ(a[j], -1.0f) << "kernel wrote outside [lo, len)";
        }
      }
    }
  }
}

// The decode path's weighted sum of values (output in registers) against its plain reference twin: bit-identical
// (the same fma per element, keys in order), and close to a double-precision sum.
TEST(Ops, AttentionWeightedSumKernelEqualsReference) {
  for (int hd : {64, 8, 128, 256, 72, 12, 3}) {
    const int stride = 2 * hd + 3, T = 41;
    auto p = randn((size_t)T, 21 + hd), v = randn((size_t)T * stride, 22 + hd);
    for (auto [lo, len] : {std::pair{0, 41}, std::pair{5, 6}, std::pair{3, 40}, std::pair{7, 7}}) {
      std::vector<float> a(hd + 4, -1.0f), b(hd + 4, -1.0f);
      attention_weighted_sum(p.data(), v.data(), stride, hd, lo, len, a.data());
      attention_weighted_sum_ref(p.data(), v.data(), stride, hd, lo, len, b.data());
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * (hd + 4)))
          << "hd " << hd << " lo " << lo << " len " << len;
      for (int c = 0; c < hd; ++c) {
        double d = 0;
        for (int j = lo; j < len; ++j) d += (double)p[j] * v[(size_t)j * stride + c];
        EXPECT_NEAR(a[c], d, 1e-5 * (1 + std::fabs(d))) << "hd " << hd << " dim " << c;
      }
      EXPECT_EQ(a[hd], -1.0f) << "kernel wrote past hd";
    }
  }
}

// The ISAs this CPU runs (Ref always).
std::vector<KernelIsa> cpu_isas() {
  std::vector<KernelIsa> v{KernelIsa::Ref};
  for (KernelIsa isa : {KernelIsa::Avx2, KernelIsa::Avx512})
    if (cpu_has_isa(isa)) v.push_back(isa);
  return v;
}

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// The vector expf (ops/vexp.h: glibc's double-precision algorithm, lane for lane) against std::exp, bit for bit:
// every 1021st float <= 0 (sign bit set, -0 .. -inf; 2.1 M values, the unrolled and the masked tail paths), the
// underflow / subnormal / overflow boundaries and their neighbours, -inf, +inf, NaN, and the floats of [0, 89]
// in steps of 1/64. The exhaustive check of every float is scripts/check_expf.sh (docs/correctness.md).
TEST(Ops, ExpfKernelEqualsLibm) {
  EXPECT_TRUE(exp_f32_matches_libm()) << "this C library's expf is not the one the vector kernel reproduces";
  std::vector<float> x;
  for (uint64_t b = 0x80000000u; b <= 0xff800000u; b += 1021) x.push_back(from_bits((uint32_t)b));
  for (float b : {-0x1.9fe368p6f, -0x1.9d1d9ep6f, -87.33655f, -87.3365479f, 0x1.62e42ep6f, -0.0f, 0.0f, -1e-30f,
                  -INFINITY, INFINITY}) {
    float lo = b, hi = b;
    for (int k = 0; k < 40; ++k) {
      x.push_back(lo);
      x.push_back(hi);
      lo = std::nextafter(lo, -INFINITY);
      hi = std::nextafter(hi, INFINITY);
    }
  }
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  x.push_back(-std::numeric_limits<float>::quiet_NaN());
  for (int i = 0; i <= 89 * 64; ++i) x.push_back(i / 64.0f);
  std::vector<float> want(x.size());
  exp_f32_ref(x.data(), want.data(), (int64_t)x.size());
  for (KernelIsa isa : cpu_isas()) {
    if (isa == KernelIsa::Ref) continue;
    // two start offsets and lengths (different remainders modulo the vector width: the masked / scalar tails)
    for (int off : {0, 3}) {
      const int64_t n = (int64_t)x.size() - off - (off ? 11 : 0);
      std::vector<float> got(n + 1, 7.0f);
      exp_f32_isa(x.data() + off, got.data(), n, isa);
      for (int64_t i = 0; i < n; ++i)
        if (std::memcmp(&got[i], &want[off + i], 4) != 0) {
          uint32_t xb;
          std::memcpy(&xb, &x[off + i], 4);
          FAIL() << kernel_isa_name(isa) << ": exp(" << x[off + i] << " = 0x" << std::hex << xb << ") = " << got[i]
                 << ", std::exp " << want[off + i];
        }
      EXPECT_EQ(got[n], 7.0f) << "wrote past n";
    }
  }
  std::vector<float> y(x.size());
  exp_f32(x.data(), y.data(), (int64_t)x.size());
  EXPECT_EQ(0, std::memcmp(y.data(), want.data(), sizeof(float) * y.size()));
}

// softmax's vector kernels against softmax_ref bit for bit: rows of every length 0..70 and some long ones, of
// scores at several spreads (down to weights that underflow to 0 or a subnormal), with -inf entries, all equal,
// signed zeros, a NaN.
TEST(Ops, SoftmaxKernelsEqualReference) {
  std::mt19937_64 g(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<std::vector<float>> rows;
  for (float spread : {0.1f, 3.0f, 30.0f, 200.0f})
    for (int n : {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 70, 255, 1000, 4099}) {
      std::vector<float> r(n);
      for (auto& e : r) e = spread * nd(g);
      rows.push_back(r);
    }
  for (int n = 1; n <= 70; ++n) {
    std::vector<float> r(n);
    for (auto& e : r) e = 10.0f * nd(g);
    if (n > 3) r[n / 2] = -INFINITY;
    rows.push_back(r);
  }
  rows.push_back(std::vector<float>(37, 2.5f));
  rows.push_back({-0.0f, 0.0f, -0.0f, -3.0f, 0.0f, -0.0f, -1.0f, -0.0f, 0.0f, 0.0f, -0.0f, -0.0f, 0.0f, -0.0f, 0.0f,
                  -0.0f, 0.0f, -0.0f});
  rows.push_back({1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f, -5.0f, 0.5f, 0.25f, 1.0f, 3.0f, -1.0f, 2.0f,
                  4.0f, 1.0f, 0.0f, -2.0f, 1.5f, 1.0f, 2.0f, 9.0f});
  rows.push_back({-150.0f, 0.0f, -103.5f, -104.2f, -95.0f, -88.0f, -87.0f, -120.0f, -103.0f, -1e30f, -103.9f,
                  -103.99f, -60.0f, -87.5f, -100.0f, -104.0f, -103.3f});
  // bit for bit (an empty row has no data pointer: memcmp must not see it)
  auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0);
  };
  for (const auto& r : rows) {
    std::vector<float> want = r;
    softmax_ref(want.data(), (int)want.size());
    for (KernelIsa isa : cpu_isas()) {
      std::vector<float> got = r;
      softmax_isa(got.data(), (int)got.size(), isa);
      ASSERT_TRUE(same(got, want)) << kernel_isa_name(isa) << " n " << r.size();
    }
    std::vector<float> got = r;
    softmax(got.data(), (int)got.size());
    ASSERT_TRUE(same(got, want)) << "softmax n " << r.size();
  }
}

// swiglu (exp_f32 on chunks of 256) against the plain loop of silu(g) * u, bit for bit, in place too: gates from
// small to beyond the exp overflow (-g > 88.7) and underflow ranges.
TEST(Ops, SwigluEqualsReference) {
  for (float spread : {0.5f, 4.0f, 60.0f}) {
    for (int64_t n : {1, 15, 16, 255, 256, 257, 1536, 4099}) {
      auto gate = randn((size_t)n, 51 + n, spread), up = randn((size_t)n, 52 + n);
      gate[0] = -100.0f;
      if (n > 2) gate[1] = 120.0f, gate[2] = -0.0f;
      std::vector<float> want(n), got(n);
      swiglu_ref(gate.data(), up.data(), want.data(), n);
      swiglu(gate.data(), up.data(), got.data(), n);
      ASSERT_EQ(0, std::memcmp(got.data(), want.data(), sizeof(float) * n)) << "n " << n << " spread " << spread;
      swiglu(gate.data(), up.data(), gate.data(), n);  // in place
      ASSERT_EQ(0, std::memcmp(gate.data(), want.data(), sizeof(float) * n)) << "in place, n " << n;
    }
  }
}

// The grouped decode kernels of every ISA (AVX-512: 16 keys per register after 16 x 8 transposes, a masked last
// block; the weighted sum of up to four heads per pass over V) against the plain reference loops, bit for bit:
// head sizes that are and are not multiples of 8 / 16, 1..9 heads, ranges with every remainder modulo 16. Then
// attention()'s decode rows (SmolLM2's shape: 9 heads over 3 kv heads, size 64) give the same floats with each ISA.
TEST(Ops, AttentionHeadsKernelsEqualReference) {
  for (int hd : {64, 16, 8, 32, 128, 80, 12, 3}) {
    const int stride = 3 * hd + 5, T = 70;
    auto k = randn((size_t)T * stride, 31 + hd), v = randn((size_t)T * stride, 32 + hd);
    for (int nh : {1, 2, 3, 4, 5, 7, 9}) {
      auto qs = randn((size_t)nh * (hd + 1), 33 + hd + nh);
      auto p = randn((size_t)nh * T, 34 + hd + nh, 0.3f);
      for (auto [lo, len] : {std::pair{0, 70}, std::pair{0, 16}, std::pair{0, 1}, std::pair{3, 19}, std::pair{5, 37},
                             std::pair{7, 7}, std::pair{1, 64}, std::pair{2, 49}, std::pair{0, 31}}) {
        std::vector<float> rs((size_t)nh * T, -1.0f), ro((size_t)nh * (hd + 2), -1.0f);
        for (int i = 0; i < nh; ++i) {
          attention_scores_ref(qs.data() + (size_t)i * (hd + 1), k.data(), stride, hd, lo, len, 0.125f,
                               rs.data() + (size_t)i * T);
          attention_weighted_sum_ref(p.data() + (size_t)i * T, v.data(), stride, hd, lo, len,
                                     ro.data() + (size_t)i * (hd + 2));
        }
        for (KernelIsa isa : cpu_isas()) {
          std::vector<float> s((size_t)nh * T, -1.0f), o((size_t)nh * (hd + 2), -1.0f);
          attention_scores_heads_isa(qs.data(), hd + 1, nh, k.data(), stride, hd, lo, len, 0.125f, s.data(), T, isa);
          attention_weighted_sum_heads_isa(p.data(), T, nh, v.data(), stride, hd, lo, len, o.data(), hd + 2, isa);
          ASSERT_EQ(0, std::memcmp(s.data(), rs.data(), sizeof(float) * s.size()))
              << kernel_isa_name(isa) << " scores, heads " << nh << " hd " << hd << " lo " << lo << " len " << len;
          ASSERT_EQ(0, std::memcmp(o.data(), ro.data(), sizeof(float) * o.size()))
              << kernel_isa_name(isa) << " weighted sum, heads " << nh << " hd " << hd << " lo " << lo << " len "
              << len;
        }
      }
    }
  }
  const KernelIsa saved = kernel_isa();
  const AttentionShape shape{9, 3, 64};
  for (auto [pos0, n] : {std::pair{0, 1}, std::pair{40, 1}, std::pair{200, 2}, std::pair{611, 1}}) {
    const int T = pos0 + n;
    auto q = randn((size_t)n * 576, 41 + pos0), k = randn((size_t)T * 192, 42 + pos0),
         v = randn((size_t)T * 192, 43 + pos0);
    std::vector<float> want;
    for (KernelIsa isa : cpu_isas()) {
      set_kernel_isa(isa);
      std::vector<float> o((size_t)n * 576);
      attention(shape, q.data(), k.data(), v.data(), 192, pos0, n, o.data());
      if (want.empty()) want = o;
      EXPECT_EQ(0, std::memcmp(o.data(), want.data(), sizeof(float) * o.size()))
          << kernel_isa_name(isa) << " pos0 " << pos0;
    }
  }
  set_kernel_isa(saved);
}

// The decode rows of several sequences whose caches hold the same prefix (copies of one prompt), attended
// together (the prefix's keys and values read once for all rows) against attention() row by row: the same floats
// for prefixes that do and do not end on a 16-key block, rows with 1..40 own keys, 1..5 rows, grouped-query shapes
// of SmolLM2 (9 heads over 3, size 64), group 6 / size 128 (Qwen2.5-1.5B-like), group 1 / size 16, and a head size
// the grouped kernels do not take (8: the per-row fallback).
TEST(Ops, AttentionDecodeSharedEqualsAttention) {
  for (const AttentionShape shape : {AttentionShape{9, 3, 64}, AttentionShape{12, 2, 128}, AttentionShape{4, 4, 16},
                                     AttentionShape{4, 2, 8}}) {
    const int hd = shape.head_dim, kvd = shape.n_kv_heads * hd, qd = shape.n_heads * hd;
    for (int P : {1, 15, 16, 17, 100}) {
      for (int G : {1, 2, 5}) {
        std::vector<std::vector<float>> k(G), v(G), q(G), want(G), got(G);
        auto pk = randn((size_t)P * kvd, 61 + P), pv = randn((size_t)P * kvd, 62 + P);
        std::vector<DecodeRow> rows(G);
        for (int r = 0; r < G; ++r) {
          const int pos = P + (r * 13 + P) % 40;  // own keys P .. pos
          k[r] = randn((size_t)(pos + 1) * kvd, 63 + r + P), v[r] = randn((size_t)(pos + 1) * kvd, 64 + r + P);
          std::memcpy(k[r].data(), pk.data(), sizeof(float) * pk.size());
          std::memcpy(v[r].data(), pv.data(), sizeof(float) * pv.size());
          q[r] = randn((size_t)qd, 65 + r + P);
          want[r].assign(qd, 0.0f);
          got[r].assign(qd, -1.0f);
          attention(shape, q[r].data(), k[r].data(), v[r].data(), kvd, pos, 1, want[r].data());
          rows[r] = DecodeRow{q[r].data(), k[r].data(), v[r].data(), pos, got[r].data()};
        }
        attention_decode_shared(shape, rows.data(), G, kvd, P);
        for (int r = 0; r < G; ++r)
          ASSERT_EQ(0, std::memcmp(got[r].data(), want[r].data(), sizeof(float) * qd))
              << "hd " << hd << " heads " << shape.n_heads << "/" << shape.n_kv_heads << " P " << P << " G " << G
              << " row " << r;
      }
    }
  }
}

// Decode rows of different sequences (different lengths, window or none) attended in one parallel loop: the same
// floats as attention() row by row. Enough rows and keys that the loop runs threaded.
TEST(Ops, AttentionDecodeRowsEqualsAttention) {
  for (const AttentionShape shape : {AttentionShape{9, 3, 64}, AttentionShape{12, 2, 128}, AttentionShape{4, 2, 8},
                                     AttentionShape{4, 2, 16, 0.0f, 7}}) {
    const int hd = shape.head_dim, kvd = shape.n_kv_heads * hd, qd = shape.n_heads * hd;
    for (int G : {1, 3, 8}) {
      std::vector<std::vector<float>> k(G), v(G), q(G), want(G), got(G);
      std::vector<DecodeRow> rows(G);
      for (int r = 0; r < G; ++r) {
        const int pos = (r * 37 + 5) % 300;
        k[r] = randn((size_t)(pos + 1) * kvd, 71 + r), v[r] = randn((size_t)(pos + 1) * kvd, 72 + r);
        q[r] = randn((size_t)qd, 73 + r);
        want[r].assign(qd, 0.0f);
        got[r].assign(qd, -1.0f);
        attention(shape, q[r].data(), k[r].data(), v[r].data(), kvd, pos, 1, want[r].data());
        rows[r] = DecodeRow{q[r].data(), k[r].data(), v[r].data(), pos, got[r].data()};
      }
      attention_decode_rows(shape, rows.data(), G, kvd);
      for (int r = 0; r < G; ++r)
        ASSERT_EQ(0, std::memcmp(got[r].data(), want[r].data(), sizeof(float) * qd))
            << "hd " << hd << " heads " << shape.n_heads << "/" << shape.n_kv_heads << " window " << shape.window
            << " G " << G << " row " << r;
    }
  }
}

namespace ctrust {
// Sliding window, hand-computed: with q = 0 every visible key gets the same weight, so each output row is the
// mean of the values its query sees. Window 2 over positions 0..4: row p averages v[p-1] and v[p] (row 0: v[0]).
// The sgemm path (70 rows) and the loop path (1 row) and the masked version (positions given) agree.
TEST(Ops, SlidingWindowAttentionHandComputed) {
  const int hd = 2, T = 72;
  std::vector<float> v((size_t)T * hd), k((size_t)T * hd, 0.5f);
  for (int j = 0; j < T; ++j) {
    v[(size_t)j * hd] = (float)j;
    v[(size_t)j * hd + 1] = 100.0f + (float)(j % 7);
  }
  auto want = [&](int p, int c, int window) {
    const int lo = window > 0 ? std::max(0, p - window + 1) : 0;
    double s = 0;
    for (int j = lo; j <= p; ++j) s += v[(size_t)j * hd + c];
    return s / (p - lo + 1);
  };
  for (int window : {0, 2, 5}) {
    const AttentionShape s{1, 1, hd, 0.0f, window};
    for (auto [pos0, n] : {std::pair{2, 70}, std::pair{71, 1}, std::pair{0, 3}}) {
      std::vector<float> q((size_t)n * hd, 0.0f), o((size_t)n * hd);
      attention(s, q.data(), k.data(), v.data(), hd, pos0, n, o.data());
      for (int i = 0; i < n; ++i)
        for (int c = 0; c < hd; ++c)
          ASSERT_NEAR(o[(size_t)i * hd + c], want(pos0 + i, c, window), 1e-4)
              << "window " << window << " pos0 " << pos0 << " row " << i;
      // attention_masked with the causal mask and explicit positions: the same rows.
      std::vector<unsigned char> mask((size_t)n * n, 0);
      std::vector<int> pos(n);
      for (int i = 0; i < n; ++i) {
        pos[i] = pos0 + i;
        for (int j = 0; j <= i; ++j) mask[(size_t)i * n + j] = 1;
      }
      std::vector<float> om((size_t)n * hd);
      attention_masked(s, q.data(), k.data(), v.data(), hd, pos0, n, mask.data(), om.data(), pos.data());
      for (size_t i = 0; i < om.size(); ++i) ASSERT_NEAR(om[i], o[i], 1e-4) << "masked, window " << window;
    }
  }
}

// ggml's GELU: f16 input, f16 table of 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))), clamps at +-10.
// gelu(1) = 0.841192 -> nearest f16 (step 2^-11 in [0.5, 1)): 1723 * 2^-11 = 0.84130859375.
TEST(Ops, GeluMatchesGgmlTableHandComputed) {
  EXPECT_EQ(gelu_ggml(0.0f), 0.0f);
  EXPECT_EQ(gelu_ggml(1.0f), 0.84130859375f);
  EXPECT_EQ(gelu_ggml(-10.5f), 0.0f);
  EXPECT_EQ(gelu_ggml(12.25f), 12.25f);
  // -1: 0.5 * -1 * (1 + tanh(-0.833518)) = -0.158808 -> f16 step 2^-13 in [0.125, 0.25): -1301 * 2^-13 = -0.1588134765625
  EXPECT_EQ(gelu_ggml(-1.0f), -0.1588134765625f);
  const float gate[3] = {1.0f, -11.0f, 0.0f}, up[3] = {2.0f, 3.0f, 5.0f};
  float out[3];
  geglu(gate, up, out, 3);
  EXPECT_EQ(out[0], 2 * 0.84130859375f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_EQ(out[2], 0.0f);
}
}  // namespace ctrust
