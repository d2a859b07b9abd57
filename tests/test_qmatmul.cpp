// Native (typed-weight) kernels, ops/qmatmul.h: activation rounding on hand-computed cases; every ISA's dot
// product against the reference loop and against the f32 product of the dequantized operands; the threaded
// matrix drivers against single dot products; the native model against llama.cpp's own logits on the Q4_1
// (SmolLM2) and Q4_K_M (Qwen2.5-1.5B) files.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/gguf.h"
#include "compress/driver.h"
#include "model/model.h"
#include "pipeline/fingerprint.h"
#include "ops/linear.h"
#include "ops/qmatmul.h"
#include "ops/qmatmul_ctrust.h"
#include "io/ctrust_types.h"
#include "test_paths.h"

using namespace ctrust;

namespace {

const GgmlType kTypes[] = {GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                           GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K,
                           GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

uint16_t f16(float f) { return ggml_fp32_to_fp16(f); }
void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// native_matmul (the threaded driver, as a model runs it) with `isa` dispatched; the previous ISA is restored after.
void native_matmul_dispatched(KernelIsa isa, GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y,
                              int rows) {
  struct Restore {
    KernelIsa isa = kernel_isa();
    ~Restore() { set_kernel_isa(isa); }
  } restore;
  set_kernel_isa(isa);
  native_matmul(t, w, in, out, x, y, rows);
}

// n values of weight type t: random bytes for the quants (every bit pattern is a valid quant) and sane f16
// scales (so the f32 sums stay far from overflow). F16/BF16 from random floats.
std::vector<uint8_t> random_weights(GgmlType t, int64_t rows, int64_t n, std::mt19937& rng) {
  const GgmlTypeInfo* info = ggml_type_info((uint32_t)t);
  const size_t row_bytes = ggml_nbytes(t, n);
  std::vector<uint8_t> w(row_bytes * rows);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> val(-1.0f, 1.0f), scale(0.002f, 0.05f);
  if (t == GgmlType::F16 || t == GgmlType::BF16) {
    for (int64_t i = 0; i < rows * n; ++i)
      put16(w.data() + 2 * i, t == GgmlType::F16 ? f16(val(rng)) : ggml_fp32_to_bf16(val(rng)));
    return w;
  }
  for (auto& b : w) b = (uint8_t)byte(rng);
  const int64_t nb = rows * n / info->block_size;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* p = w.data() + b * info->type_size;
    switch (t) {
      case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: put16(p, f16(scale(rng))); break;
      case GgmlType::Q4_1: case GgmlType::Q5_1: put16(p, f16(scale(rng))); put16(p + 2, f16(-8 * scale(rng))); break;
      case GgmlType::Q2_K: put16(p + 80, f16(scale(rng))); put16(p + 82, f16(scale(rng))); break;
      case GgmlType::Q3_K: put16(p + 108, f16(scale(rng))); break;
      case GgmlType::Q4_K: case GgmlType::Q5_K: put16(p, f16(scale(rng) / 8)); put16(p + 2, f16(scale(rng) / 8)); break;
      case GgmlType::Q6_K: put16(p + 208, f16(scale(rng) / 16)); break;
      default: break;
    }
  }
  return w;
}

std::vector<float> random_acts(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = g(rng);
  x[n / 3] = 9.0f;  // an outlier, as real activations have
  return x;
}

// The rounded activations as f32 values (d * q), from their blocks.
std::vector<float> dequant_acts(GgmlType wt, const std::vector<uint8_t>& xq, int64_t n) {
  std::vector<float> out(n);
  const GgmlType a = native_act_type(wt);
  if (a == GgmlType::F16 || a == GgmlType::BF16) {
    dequantize(a, xq.data(), out.data(), n);
  } else if (a == GgmlType::Q8_K) {
    for (int64_t b = 0; b < n / 256; ++b) {
      float d;
      std::memcpy(&d, xq.data() + b * 292, 4);
      for (int j = 0; j < 256; ++j) out[b * 256 + j] = d * (int8_t)xq[b * 292 + 4 + j];
    }
  } else {
    const size_t bs = a == GgmlType::Q8_1 ? 36 : 34, off = a == GgmlType::Q8_1 ? 4 : 2;
    for (int64_t b = 0; b < n / 32; ++b) {
      uint16_t h;
      std::memcpy(&h, xq.data() + b * bs, 2);
      const float d = ggml_fp16_to_fp32(h);
      for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * (int8_t)xq[b * bs + off + j];
    }
  }
  return out;
}

// The f64 product of the dequantized weight row (io/quant.cpp, ggml's dequantize_row_*) with the dequantized
// rounded activations xq (n values), and sum |w x| in *mag. For Q4_1 / Q5_1 ggml's min term uses the activations'
// s = f16(d * sum q) instead of sum(d_f16 * q): m * sum(xf) is replaced by m * s per block (the rest is exact).
double dequant_dot(GgmlType t, const uint8_t* w, const std::vector<uint8_t>& xq, int64_t n, double* mag) {
  std::vector<float> wf(n);
  dequantize(t, w, wf.data(), n);
  const std::vector<float> xf = dequant_acts(t, xq, n);
  double exact = 0;
  *mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    exact += (double)wf[i] * xf[i];
    *mag += std::fabs((double)wf[i] * xf[i]);
  }
  if (t == GgmlType::Q4_1 || t == GgmlType::Q5_1) {
    const size_t wbs = ggml_type_info((uint32_t)t)->type_size;
    for (int64_t b = 0; b < n / 32; ++b) {
      uint16_t mh, sh;
      std::memcpy(&mh, w + b * wbs + 2, 2);
      std::memcpy(&sh, xq.data() + b * 36 + 2, 2);
      double xs = 0;
      for (int j = 0; j < 32; ++j) xs += xf[b * 32 + j];
      exact += ggml_fp16_to_fp32(mh) * ((double)ggml_fp16_to_fp32(sh) - xs);
    }
  }
  return exact;
}

