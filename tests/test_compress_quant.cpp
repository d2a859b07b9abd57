// RTN grids, GGUF packing and GPTQ against a column-by-column OBS implementation of the paper's equations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "base/error.h"
#include "compress/gptq.h"
#include "compress/quant.h"
#include "test_compress_util.h"

using namespace ctrust;
using namespace ctrust::test;

TEST(CompressRtn, HandComputedAsymmetricGrid) {
  // Row [-1, 0.5, 2, 0.2], 2 bits: xmin -1, xmax 2 -> scale 1, zero round(1) = 1, levels {-1, 0, 1, 2}.
  // 0.5 -> round(0.5) = 0 (half to even) + 1 -> value 0.
  float w[4] = {-1.0f, 0.5f, 2.0f, 0.2f};
  QuantResult r = rtn_quantize(w, 1, 4, QuantSpec{2, false, 0});
  EXPECT_FLOAT_EQ(r.grids[0].scale, 1.0f);
  EXPECT_FLOAT_EQ(r.grids[0].zero, 1.0f);
  float want[4] = {-1.0f, 0.0f, 2.0f, 0.0f};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.w[i], want[i]) << i;
}

TEST(CompressRtn, HandComputedSymmetricGrid) {
  // 4-bit sym (GPTQ grid, not ggml's): amax 7.5 -> scale 2 * 7.5 / 15 = 1, zero 8, levels -8 .. 7.
  // -7.5 -> round half to even -8 -> -8; 2.6 -> 3; 7.5 -> 8 -> level 16 clamped to 15 -> 7.
  float w[3] = {-7.5f, 2.6f, 7.5f};
  QuantResult r = rtn_quantize(w, 1, 3, QuantSpec{4, true, 0});
  EXPECT_EQ(r.grids[0].scale, 1.0f);
  EXPECT_EQ(r.grids[0].zero, 8.0f);
  EXPECT_EQ(r.w[0], -8.0f);
  EXPECT_EQ(r.w[1], 3.0f);
  EXPECT_EQ(r.w[2], 7.0f);
}

TEST(CompressRtn, HandComputedMinMaxGrid) {
  // Row [0.5, 1, 2, 3.5], 2 bits. minmax (ggml Q4_1 form): min 0.5, scale (3.5 - 0.5) / 3 = 1, levels
  // {0.5, 1.5, 2.5, 3.5}; 1 -> (1 - 0.5) / 1 = 0.5 -> 0 (half to even) -> 0.5; 2 -> 1.5 -> 2 -> 2.5.
  float w[4] = {0.5f, 1.0f, 2.0f, 3.5f};
  QuantSpec mm{2, false, 0};
  mm.minmax = true;
  QuantResult r = rtn_quantize(w, 1, 4, mm);
  EXPECT_TRUE(r.grids[0].affine);
  EXPECT_EQ(r.grids[0].scale, 1.0f);
  EXPECT_EQ(r.grids[0].min, 0.5f);
  float want[4] = {0.5f, 0.5f, 2.5f, 3.5f};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.w[i], want[i]) << i;
  // The GPTQ grid of the same row spans [0, 3.5] (0 is always on it): scale 3.5 / 3, zero 0,
  // levels {0, 7/6, 7/3, 3.5}: 0.5 -> 0, 1 -> 7/6, 2 -> 7/3, 3.5 -> 3.5.
  QuantResult g = rtn_quantize(w, 1, 4, QuantSpec{2, false, 0});
  EXPECT_FALSE(g.grids[0].affine);
  EXPECT_EQ(g.grids[0].zero, 0.0f);
  EXPECT_FLOAT_EQ(g.w[0], 0.0f);
  EXPECT_FLOAT_EQ(g.w[1], 3.5f / 3);
  EXPECT_FLOAT_EQ(g.w[2], 7.0f / 3);
  EXPECT_FLOAT_EQ(g.w[3], 3.5f);
  // A constant group keeps its value (every level 0).
  float c[4] = {0.25f, 0.25f, 0.25f, 0.25f};
  QuantResult rc = rtn_quantize(c, 1, 4, mm);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(rc.w[i], 0.25f);
}

