#include "ops/linear.h"

#include <cblas.h>

#include "base/error.h"
#include "io/ctrust_types.h"
#include "ops/qmatmul.h"
#include "ops/qmatmul_ctrust.h"
#include <cmath>
#include <cstdint>
#include <vector>

namespace ctrust {

namespace {

// y = x W^T with plain f32 weights: GEMV for one row (sgemm with N=1 is much slower), GEMM otherwise.
// Tiny products (under kSmall multiply-adds) use a plain single-threaded loop: OpenBLAS would start its
// threads for them, which costs more than the product (and much more on a busy machine).
constexpr int64_t kSmall = 1 << 18;
void matmul_f32(const float* w, int in, int out, const float* x, float* y, int rows) {
  if ((int64_t)rows * in * out <= kSmall) {
    for (int r = 0; r < rows; ++r) {
      const float* xr = x + (int64_t)r * in;
      for (int o = 0; o < out; ++o) {
        const float* wo = w + (int64_t)o * in;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < in; ++j) s += xr[j] * wo[j];
        y[(int64_t)r * out + o] = s;
      }
    }
  } else if (rows == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, 0.0f, y, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  }
}

// Symmetric int8 rounding of v[0..n) restricted to the entries with keep[i] (all if keep is null), as
// SmoothQuant's fake_quant.py quantize_activation_per_token_absmax does it in f32: scale = max(max|v_i|, 1e-5) / 127,
// v_i -> round(v_i / scale) * scale, a true division (not a multiplication by 1/scale, which rounds differently
// at some half-way points), rounding to nearest with ties to even (IEEE's default, as torch.round; |q| <= 127).
// Entries outside the selection are left unchanged. Branch-free loops, so that they vectorize (vdivps, vroundps).
template <bool kSelect>
void round_int8_impl(float* v, int n, const uint8_t* keep) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float a = !kSelect || keep[i] ? std::fabs(v[i]) : 0.0f;
    amax = a > amax ? a : amax;
  }
  const float scale = (amax > 1e-5f ? amax : 1e-5f) / 127.0f;
  for (int i = 0; i < n; ++i) {
    float q = __builtin_nearbyintf(v[i] / scale);
    q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
    v[i] = !kSelect || keep[i] ? q * scale : v[i];
  }
}

void round_int8(float* v, int n, const uint8_t* keep) {
  if (keep) round_int8_impl<true>(v, n, keep);
  else round_int8_impl<false>(v, n, nullptr);
}

// One row of LLM.int8()'s activations as bitsandbytes' int8_vectorwise_quant(A, threshold) quantizes it: the row's
// scale is its absmax over the entries below the threshold (the outlier values themselves are zeroed first, the
// other entries of an outlier column count), q = round(v * (127 / absmax)), and the outlier columns (keep[i] == 0)
// are left in f32 for the separate product. A row with no entry below the threshold has only outlier columns.
void round_int8_bnb(float* v, int n, const uint8_t* keep, float threshold) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(v[i]);
    amax = a < threshold && a > amax ? a : amax;
  }
  if (amax == 0.0f) {  // every regular entry is 0 (bitsandbytes would divide by 0 here)
    for (int i = 0; i < n; ++i) v[i] = keep[i] ? 0.0f : v[i];
    return;
  }
  const float mul = 127.0f / amax, scale = amax / 127.0f;
  for (int i = 0; i < n; ++i) {
    const float q = __builtin_nearbyintf(v[i] * mul);  // |v| <= amax on regular columns: |q| <= 127
    v[i] = keep[i] ? q * scale : v[i];
  }
}

}  // namespace

// Modes (all computed in f32; the int8 arithmetic is simulated by rounding to the int8 grid):
//  F32:  y = x W^T.
//  W8A8: each row (token) of x is rounded to int8 with its own scale max|x_row|/127 (round_int8 above);
//        y = x_q W^T. W is used as is: the compression stage has already put it on its int8 grid.
//  Int8Outlier (LLM.int8(), as bitsandbytes' MatMul8bitLt computes it): outlier columns
//        O = { j : |x[r][j]| >= threshold for some row r of this call }. W is used as is: the compression stage
//        has stored it as int8 per output row (bitsandbytes' CB and SCB: scale absmax/127 over the whole row),
//        whose dequantized values also multiply the outlier columns. x's outlier columns stay f32; on the other
//        columns each row of x is rounded to int8 with the scale of round_int8_bnb (absmax over the row's entries
//        below the threshold). y = sum_{j in O} x W + sum_{j not in O} x_q W, one GEMM on (x_hat, W).
// The bias (if any) is added last in every mode.
namespace {
void linear_f32_modes(const Linear& L, const float* x, float* y, int rows, int64_t xn) {
  switch (L.mode) {
    case LinearMode::F32:
      matmul_f32(L.w, L.in, L.out, x, y, rows);
      break;
    case LinearMode::W8A8: {
      std::vector<float> xq(x, x + xn);
      for (int r = 0; r < rows; ++r) round_int8(xq.data() + (int64_t)r * L.in, L.in, nullptr);
      matmul_f32(L.w, L.in, L.out, xq.data(), y, rows);
      break;
    }
    case LinearMode::Int8Outlier: {
      std::vector<uint8_t> keep(L.in, 1);  // 1 = regular (int8) column, 0 = outlier column
      for (int r = 0; r < rows; ++r) {
        const float* xr = x + (int64_t)r * L.in;
        for (int j = 0; j < L.in; ++j)
          if (std::fabs(xr[j]) >= L.threshold) keep[j] = 0;
      }
      std::vector<float> xq(x, x + xn);
      for (int r = 0; r < rows; ++r) round_int8_bnb(xq.data() + (int64_t)r * L.in, L.in, keep.data(), L.threshold);
      matmul_f32(L.w, L.in, L.out, xq.data(), y, rows);
      break;
    }
  }
}
}  // namespace

void linear(const Linear& L, const float* x, float* y, int rows) {
  const int64_t xn = (int64_t)rows * L.in;
  if (L.mode == LinearMode::F32 && L.wq && is_ctrust_type(L.wtype)) {
    ctrust_matmul(L.wtype, L.wq, L.in, L.out, x, y, rows);
  } else if (L.mode == LinearMode::F32 && L.wq) {
    native_matmul(L.wtype, L.wq, L.in, L.out, x, y, rows);
  } else {
    if (!L.w) fail("linear: the {} x {} weight has no f32 form (its mode needs f32 weights)", L.out, L.in);
    linear_f32_modes(L, x, y, rows, xn);
  }
  if (L.b) {
    for (int r = 0; r < rows; ++r) {
      float* yr = y + (int64_t)r * L.out;
      for (int o = 0; o < L.out; ++o) yr[o] += L.b[o];
    }
  }
}

const char* blas_core_name() { return openblas_get_corename(); }

}  // namespace ctrust