std::vector<KernelIsa> isas() {
  std::vector<KernelIsa> v{KernelIsa::Ref};
  if (cpu_has_isa(KernelIsa::Avx2)) v.push_back(KernelIsa::Avx2);
  if (cpu_has_isa(KernelIsa::Avx512)) v.push_back(KernelIsa::Avx512);
  return v;
}

}  // namespace

// ---------------------------------------------------------------- activation rounding, hand-computed

TEST(QMatmul, Q8_0ActivationsHandComputed) {
  // max|x| = 2: d = 2/127 (as f16), id = 127/2 = 63.5; 1 * 63.5 = 63.5 rounds to even 64; 0.5 -> 31.75 -> 32;
  // -2 -> -127; 0.25 -> 15.875 -> 16; 3/127 -> 1.5 -> 2 (ties to even); 1/127 -> 0.5 -> 0.
  std::vector<float> x(32, 0.0f);
  x[0] = 1.0f; x[1] = 0.5f; x[2] = -2.0f; x[3] = 0.25f; x[4] = 3.0f / 127.0f; x[5] = 1.0f / 127.0f;
  std::vector<uint8_t> q(34);
  native_quantize_row(GgmlType::Q8_0, x.data(), q.data(), 32);
  uint16_t d;
  std::memcpy(&d, q.data(), 2);
  EXPECT_EQ(d, ggml_fp32_to_fp16(2.0f / 127.0f));
  const int expect[6] = {64, 32, -127, 16, 2, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ((int8_t)q[2 + i], expect[i]) << i;
  // Q8_1 (for Q4_1 weights) adds s = f16(d * sum q) with the f32 d.
  std::vector<uint8_t> q1(36);
  native_quantize_row(GgmlType::Q4_1, x.data(), q1.data(), 32);
  uint16_t s;
  std::memcpy(&s, q1.data() + 2, 2);
  EXPECT_EQ(s, ggml_fp32_to_fp16(2.0f / 127.0f * (64 + 32 - 127 + 16 + 2)));
  for (int i = 0; i < 6; ++i) EXPECT_EQ((int8_t)q1[4 + i], expect[i]) << i;
}

TEST(QMatmul, Q8_KActivationsHandComputed) {
  // The element of largest magnitude is -2: iscale = -127 / -2 = 63.5, d = 1/63.5; 1 -> 63.5 -> 64 (even),
  // -2 -> -127, 0.5 -> 31.75 -> 32; bsums of the first 16 = 64 - 127 + 32 = -31.
  std::vector<float> x(256, 0.0f);
  x[0] = 1.0f; x[1] = -2.0f; x[2] = 0.5f; x[20] = 1.0f;
  std::vector<uint8_t> q(292);
  native_quantize_row(GgmlType::Q4_K, x.data(), q.data(), 256);
  float d;
  std::memcpy(&d, q.data(), 4);
  EXPECT_EQ(d, 1.0f / 63.5f);
  EXPECT_EQ((int8_t)q[4], 64);
  EXPECT_EQ((int8_t)q[5], -127);
  EXPECT_EQ((int8_t)q[6], 32);
  int16_t b0, b1;
  std::memcpy(&b0, q.data() + 260, 2);
  std::memcpy(&b1, q.data() + 262, 2);
  EXPECT_EQ(b0, -31);
  EXPECT_EQ(b1, 64);
  // All zero: d = 0 and zero quants.
  std::vector<float> z(256, 0.0f);
  native_quantize_row(GgmlType::Q6_K, z.data(), q.data(), 256);
  for (uint8_t b : q) EXPECT_EQ(b, 0);
}

// The AVX2 / AVX-512 activation rounding (the matrix drivers' path) writes exactly the reference's bytes: random
// rows with an outlier, an all-zero block, a block whose extreme occurs with both signs (the first one sets the
// sign of the Q8_K scale), and ties (x * scale exactly k + 0.5: rounded to even).
TEST(QMatmul, SimdActivationRoundingEqualsReference) {
  std::mt19937 rng(23);
  const int64_t n = 1024;
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K}) {
    SCOPED_TRACE(ggml_type_name(t));
    for (int trial = 0; trial < 8; ++trial) {
      auto x = random_acts(n, rng);
      std::fill(x.begin() + 256, x.begin() + 512, 0.0f);  // a zero block (Q8_K) / eight zero blocks (Q8_0/Q8_1)
      x[520] = 3.0f;                                      // +3 first, then -3: the first extreme counts
      x[530] = -3.0f;
      for (int j = 512; j < 768; ++j)
        if (j != 520 && j != 530) x[j] = std::clamp(x[j], -2.9f, 2.9f);
      // ties: a block whose extreme is 127 (scale 1), values k + 0.5
      x[768] = -127.0f;
      for (int j = 769; j < 800; ++j) x[j] = (float)((j % 17) - 8) + 0.5f;
      std::vector<uint8_t> a(native_act_bytes(t, n)), b(native_act_bytes(t, n));
      native_quantize_row(t, x.data(), a.data(), n);
      for (KernelIsa isa : isas()) {
        std::fill(b.begin(), b.end(), 0xAB);
        native_quantize_row_isa(t, x.data(), b.data(), n, isa);
        ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0) << kernel_isa_name(isa) << " trial " << trial;
      }
    }
  }
}