// The premise: weights that were Q4_1 (as SmolLM2's are) come back unchanged from 4-bit group-32
// minmax RTN with fp16 scales, and pack into the same Q4_1 bytes. The GPTQ grid (integer zero point) does not.
TEST(CompressRtn, MinMaxGridReproducesQ4_1Exactly) {
  const int out = 6, in = 128;
  auto w = randn(size_t(out) * in, 11, 0.05f);
  for (int i = 0; i < in; ++i) w[i] += 0.08f;  // a row whose groups do not straddle 0
  std::vector<uint8_t> packed(ggml_nbytes(GgmlType::Q4_1, int64_t(out) * in));
  quantize(GgmlType::Q4_1, w.data(), packed.data(), int64_t(out) * in);
  std::vector<float> deq(size_t(out) * in);
  dequantize(GgmlType::Q4_1, packed.data(), deq.data(), int64_t(out) * in);
  QuantSpec s{4, false, 32, true};
  s.minmax = true;
  QuantResult r = rtn_quantize(deq.data(), out, in, s);
  for (size_t i = 0; i < deq.size(); ++i) ASSERT_EQ(r.w[i], deq[i]) << i;
  ASSERT_EQ(packable_type(r), GgmlType::Q4_1);
  EXPECT_EQ(pack_ggml(r, GgmlType::Q4_1), packed);
  QuantResult g = rtn_quantize(deq.data(), out, in, QuantSpec{4, false, 32, true});
  size_t moved = 0;
  for (size_t i = 0; i < deq.size(); ++i) moved += g.w[i] != deq[i];
  EXPECT_GT(moved, deq.size() / 4);  // the GPTQ grid moves many of them
}

TEST(CompressRtn, GroupsAndValidation) {
  auto w = randn(8 * 64, 1);
  QuantResult r = rtn_quantize(w.data(), 8, 64, QuantSpec{3, false, 16});
  EXPECT_EQ(r.n_groups, 4);
  for (int o = 0; o < 8; ++o)
    for (int c = 0; c < 64; ++c) {
      const QuantGrid& g = r.grids[size_t(o) * 4 + c / 16];
      float q = (r.w[size_t(o) * 64 + c] / g.scale) + g.zero;
      EXPECT_NEAR(q, std::nearbyint(q), 1e-4);  // on the grid
      EXPECT_GE(q, -1e-4);
      EXPECT_LE(q, 7 + 1e-4);
      EXPECT_LE(std::fabs(r.w[size_t(o) * 64 + c] - w[size_t(o) * 64 + c]), g.scale / 2 + 1e-5);
    }
  EXPECT_THROW(rtn_quantize(w.data(), 8, 64, QuantSpec{3, false, 24}), Error);
  EXPECT_THROW(rtn_quantize(w.data(), 8, 64, QuantSpec{1, false, 16}), Error);
  EXPECT_THROW(rtn_quantize(w.data(), 8, 64, QuantSpec{9, false, 16}), Error);
  EXPECT_NO_THROW(rtn_quantize(w.data(), 8, 63, QuantSpec{4, true, 0}));  // per-channel: any width
}

TEST(CompressRtn, MoreBitsLessError) {
  auto w = randn(16 * 128, 2);
  double prev = 1e30;
  for (int b = 2; b <= 8; ++b) {
    QuantResult r = rtn_quantize(w.data(), 16, 128, QuantSpec{b, false, 32});
    double e = 0;
    for (size_t i = 0; i < w.size(); ++i) e += (w[i] - r.w[i]) * (w[i] - r.w[i]);
    EXPECT_LT(e, prev) << b;
    prev = e;
  }
}

TEST(CompressRtn, Fp16Half) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  // tie -> even
  EXPECT_EQ(f32_to_f16(5.96046448e-08f), 0x0001);    // smallest subnormal
  for (uint32_t h = 0; h < 0x7c00; ++h) EXPECT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h);
}