// ---------------------------------------------------------------- dot products

// For every type: each ISA equals the reference loop, and the reference equals the f64 product of the
// dequantized weights (io/quant.cpp, ggml's dequantize_row_*) with the dequantized rounded activations, within
// f32 rounding of the sum (relative to sum |w x|).
TEST(QMatmul, DotProductsMatchReferenceAndDequantizedProduct) {
  std::mt19937 rng(11);
  const int64_t n = 512;
  for (GgmlType t : kTypes) {
    SCOPED_TRACE(ggml_type_name(t));
    for (int trial = 0; trial < 20; ++trial) {
      auto w = random_weights(t, 1, n, rng);
      auto x = random_acts(n, rng);
      std::vector<uint8_t> xq(native_act_bytes(t, n));
      native_quantize_row(t, x.data(), xq.data(), n);
      std::vector<float> wf(n);
      dequantize(t, w.data(), wf.data(), n);
      const std::vector<float> xf = dequant_acts(t, xq, n);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        exact += (double)wf[i] * xf[i];
        mag += std::fabs((double)wf[i] * xf[i]);
      }
      if (t == GgmlType::Q4_1 || t == GgmlType::Q5_1) {
        // ggml's min term uses the activations' s = f16(d * sum q) instead of sum(d_f16 * q): replace
        // m * sum(xf) by m * s per block (the rest is exact).
        const size_t wbs = ggml_type_info((uint32_t)t)->type_size;
        for (int64_t b = 0; b < n / 32; ++b) {
          uint16_t mh, sh;
          std::memcpy(&mh, w.data() + b * wbs + 2, 2);
          std::memcpy(&sh, xq.data() + b * 36 + 2, 2);
          double xs = 0;
          for (int j = 0; j < 32; ++j) xs += xf[b * 32 + j];
          exact += ggml_fp16_to_fp32(mh) * ((double)ggml_fp16_to_fp32(sh) - xs);
        }
      }
      ASSERT_GT(mag, 0.0);
      const float ref = native_vec_dot(t, w.data(), xq.data(), n, KernelIsa::Ref);
      EXPECT_NEAR(ref, exact, 2e-6 * mag + 1e-30) << "trial " << trial;
      // The k-quants' SIMD versions compute the reference's exact integer block sums and its f32 steps (two
      // explicit FMAs per block): equal bits. The other types sum f32 lanes in another order: within f32 rounding.
      const bool kquant = native_act_type(t) == GgmlType::Q8_K;
      for (KernelIsa isa : isas()) {
        const float v = native_vec_dot(t, w.data(), xq.data(), n, isa);
        if (kquant)
          EXPECT_EQ(v, ref) << kernel_isa_name(isa) << " trial " << trial;
        else
          EXPECT_NEAR(v, ref, 2e-6 * mag) << kernel_isa_name(isa) << " trial " << trial;
      }
    }
  }
}

// The rounded activations approximate the input: |x - d q| <= d/2 per element, d = max|x|/127, plus for Q8_0/Q8_1
// the f16 rounding of d (relative 2^-11, times |q| <= 127).
TEST(QMatmul, RoundedActivationsWithinHalfAStep) {
  std::mt19937 rng(5);
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q4_K}) {
    auto x = random_acts(512, rng);
    std::vector<uint8_t> xq(native_act_bytes(t, 512));
    native_quantize_row(t, x.data(), xq.data(), 512);
    auto xf = dequant_acts(t, xq, 512);
    const int bs = native_act_type(t) == GgmlType::Q8_K ? 256 : 32;
    for (int b = 0; b < 512 / bs; ++b) {
      float amax = 0;
      for (int j = 0; j < bs; ++j) amax = std::max(amax, std::fabs(x[b * bs + j]));
      const float step = amax / 127.0f;
      const float bound = bs == 256 ? 0.5001f * step : (0.5f + 127.0f / 2048.0f) * step * 1.0001f;
      for (int j = 0; j < bs; ++j)
        EXPECT_LE(std::fabs(x[b * bs + j] - xf[b * bs + j]), bound) << ggml_type_name(t) << " " << b * bs + j;
    }
  }
}

// ---------------------------------------------------------------- matrix drivers

// native_matmul (threaded, several rows at once) gives exactly the single dot products of the dispatched ISA,
// whatever the number of rows: decode (1 row), a prefill-sized block, and ragged row counts (13 = 8 + 4 + 1 for
// the k-quants on AVX-512), for every ISA the CPU has.
TEST(QMatmul, MatmulEqualsDotProductsForAnyRowCount) {
  std::mt19937 rng(3);
  const int in = 256, out = 53;
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                     GgmlType::Q6_K, GgmlType::F16}) {
    SCOPED_TRACE(ggml_type_name(t));
    auto w = random_weights(t, out, in, rng);
    const size_t wrow = ggml_nbytes(t, in);
    for (int rows : {1, 5, 7, 13, 40, 45}) {
      auto x = random_acts((int64_t)rows * in, rng);
      std::vector<float> y((size_t)rows * out), y1((size_t)rows * out);
      native_matmul(t, w.data(), in, out, x.data(), y.data(), rows);
      std::vector<uint8_t> xq(native_act_bytes(t, in));
      for (KernelIsa isa : isas()) {  // every ISA's driver (AVX-512: 8-row k-quant and 16-row packed passes)
        native_matmul_isa(t, w.data(), in, out, x.data(), y1.data(), rows, isa);
        for (int r = 0; r < rows; ++r) {
          native_quantize_row(t, x.data() + (size_t)r * in, xq.data(), in);
          for (int o = 0; o < out; ++o) {
            const float d = native_vec_dot(t, w.data() + wrow * o, xq.data(), in, isa);
            ASSERT_EQ(y1[(size_t)r * out + o], d) << kernel_isa_name(isa) << ", " << rows << " rows, r " << r << " o " << o;
            if (isa == kernel_isa()) ASSERT_EQ(y[(size_t)r * out + o], d) << rows << " rows, r " << r << " o " << o;
          }
        }
      }
    }
  }
}

// The AVX-512 k-quant prefill kernel takes groups of 16 or 8 rows (transposed bsums and scales) and a weight row's
// blocks in chunks of 4 (the running sums carried between chunks): rows longer than one chunk (6 blocks = 4 + 2)
// and row counts that take a 16-row group, an 8-row group and the 4- and 1-row paths (16 + 8 + 4 + 1 = 29; with 12
// weight rows, fewer than a tile: from 8 rows on a matrix of 16 or more weight rows takes the tile kernel, tested
// below) still give exactly the reference's one-row product on every ISA (single-threaded, and threaded with the
// ISA set by set_kernel_isa as the dispatcher would choose it on that CPU); so does decode (1 row: four weight rows
// per pass, 19 = 4 x 4 + 3 single rows; Q4_K on AVX-512 with the activations in the weight's nibble order).
TEST(QMatmul, KQuantGroupsAndChunksEqualDotProducts) {
  std::mt19937 rng(17);
  const int in = 6 * 256;
  // 90 x 1536: decode too runs threaded in native_matmul (22 x 4 + 2 rows); 12 x 1536: the 8-row group kernel
  for (int out : {90, 12})
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    SCOPED_TRACE(ggml_type_name(t));
    auto w = random_weights(t, out, in, rng);
    const size_t wrow = ggml_nbytes(t, in);
    for (int rows : {1, 8, 29}) {  // 1: decode (Q4_K on AVX-512: the permuted-activation four-row kernel)
      auto x = random_acts((int64_t)rows * in, rng);
      std::vector<float> y((size_t)rows * out), yt((size_t)rows * out);
      std::vector<uint8_t> xq(native_act_bytes(t, in));
      for (KernelIsa isa : isas()) {
        native_matmul_isa(t, w.data(), in, out, x.data(), y.data(), rows, isa);
        // the threaded driver (OpenMP) with this ISA dispatched, as a model on an AVX2-only machine runs it
        native_matmul_dispatched(isa, t, w.data(), in, out, x.data(), yt.data(), rows);
        for (int r = 0; r < rows; ++r) {
          native_quantize_row(t, x.data() + (size_t)r * in, xq.data(), in);
          for (int o = 0; o < out; ++o) {
            const float ref = native_vec_dot(t, w.data() + wrow * o, xq.data(), in, KernelIsa::Ref);
            ASSERT_EQ(y[(size_t)r * out + o], ref) << kernel_isa_name(isa) << ", " << rows << " rows, r " << r << " o " << o;
            ASSERT_EQ(yt[(size_t)r * out + o], ref) << kernel_isa_name(isa) << " threaded, " << rows << " rows, r " << r << " o " << o;
          }
        }
      }
    }
  }
}

// The AVX-512 k-quant tile kernel (16 weight rows x up to 8 activation rows per pass, the weight rows' blocks
// unpacked per chunk of 4 into a transposed scratch; taken from 8 activation rows on) against its plain twin, the
// reference loop: bit for bit, with rows of 6 blocks (a chunk of 4 and one of 2), two full tiles and 5 weight rows
// past them (the one-row path), and row counts that end in a partial pass of 5 or 6 rows (13, 45, 70); single-threaded and
// through the threaded driver. And against the f64 product of the dequantized weights with the dequantized
// rounded activations (within f32 rounding of the sum).
TEST(QMatmul, KQuantTileKernelEqualsReference) {
  if (!cpu_has_isa(KernelIsa::Avx512)) GTEST_SKIP() << "no AVX-512 VNNI";
  std::mt19937 rng(29);
  const int in = 6 * 256, out = 2 * 16 + 5;
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    SCOPED_TRACE(ggml_type_name(t));
    auto w = random_weights(t, out, in, rng);
    const size_t wrow = ggml_nbytes(t, in);
    for (int rows : {8, 13, 45, 70}) {
      auto x = random_acts((int64_t)rows * in, rng);
      std::vector<float> y((size_t)rows * out), yt((size_t)rows * out);
      native_matmul_isa(t, w.data(), in, out, x.data(), y.data(), rows, KernelIsa::Avx512);
      native_matmul_dispatched(KernelIsa::Avx512, t, w.data(), in, out, x.data(), yt.data(), rows);
      std::vector<uint8_t> xq(native_act_bytes(t, in));
      for (int r = 0; r < rows; ++r) {
        native_quantize_row(t, x.data() + (size_t)r * in, xq.data(), in);
        for (int o = 0; o < out; ++o) {
          const float ref = native_vec_dot(t, w.data() + wrow * o, xq.data(), in, KernelIsa::Ref);
          ASSERT_EQ(y[(size_t)r * out + o], ref) << rows << " rows, r " << r << " o " << o;
          ASSERT_EQ(yt[(size_t)r * out + o], ref) << "threaded, " << rows << " rows, r " << r << " o " << o;
          double mag = 0;
          const double exact = dequant_dot(t, w.data() + wrow * o, xq, in, &mag);
          ASSERT_NEAR(y[(size_t)r * out + o], exact, 2e-6 * mag) << rows << " rows, r " << r << " o " << o;
        }
      }
    }
  }
}