// Packs into Q4_0 / Q4_1 / Q8_0 and decodes the blocks with ggml's formulas written out here.
TEST(CompressRtn, GgufPackingIsExact) {
  auto w = randn(4 * 64, 3, 0.05f);
  struct Case { QuantSpec s; GgmlType t; size_t bytes; };
  for (Case c : {Case{{4, true, 32, true}, GgmlType::Q4_0, 18}, Case{{4, false, 32, true}, GgmlType::Q4_1, 20},
                 Case{{8, true, 32, true}, GgmlType::Q8_0, 34}}) {
    QuantResult r = rtn_quantize(w.data(), 4, 64, c.s);
    ASSERT_EQ(packable_type(r), c.t);
    auto b = pack_ggml(r, c.t);
    ASSERT_EQ(b.size(), 4 * 2 * c.bytes);
    for (int blk = 0; blk < 8; ++blk) {
      const uint8_t* p = b.data() + blk * c.bytes;
      uint16_t dh, mh = 0;
      std::memcpy(&dh, p, 2);
      float d = f16_to_f32(dh), m = 0;
      if (c.t == GgmlType::Q4_1) { std::memcpy(&mh, p + 2, 2); m = f16_to_f32(mh); }
      for (int j = 0; j < 32; ++j) {
        float y;
        if (c.t == GgmlType::Q8_0) y = float(int8_t(p[2 + j])) * d;
        else {
          const uint8_t* qs = p + (c.t == GgmlType::Q4_1 ? 4 : 2);
          int q = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
          y = c.t == GgmlType::Q4_1 ? float(q) * d + m : float(q - 8) * d;
        }
        EXPECT_EQ(y, r.w[size_t(blk) * 32 + j]) << int(c.t) << " " << blk << " " << j;
      }
    }
  }
  // Without fp16 scales the grid is not GGUF's: no packing is claimed.
  QuantResult r = rtn_quantize(w.data(), 4, 64, QuantSpec{4, true, 32, false});
  EXPECT_EQ(packable_type(r), GgmlType::F32);
  EXPECT_THROW(pack_ggml(r, GgmlType::Q4_0), Error);
  QuantResult r3 = rtn_quantize(w.data(), 4, 64, QuantSpec{3, true, 32, true});
  EXPECT_EQ(packable_type(r3), GgmlType::F32);
}

TEST(CompressRtn, Int8RowsAbsmax) {
  float w[6] = {-2.54f, 1.0f, 0.01f, 0.0f, 0.0f, 0.0f};
  QuantResult r = quantize_rows_absmax_int8(w, 2, 3);
  EXPECT_FLOAT_EQ(r.grids[0].scale, 2.54f / 127);
  EXPECT_FLOAT_EQ(r.w[0], -2.54f);
  EXPECT_NEAR(r.w[1], 50 * 0.02f, 1e-6);
  EXPECT_NEAR(r.w[2], 0.0f, 1e-9);  // round(0.5) = 0
  EXPECT_EQ(r.w[3], 0.0f);
}