// The AVX-512 decode kernel of the legacy block types (four weight rows per pass, two per 512-bit register):
// exactly the one-row AVX-512 product (its twin, itself within f32 rounding of the reference loop), 5 passes and
// 3 single rows past them, single-threaded and threaded; and within f32 rounding of the dequantized product.
TEST(QMatmul, LegacyDecodeFourRowsEqualsDotProducts) {
  if (!cpu_has_isa(KernelIsa::Avx512)) GTEST_SKIP() << "no AVX-512 VNNI";
  std::mt19937 rng(31);
  const int in = 512, out = 4 * 5 + 3;
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0}) {
    SCOPED_TRACE(ggml_type_name(t));
    auto w = random_weights(t, out, in, rng);
    const size_t wrow = ggml_nbytes(t, in);
    for (int trial = 0; trial < 4; ++trial) {
      auto x = random_acts(in, rng);
      std::vector<float> y(out), yt(out);
      native_matmul_isa(t, w.data(), in, out, x.data(), y.data(), 1, KernelIsa::Avx512);
      native_matmul_dispatched(KernelIsa::Avx512, t, w.data(), in, out, x.data(), yt.data(), 1);
      std::vector<uint8_t> xq(native_act_bytes(t, in));
      native_quantize_row(t, x.data(), xq.data(), in);
      for (int o = 0; o < out; ++o) {
        const float one = native_vec_dot(t, w.data() + wrow * o, xq.data(), in, KernelIsa::Avx512);
        ASSERT_EQ(y[o], one) << "o " << o;
        ASSERT_EQ(yt[o], one) << "threaded, o " << o;
        double mag = 0;
        const double exact = dequant_dot(t, w.data() + wrow * o, xq, in, &mag);
        ASSERT_NEAR(y[o], exact, 2e-6 * mag) << "o " << o;
        ASSERT_NEAR(y[o], native_vec_dot(t, w.data() + wrow * o, xq.data(), in, KernelIsa::Ref), 2e-6 * mag);
      }
    }
  }
}

// Decode at two threads: a product large enough to be split (rows x in x out >= 2^17) rounds its one activation
// row before the threads start and ends its loops without barriers; every output still equals the one-row dot
// product, for each decode path (Q4_K's permuted AVX-512 kernel, the other k-quants' four-row kernel, the legacy
// four-row kernel and the plain loop), with a tail of out % 4 rows.
TEST(QMatmul, ThreadedDecodeEqualsDotProducts) {
  std::mt19937 rng(37);
  const int threads = omp_get_max_threads();
  const int in = 1024, out = 4 * 64 + 3;
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q3_K, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0,
                     GgmlType::F16}) {
    SCOPED_TRACE(ggml_type_name(t));
    auto w = random_weights(t, out, in, rng);
    const size_t wrow = ggml_nbytes(t, in);
    for (int trial = 0; trial < 3; ++trial) {
      auto x = random_acts(in, rng);
      std::vector<float> y1(out), y2(out);
      omp_set_num_threads(1);
      native_matmul(t, w.data(), in, out, x.data(), y1.data(), 1);
      omp_set_num_threads(2);
      native_matmul(t, w.data(), in, out, x.data(), y2.data(), 1);
      std::vector<uint8_t> xq(native_act_bytes(t, in));
      native_quantize_row(t, x.data(), xq.data(), in);
      for (int o = 0; o < out; ++o) {
        const float d = native_vec_dot(t, w.data() + wrow * o, xq.data(), in, kernel_isa());
        ASSERT_EQ(y1[o], d) << "one thread, o " << o;
        ASSERT_EQ(y2[o], d) << "two threads, o " << o;
      }
    }
  }
  omp_set_num_threads(threads);
}

// A Linear holding a typed weight runs the native kernels (bias added), and its result is within the 8-bit
// activation error of the f32 product with the dequantized weight.
TEST(QMatmul, LinearDispatchesOnStorageType) {
  std::mt19937 rng(9);
  const int in = 256, out = 32, rows = 3;
  auto w = random_weights(GgmlType::Q4_K, out, in, rng);
  std::vector<float> wf((size_t)in * out), b(out, 0.5f);
  dequantize(GgmlType::Q4_K, w.data(), wf.data(), (int64_t)in * out);
  Linear typed;
  typed.wq = w.data();
  typed.wtype = GgmlType::Q4_K;
  typed.in = in;
  typed.out = out;
  typed.b = b.data();
  Linear f32 = typed;
  f32.wq = nullptr;
  f32.w = wf.data();
  auto x = random_acts((int64_t)rows * in, rng);
  std::vector<float> yq((size_t)rows * out), yf((size_t)rows * out), yn((size_t)rows * out);
  linear(typed, x.data(), yq.data(), rows);
  linear(f32, x.data(), yf.data(), rows);
  native_matmul(GgmlType::Q4_K, w.data(), in, out, x.data(), yn.data(), rows);
  // |native - f32| <= sum_j |w_oj| |x_j - x_rounded_j| (+ f32 rounding)
  std::vector<uint8_t> xq(native_act_bytes(GgmlType::Q4_K, in));
  for (int r = 0; r < rows; ++r) {
    native_quantize_row(GgmlType::Q4_K, x.data() + (size_t)r * in, xq.data(), in);
    const std::vector<float> xr = dequant_acts(GgmlType::Q4_K, xq, in);
    for (int o = 0; o < out; ++o) {
      const size_t i = (size_t)r * out + o;
      EXPECT_EQ(yq[i], yn[i] + 0.5f);
      double bound = 1e-4;
      for (int j = 0; j < in; ++j) bound += std::fabs(wf[(size_t)o * in + j]) * std::fabs(x[(size_t)r * in + j] - xr[j]);
      EXPECT_LE(std::fabs(yq[i] - yf[i]), bound) << r << " " << o;
    }
  }
  // A W8A8 Linear without f32 weights is an error, not a silent wrong answer.
  typed.mode = LinearMode::W8A8;
  EXPECT_THROW(linear(typed, x.data(), yq.data(), rows), Error);
}

// ---------------------------------------------------------------- the real model against llama.cpp

namespace {
struct NativeDiff {
  double max_abs = 0;
  double mean_next = 0;      // mean |d log p(next token)|
  int first_off = -1;        // first position whose values differ by more than 1e-3
  int argmax_mismatch = 0, positions = 0;
  std::vector<double> next_err;  // |d log p(next token)| per position
};
NativeDiff compare_to(const Model& m, const std::vector<int32_t>& tokens, const nlohmann::json& positions) {
  const int n = (int)tokens.size(), V = m.cfg.n_vocab;
  KVCache c = make_cache(m, n);
  std::vector<float> logits((size_t)n * V);
  forward(m, c, tokens.data(), n, logits.data());
  NativeDiff d;
  for (int i = 0; i < n; ++i) {
    float* row = logits.data() + (size_t)i * V;
    const int am = (int)(std::max_element(row, row + V) - row);
    double mx = row[am], sum = 0;
    for (int t = 0; t < V; ++t) sum += std::exp((double)row[t] - mx);
    const double lse = mx + std::log(sum);
    const auto& p = positions[i];
    d.max_abs = std::max(d.max_abs, std::fabs(lse - p["lse"].get<double>()));
    for (const auto& tv : p["top"])
      d.max_abs = std::max(d.max_abs, std::fabs((row[tv[0].get<int>()] - lse) - tv[1].get<double>()));
    double here = std::fabs(lse - p["lse"].get<double>());
    for (const auto& tv : p["top"])
      here = std::max(here, std::fabs((row[tv[0].get<int>()] - lse) - tv[1].get<double>()));
    if (i + 1 < n) {
      const double e = std::fabs((row[tokens[i + 1]] - lse) - p["next"].get<double>());
      d.max_abs = std::max(d.max_abs, e);
      here = std::max(here, e);
      d.mean_next += e / (n - 1);
      d.next_err.push_back(e);
    }
    if (here > 1e-3 && d.first_off < 0) d.first_off = i;
    if (am != p["top"][0][0].get<int>()) d.argmax_mismatch++;
    d.positions++;
  }
  return d;
}
}  // namespace

// ctrust native on the Q4_1 file against llama.cpp running the same file (tests/golden/logits_smollm2.json,
// "q4_1_positions": Q4_1 x Q8_1 matmuls, Q8_0 x Q8_0 output head). With 8-bit activations the forward pass is
// chaotic in the last bits of f32: once any f32 difference (summation order in attention or RMSNorm) moves one
// activation across a rounding boundary, that element changes by a whole step max|x|/127 (large next to the
// massive activations of small models) and the difference grows layer by layer — ctrust's own native prefill
// and token-by-token decode of one text differ by up to 0.47 in a logit (f32 mode: 5e-5). So the assertion is:
// the first positions, before such a flip, agree with llama.cpp to 1e-3 (the f32 mode is off by 0.1-0.4 there),
// and over all positions native is closer to llama.cpp Q4_1 than the f32 mode is (mean |d log p(next)|).
TEST(QMatmul, SmolLM2NativeMatchesLlamaCppQ4_1) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "no " << test::smollm_q4_1();
  std::ifstream in(test::golden_dir() + "/logits_smollm2.json");
  const nlohmann::json g = nlohmann::json::parse(in);
  LoadOptions o;
  o.compute = ComputeMode::Native;
  auto m = open_model(test::smollm_q4_1(), o);
  ASSERT_EQ(compute_mode(*m), ComputeMode::Native);
  ASSERT_EQ(m->layers[0].wq.wtype, GgmlType::Q4_1);
  ASSERT_EQ(m->layers[0].wq.w, nullptr);   // no f32 copy
  ASSERT_EQ(m->output.wtype, GgmlType::Q8_0);  // tied head: the Q8_0 embedding
  auto f32m = open_model(test::smollm_q4_1());
  for (const auto& [key, t] : g["texts"].items()) {
    auto tokens = t["tokens"].get<std::vector<int32_t>>();
    NativeDiff d = compare_to(*m, tokens, g["q4_1_positions"][key]);
    NativeDiff f = compare_to(*m, tokens, t["positions"]);
    NativeDiff e = compare_to(*f32m, tokens, g["q4_1_positions"][key]);
    std::printf("[ golden ] %s, %d positions: native vs llama.cpp Q4_1: max |dlogprob| %.3g, mean |dlogp(next)| %.3g, "
                "first position off by > 1e-3: %d, argmax mismatches %d | native vs llama.cpp F32: max %.3g mean %.3g | "
                "f32 vs llama.cpp Q4_1: max %.3g mean %.3g first off %d\n", key.c_str(), d.positions, d.max_abs,
                d.mean_next, d.first_off, d.argmax_mismatch, f.max_abs, f.mean_next, e.max_abs, e.mean_next, e.first_off);
    // Before the first rounding flip (positions 0-2) native is llama.cpp's computation to 1e-3, where the f32 mode
    // is already off at position 0; later positions drift apart chaotically in both directions (see the comment
    // above and docs/correctness.md), so only the mean is compared there.
    EXPECT_GE(d.first_off, 3) << key;
    EXPECT_EQ(e.first_off, 0) << key;
    EXPECT_LT(d.mean_next, e.mean_next) << key;
  }
}