namespace {

// GPTQ written directly from the paper's OBS equations, column by column, in double:
//   q = quant(w_i),  delta_F = -(w_i - q) / [H_F^-1]_ii * (H_F^-1)_{:,i},
//   H_{F-i}^-1 = H_F^-1 - (H_F^-1)_{:,i} (H_F^-1)_{i,:} / [H_F^-1]_ii
// with the reference's dead-input handling, dampening, act-order and group rules.
std::vector<float> obs_reference(const std::vector<float>& W, int out, int in, std::vector<double> H,
                                 const GptqOptions& o) {
  const QuantSpec& s = o.q;
  const int G = s.group > 0 ? s.group : in;
  std::vector<QuantGrid> row_grid(out);
  if (s.group == 0)
    for (int r = 0; r < out; ++r) row_grid[r] = fit_grid(W.data() + size_t(r) * in, in, s);
  std::vector<double> w(W.begin(), W.end());
  double mean = 0;
  std::vector<int> dead(in, 0);
  for (int i = 0; i < in; ++i) {
    if (H[size_t(i) * in + i] == 0) { H[size_t(i) * in + i] = 1; dead[i] = 1; }
    mean += H[size_t(i) * in + i];
  }
  mean /= in;
  for (int r = 0; r < out; ++r)
    for (int i = 0; i < in; ++i) if (dead[i]) w[size_t(r) * in + i] = 0;
  std::vector<QuantGrid> static_grid(size_t(out) * (in / G));
  for (int r = 0; r < out; ++r)
    for (int g = 0; g < in / G; ++g) {
      std::vector<float> t(G);
      for (int j = 0; j < G; ++j) t[j] = float(w[size_t(r) * in + g * G + j]);
      static_grid[size_t(r) * (in / G) + g] = fit_grid(t.data(), G, s);
    }
  std::vector<int> order(in);
  std::iota(order.begin(), order.end(), 0);
  if (o.act_order)
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return H[size_t(a) * in + a] > H[size_t(b) * in + b]; });
  for (int i = 0; i < in; ++i) H[size_t(i) * in + i] += o.damp * mean;
  std::vector<double> Hi = invert(H, in);
  std::vector<float> Q(W.size());
  std::vector<QuantGrid> cur(out);
  for (int k = 0; k < in; ++k) {
    const int i = order[k];
    for (int r = 0; r < out; ++r) {
      QuantGrid g = row_grid[r];
      if (s.group > 0) {
        if (o.static_groups) {
          g = static_grid[size_t(r) * (in / G) + i / G];
        } else {
          if (k % G == 0) {
            std::vector<float> t(G);
            for (int j = 0; j < G; ++j) t[j] = float(w[size_t(r) * in + order[k + j]]);
            cur[r] = fit_grid(t.data(), G, s);
          }
          g = cur[r];
        }
      }
      double wi = w[size_t(r) * in + i];
      double q = quantize_value(g, float(wi), s.bits);
      Q[size_t(r) * in + i] = float(q);
      double f = (wi - q) / Hi[size_t(i) * in + i];
      for (int kk = k; kk < in; ++kk) {
        int j = order[kk];
        w[size_t(r) * in + j] -= f * Hi[size_t(j) * in + i];
      }
    }
    // Remove i from the inverse of the remaining set.
    const double d = Hi[size_t(i) * in + i];
    std::vector<double> col(in);
    for (int a = 0; a < in; ++a) col[a] = Hi[size_t(a) * in + i];
    for (int a = 0; a < in; ++a)
      for (int b = 0; b < in; ++b) Hi[size_t(a) * in + b] -= col[a] * col[b] / d;
  }
  return Q;
}

}  // namespace

TEST(CompressGptq, BlockedEqualsColumnByColumnObs) {
  const int out = 12, in = 48, n = 256;
  auto W = randn(size_t(out) * in, 10);
  auto X = correlated_inputs(n, in, 11);
  // One dead input: column 5 never active.
  for (int t = 0; t < n; ++t) X[size_t(t) * in + 5] = 0.0f;
  Hessian h = hessian_of(X, in);
  struct Case { QuantSpec q; bool act, stat; int block; };
  for (Case c : {Case{{4, false, 0}, false, false, 16}, Case{{3, true, 0}, true, false, 128},
                 Case{{4, false, 8}, false, false, 16}, Case{{4, false, 16}, false, false, 8},
                 Case{{4, true, 8}, true, false, 16}, Case{{2, false, 12}, true, true, 16},
                 Case{{8, false, 0}, false, false, 5}}) {
    GptqOptions o;
    o.q = c.q;
    o.act_order = c.act;
    o.static_groups = c.stat;
    o.block = c.block;
    QuantResult r = gptq_quantize(W.data(), out, in, h, o);
    std::vector<float> ref = obs_reference(W, out, in, hessian_matrix(h), o);
    EXPECT_LT(max_abs_diff(r.w, ref), 1e-5) << "bits " << c.q.bits << " group " << c.q.group << " act "
                                            << c.act << " static " << c.stat;
    for (int i = 0; i < out; ++i) EXPECT_EQ(r.w[size_t(i) * in + 5], 0.0f);
  }
}