// ctrust native on Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Q4_K and Q6_K matrices: the k-quant kernels, Q8_K
// activations) against llama.cpp running the same file (tests/golden/logits_qwen1.5b.json, "q4_k_m_positions").
// llama.cpp's own Q4_K_M run is far from its F32 run on this model (3-6 nats at position 0, where the hidden
// state carries very large outlier activations that the 8-bit activation rounding distorts; docs/correctness.md),
// which makes the comparison sharp: computing llama.cpp's numbers means landing near its Q4_K_M values, not its
// F32 ones. Measured (1.5B; docs/correctness.md): position 0 within 9e-6 (code) and 5e-3 (English) nats of
// llama.cpp Q4_K_M where its F32 run is 5.7 and 3.0 away; max |d| over all positions 0.48 / 0.44 against 5.7 / 3.0.
TEST(QMatmul, Qwen15NativeMatchesLlamaCppQ4_K_M) {
  CTRUST_REQUIRE_QWEN("1.5b");
  std::ifstream in(test::golden_dir() + "/logits_qwen1.5b.json");
  const nlohmann::json g = nlohmann::json::parse(in);
  LoadOptions o;
  o.compute = ComputeMode::Native;
  auto m = open_model(test::qwen_q4_k_m("1.5b"), o);
  ASSERT_EQ(m->layers[0].wq.wtype, GgmlType::Q4_K);
  ASSERT_EQ(m->output.wtype, GgmlType::Q6_K);
  for (const auto& [key, t] : g["texts"].items()) {
    auto tokens = t["tokens"].get<std::vector<int32_t>>();
    const auto& q = g["q4_k_m_positions"][key];
    const auto& f = t["positions"];
    NativeDiff d = compare_to(*m, tokens, q);
    // llama.cpp's F32 run against its Q4_K_M run, from the golden file alone
    double gap_mean = 0, gap_max = 0;
    const int n = (int)tokens.size();
    for (int i = 0; i + 1 < n; ++i) {
      const double e = std::fabs(f[i]["next"].get<double>() - q[i]["next"].get<double>());
      gap_mean += e / (n - 1);
      gap_max = std::max(gap_max, e);
    }
    const double gap0 = std::fabs(f[0]["next"].get<double>() - q[0]["next"].get<double>());
    std::printf("[ golden ] Qwen1.5B %s, %d positions: native vs llama.cpp Q4_K_M: max |dlogprob| %.3g, mean "
                "|dlogp(next)| %.3g (position 0: %.3g), first position off by > 1e-3: %d, argmax mismatches %d | "
                "llama.cpp F32 vs Q4_K_M: max |dlogp(next)| %.3g, mean %.3g (position 0: %.3g)\n", key.c_str(),
                d.positions, d.max_abs, d.mean_next, d.next_err[0], d.first_off, d.argmax_mismatch, gap_max, gap_mean,
                gap0);
    // Position 0 (no attention history, the largest outliers) is llama.cpp's Q4_K_M value to 1e-2, where its own
    // F32 run is 3-6 nats away; later positions drift chaotically (8-bit rounding flips, see the SmolLM2 test) but
    // stay far closer to llama.cpp Q4_K_M than its F32 run is.
    EXPECT_LT(d.next_err[0], 1e-2) << key;
    EXPECT_LT(d.next_err[0], gap0 / 100) << key;
    EXPECT_LT(d.max_abs, gap_max / 3) << key;
    EXPECT_LT(d.mean_next, gap_mean) << key;
  }
}

// The native load keeps the matrices in the file (no f32 copy) and gives, row by row, exactly the values the f32
// mode holds; the fingerprint of the native model hashes the storage bytes (stable, different from f32's);
// compression refuses a natively loaded model.
TEST(QMatmul, NativeLoadRowsFingerprintAndCompressGuard) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "no " << test::smollm_q4_1();
  LoadOptions o;
  o.compute = ComputeMode::Native;
  auto nat = open_model(test::smollm_q4_1(), o);
  auto f32 = open_model(test::smollm_q4_1());
  for (const char* name : {"blk.3.ffn_down.weight", "token_embd.weight"}) {
    const Tensor& tn = nat->file.get(name);
    const Tensor& tf = f32->file.get(name);
    EXPECT_EQ(tn.data, nullptr) << name;
    ASSERT_NE(tf.data, nullptr);
    std::vector<float> rows((size_t)3 * tn.cols());
    tensor_rows_f32(tn, 5, 3, rows.data());
    EXPECT_EQ(std::memcmp(rows.data(), tf.data + 5 * tf.cols(), rows.size() * sizeof(float)), 0) << name;
  }
  EXPECT_NE(nat->file.get("output_norm.weight").data, nullptr);  // 1-D tensors stay f32
  const std::string fp = model_fingerprint(*nat);
  EXPECT_EQ(fp, model_fingerprint(*nat));
  EXPECT_NE(fp, model_fingerprint(*f32));
  Recipe r;
  r.method = Method::RTN;
  try {
    compress_model(*nat, r, nullptr);
    FAIL() << "compress_model accepted a natively loaded model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f32 compute mode"), std::string::npos) << e.what();
  }
}

// ctrust_matmul (tiles of kCtrustTile dequantized rows, one BLAS call each) against ctrust_matmul_ref (the plain
// loop) on seeded CTRUST_QX (4-bit affine, groups of 64, f16 scales; 3-bit with a zero point, groups of 32) and
// CTRUST_NMQX (2:4, 4-bit) weights: 130 output rows (two whole tiles and a part), 1, 3 and 17 activation rows, 1
// and 2 threads. Only the order of the f32 sums differs: |y - y_ref| <= 1e-5 * sum_j |x_j w_j| (measured below
// 1e-6 of it); the thread count does not change the kernel's result.
TEST(Ops, CtrustMatmulKernelEqualsReference) {
  const int in = 128, out = 130, threads = omp_get_max_threads();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  struct Case { const char* name; GgmlType t; };
  QxParams a{4, 64, QxForm::Affine, true}, z{3, 32, QxForm::Zero, true};
  NmqxParams nm{QxParams{4, 64, QxForm::Affine, true}, 2, 4};
  for (const Case& c : {Case{"qx4 affine g64", qx_type(a)}, Case{"qx3 zero g32", qx_type(z)},
                        Case{"nmqx 2:4 q4", nmqx_type(nm)}}) {
    const GgmlTypeInfo* info = ggml_type_info(uint32_t(c.t));
    ASSERT_NE(info, nullptr) << c.name;
    const int G = info->block_size;
    const size_t rb = ggml_nbytes(c.t, in);
    std::vector<uint8_t> w(rb * out);
    const auto qp = qx_params(c.t);
    const auto np = nmqx_params(c.t);
    const int bits = qp ? qp->bits : np->q.bits;
    const size_t bb = rb / (in / G);
    for (int o = 0; o < out; ++o)
      for (int g = 0; g < in / G; ++g) {
        std::vector<int> q(G);
        for (int& v : q) v = static_cast<int>(rng() % (1u << bits));
        const float d = 0.01f + 0.05f * std::abs(u(rng)), zm = qp && qp->form == QxForm::Zero ? float(rng() % (1u << bits)) : 0.3f * u(rng);
        uint8_t* dst = w.data() + size_t(o) * rb + size_t(g) * bb;
        if (qp) {
          qx_encode_block(*qp, d, zm, q.data(), dst);
        } else {
          std::vector<uint8_t> keep(G, 0);
          for (int k = 0; k < G; k += np->m) {
            int a0 = static_cast<int>(rng() % np->m), a1 = (a0 + 1 + static_cast<int>(rng() % (np->m - 1))) % np->m;
            keep[k + a0] = keep[k + a1] = 1;
          }
          nmqx_encode_block(*np, d, zm, keep.data(), q.data(), dst);
        }
      }
    std::vector<float> deq(size_t(out) * in);
    for (int o = 0; o < out; ++o) ctrust_dequantize_blocks(c.t, w.data() + size_t(o) * rb, deq.data() + size_t(o) * in, in / G);
    for (int rows : {1, 3, 17}) {
      std::vector<float> x(size_t(rows) * in), y(size_t(rows) * out), y2(y.size()), yr(y.size());
      for (float& v : x) v = u(rng);
      ctrust_matmul_ref(c.t, w.data(), in, out, x.data(), yr.data(), rows);
      omp_set_num_threads(1);
      ctrust_matmul(c.t, w.data(), in, out, x.data(), y.data(), rows);
      omp_set_num_threads(2);
      ctrust_matmul(c.t, w.data(), in, out, x.data(), y2.data(), rows);
      double worst = 0;
      for (int r = 0; r < rows; ++r)
        for (int o = 0; o < out; ++o) {
          double mag = 0;
          for (int j = 0; j < in; ++j) mag += std::abs(double(x[size_t(r) * in + j]) * deq[size_t(o) * in + j]);
          const size_t i = size_t(r) * out + o;
          worst = std::max(worst, std::abs(double(y[i]) - yr[i]) / mag);
          ASSERT_LE(std::abs(double(y[i]) - yr[i]), 1e-5 * mag) << c.name << " rows " << rows << " " << r << "," << o;
          ASSERT_EQ(y[i], y2[i]) << c.name << " rows " << rows << ": the result depends on the thread count";
        }
      EXPECT_LT(worst, 1e-6) << c.name << " rows " << rows;
    }
  }
  omp_set_num_threads(threads);
}