TEST(CompressGptq, LowerOutputErrorThanRtn) {
  const int out = 32, in = 128, n = 512;
  auto W = randn(size_t(out) * in, 20, 0.1f);
  auto X = correlated_inputs(n, in, 21);
  Hessian h = hessian_of(X, in);
  for (QuantSpec q : {QuantSpec{4, false, 0}, QuantSpec{4, true, 32}, QuantSpec{3, false, 64}, QuantSpec{2, false, 32}}) {
    GptqOptions o;
    o.q = q;
    double e_rtn = output_error(W.data(), rtn_quantize(W.data(), out, in, q).w.data(), out, in, X.data(), n);
    double e_gptq = output_error(W.data(), gptq_quantize(W.data(), out, in, h, o).w.data(), out, in, X.data(), n);
    o.act_order = true;
    double e_act = output_error(W.data(), gptq_quantize(W.data(), out, in, h, o).w.data(), out, in, X.data(), n);
    EXPECT_LT(e_gptq, (q.bits > 2 ? 0.8 : 1.0) * e_rtn) << q.bits << "/" << q.group;
    EXPECT_LT(e_act, e_rtn) << q.bits << "/" << q.group;
  }
}

TEST(CompressGptq, OnGridAndPackable) {
  const int out = 8, in = 64, n = 128;
  auto W = randn(size_t(out) * in, 30, 0.05f);
  auto X = correlated_inputs(n, in, 31);
  GptqOptions o;
  o.q = QuantSpec{4, true, 32, true};
  QuantResult r = gptq_quantize(W.data(), out, in, hessian_of(X, in), o);
  EXPECT_EQ(packable_type(r), GgmlType::Q4_0);
  o.q.sym = false;
  EXPECT_EQ(packable_type(gptq_quantize(W.data(), out, in, hessian_of(X, in), o)), GgmlType::Q4_1);
  o.act_order = true;  // dynamic groups over permuted columns: not GGUF groups
  QuantResult ra = gptq_quantize(W.data(), out, in, hessian_of(X, in), o);
  EXPECT_EQ(ra.g_idx.size(), size_t(in));
  EXPECT_EQ(packable_type(ra), GgmlType::F32);
  o.static_groups = true;  // static groups keep the original groups
  EXPECT_EQ(packable_type(gptq_quantize(W.data(), out, in, hessian_of(X, in), o)), GgmlType::Q4_1);
  // The minmax grid: GPTQ's output lies on Q4_1 grids too, and it still beats RTN on the same grid.
  o.act_order = o.static_groups = false;
  o.q.minmax = true;
  QuantResult rm = gptq_quantize(W.data(), out, in, hessian_of(X, in), o);
  EXPECT_EQ(packable_type(rm), GgmlType::Q4_1);
  EXPECT_TRUE(rm.grids[0].affine);
  QuantResult rr = rtn_quantize(W.data(), out, in, o.q);
  EXPECT_LT(output_error(W.data(), rm.w.data(), out, in, X.data(), n),
            output_error(W.data(), rr.w.data(), out, in, X.data(), n));
}

TEST(CompressGptq, Errors) {
  auto W = randn(4 * 8, 40);
  Hessian h = make_hessian(8);
  GptqOptions o;
  EXPECT_THROW(gptq_quantize(W.data(), 4, 8, h, o), Error);  // no tokens
  std::vector<double> H(64, 0.0);
  H[0] = -1.0;  // not positive definite
  H[9] = 1.0;
  EXPECT_THROW(gptq_quantize_h(W.data(), 4, 8, H, o), Error);
  Hessian h6 = make_hessian(6);
  EXPECT_THROW(gptq_quantize(W.data(), 4, 8, h6, o), Error);
}
