#include "ops/vexp.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ops/ops.h"

namespace ctrust {

namespace vexp_detail {

// glibc 2.36, sysdeps/ieee754/flt-32/e_exp2f_data.c (read from this machine's libm.so.6, __exp2f_data):
// tab[i] = bits of 2^(i/32) minus i << 47, so that tab[k % 32] + (k << 47) are the bits of 2^(k/32).
alignas(64) constexpr uint64_t kTab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};
constexpr uint64_t kInvLn2N = 0x40471547652b82fe;  // 32 / ln 2 (invln2_scaled)
constexpr uint64_t kShift = 0x4338000000000000;    // 0x1.8p52: adding it rounds to an integer
constexpr uint64_t kC0 = 0x3ebc6af84b912394, kC1 = 0x3f2ebfce50fac4f3, kC2 = 0x3f962e42ff0c52d6;  // poly_scaled
// The main path's range (glibc's special-case thresholds): x >= kMayUflow and x <= kOflow.
constexpr float kUflow = -0x1.9fe368p6f;     // below: +0 (__math_uflowf)
constexpr float kMayUflow = -0x1.9d1d9ep6f;  // [kUflow, kMayUflow): 0x1p-149 (__math_may_uflowf)
constexpr float kOflow = 0x1.62e42ep6f;      // above (and NaN): std::exp

inline double dbl(uint64_t b) {
  double d;
  std::memcpy(&d, &b, 8);
  return d;
}

// Lanes outside the main path, one at a time: as glibc's special cases.
inline float exp_special(float x) {
  if (x < kUflow) return 0.0f;  // also -inf
  if (x < kMayUflow) return 0x1p-149f;
  return std::exp(x);  // NaN, overflow
}

}  // namespace vexp_detail

void exp_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

void softmax_ref(float* x, int n) {
  float mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - mx);
    x[i] = e;
    sum += (double)e;
  }
  const float inv = (float)(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

// ---------------------------------------------------------------- AVX2: 4 doubles per register

namespace vexp_detail::avx2 {

// Four lanes of __expf_fma's main path.
inline __m128 exp4(__m128 x) {
  const __m256d xd = _mm256_cvtps_pd(x);
  const __m256d invln2n = _mm256_set1_pd(dbl(kInvLn2N)), shift = _mm256_set1_pd(dbl(kShift));
  const __m256d kds = _mm256_fmadd_pd(invln2n, xd, shift);  // z + shift, z = x * 32/ln2 not rounded on its own
  const __m256i ki = _mm256_castpd_si256(kds);
  const __m256d kd = _mm256_sub_pd(kds, shift);
  const __m256d r = _mm256_fmsub_pd(invln2n, xd, kd);
  const __m256i idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
  __m256i t = _mm256_i64gather_epi64((const long long*)kTab, idx, 8);
  t = _mm256_add_epi64(t, _mm256_slli_epi64(ki, 47));
  const __m256d s = _mm256_castsi256_pd(t);
  const __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(dbl(kC0)), _mm256_set1_pd(dbl(kC1)));
  const __m256d r2 = _mm256_mul_pd(r, r);
  __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(dbl(kC2)), _mm256_set1_pd(1.0));
  y = _mm256_fmadd_pd(z, r2, y);
  y = _mm256_mul_pd(y, s);
  return _mm256_cvtpd_ps(y);
}

// Eight lanes; the lanes outside the main path (rare) one at a time.
inline __m256 exp8(__m256 x) {
  __m256 y = _mm256_set_m128(exp4(_mm256_extractf128_ps(x, 1)), exp4(_mm256_castps256_ps128(x)));
  const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(kMayUflow), _CMP_GE_OQ),
                                  _mm256_cmp_ps(x, _mm256_set1_ps(kOflow), _CMP_LE_OQ));
  if (_mm256_movemask_ps(ok) != 0xff) {
    alignas(32) float xs[8], ys[8];
    _mm256_store_ps(xs, x);
    _mm256_store_ps(ys, y);
    const int m = _mm256_movemask_ps(ok);
    for (int i = 0; i < 8; ++i)
      if (!(m >> i & 1)) ys[i] = exp_special(xs[i]);
    y = _mm256_load_ps(ys);
  }
  return y;
}

void exp_row(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = std::exp(x[i]);
}

// x[i] = exp(x[i] - max): softmax's first two steps.
void exp_shifted(float* x, int n) {
  float mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  const __m256 vmx = _mm256_set1_ps(mx);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx)));
  for (; i < n; ++i) x[i] = std::exp(x[i] - mx);
}

}  // namespace vexp_detail::avx2

// ---------------------------------------------------------------- AVX-512: 8 doubles per register

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 warns inside its AVX-512 intrinsics that
#pragma GCC diagnostic ignored "-Wuninitialized"        // start from an undefined vector (as qmatmul_x86.inc)
#endif
namespace vexp_detail::avx512 {

// Eight lanes of __expf_fma's main path; the table lookup is two two-source permutes (16 entries each) and a
// blend on bit 4 of k.
inline __m256 exp8_main(__m256 x) {
  const __m512d xd = _mm512_cvtps_pd(x);
  const __m512d invln2n = _mm512_set1_pd(dbl(kInvLn2N)), shift = _mm512_set1_pd(dbl(kShift));
  const __m512d kds = _mm512_fmadd_pd(invln2n, xd, shift);
  const __m512i ki = _mm512_castpd_si512(kds);
  const __m512d kd = _mm512_sub_pd(kds, shift);
  const __m512d r = _mm512_fmsub_pd(invln2n, xd, kd);
  const __m512i t0 = _mm512_load_si512(kTab), t1 = _mm512_load_si512(kTab + 8), t2 = _mm512_load_si512(kTab + 16),
                t3 = _mm512_load_si512(kTab + 24);
  const __m512i lo = _mm512_permutex2var_epi64(t0, ki, t1), hi = _mm512_permutex2var_epi64(t2, ki, t3);
  __m512i t = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), lo, hi);
  t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 47));
  const __m512d s = _mm512_castsi512_pd(t);
  const __m512d z = _mm512_fmadd_pd(r, _mm512_set1_pd(dbl(kC0)), _mm512_set1_pd(dbl(kC1)));
  const __m512d r2 = _mm512_mul_pd(r, r);
  __m512d y = _mm512_fmadd_pd(r, _mm512_set1_pd(dbl(kC2)), _mm512_set1_pd(1.0));
  y = _mm512_fmadd_pd(z, r2, y);
  y = _mm512_mul_pd(y, s);
  return _mm512_cvtpd_ps(y);
}

// Sixteen lanes: underflow lanes by blends, NaN / overflow lanes (rare) one at a time.
inline __m512 exp16(__m512 x) {
  __m512 y = _mm512_insertf32x8(_mm512_castps256_ps512(exp8_main(_mm512_castps512_ps256(x))),
                                exp8_main(_mm512_extractf32x8_ps(x, 1)), 1);
  const __mmask16 ok = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kMayUflow), _CMP_GE_OQ) &
                       _mm512_cmp_ps_mask(x, _mm512_set1_ps(kOflow), _CMP_LE_OQ);
  if (ok != 0xffff) {
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kMayUflow), _CMP_LT_OQ);
    const __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kUflow), _CMP_LT_OQ);
    y = _mm512_mask_mov_ps(y, tiny, _mm512_set1_ps(0x1p-149f));
    y = _mm512_mask_mov_ps(y, zero, _mm512_setzero_ps());
    const __mmask16 other = (__mmask16)~(ok | tiny);
    if (other) {
      alignas(64) float xs[16], ys[16];
      _mm512_store_ps(xs, x);
      _mm512_store_ps(ys, y);
      for (int i = 0; i < 16; ++i)
        if (other >> i & 1) ys[i] = std::exp(xs[i]);
      y = _mm512_load_ps(ys);
    }
  }
  return y;
}

void exp_row(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

// x[i] = exp(x[i] - max). The max: lane-wise x > m ? x : m (VMAXPS returns its second operand when x is NaN,
// as the plain loop skips it), then across lanes; the lanes hold no NaN, so only the sign of a zero maximum can
// differ from the plain loop's, and exp(x - (+0)) == exp(x - (-0)) for every x.
void exp_shifted(float* x, int n) {
  __m512 vm = _mm512_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(_mm512_loadu_ps(x + i), vm);
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    vm = _mm512_max_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + i), vm);
  }
  const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
  for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmx)));
  }
}

}  // namespace vexp_detail::avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

// ---------------------------------------------------------------- dispatch

namespace vexp_detail {
// The start-up check: the kernels of every ISA this CPU has against std::exp on a strided sample of the floats
// <= 0 and of [0, 89], and the special-case boundaries.
bool check_vector_exp() {
  std::vector<float> xs;
  for (uint32_t b = 0x80000000u; b <= 0xff800000u && b >= 0x80000000u; b += 0x3ff7f) {
    float f;
    std::memcpy(&f, &b, 4);
    xs.push_back(f);
  }
  for (float f = 0.0f; f < 89.0f; f += 0.0371f) xs.push_back(f);
  for (float b : {kUflow, kMayUflow, kOflow, -87.33655f, -0.0f, 0.0f, -INFINITY, INFINITY})
  {
    float lo = b, hi = b;
    for (int k = 0; k < 3; ++k) {
      xs.push_back(lo);
      xs.push_back(hi);
      lo = std::nextafter(lo, -INFINITY);
      hi = std::nextafter(hi, INFINITY);
    }
  }
  xs.push_back(std::numeric_limits<float>::quiet_NaN());
  std::vector<float> want(xs.size()), got(xs.size());
  exp_f32_ref(xs.data(), want.data(), (int64_t)xs.size());
  for (KernelIsa isa : {KernelIsa::Avx2, KernelIsa::Avx512}) {
    if (!cpu_has_isa(isa)) continue;
    exp_f32_isa(xs.data(), got.data(), (int64_t)xs.size(), isa);
    if (std::memcmp(want.data(), got.data(), sizeof(float) * xs.size()) != 0) return false;
  }
  return true;
}
}  // namespace vexp_detail

bool exp_f32_matches_libm() {
  static const bool ok = vexp_detail::check_vector_exp();
  return ok;
}

void exp_f32_isa(const float* x, float* y, int64_t n, KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Avx512: return vexp_detail::avx512::exp_row(x, y, n);
    case KernelIsa::Avx2: return vexp_detail::avx2::exp_row(x, y, n);
    default: return exp_f32_ref(x, y, n);
  }
}

void exp_f32(const float* x, float* y, int64_t n) {
  exp_f32_isa(x, y, n, exp_f32_matches_libm() ? kernel_isa() : KernelIsa::Ref);
}

namespace vexp_detail {
// The sums of R rows in double, each in index order; the rows' chains interleaved (the additions' latency bounds
// one chain).
template <int R>
void sums(const float* x, int n, int64_t stride, double* out) {
  double s[R];
  for (int r = 0; r < R; ++r) s[r] = 0.0;
  for (int i = 0; i < n; ++i)
    for (int r = 0; r < R; ++r) s[r] += (double)x[r * stride + i];
  for (int r = 0; r < R; ++r) out[r] = s[r];
}
}  // namespace vexp_detail

void softmax_rows_isa(float* x, int n, int rows, int64_t stride, KernelIsa isa) {
  if (isa == KernelIsa::Ref) {
    for (int r = 0; r < rows; ++r) softmax_ref(x + r * stride, n);
    return;
  }
  for (int r = 0; r < rows; ++r) {
    if (isa == KernelIsa::Avx512)
      vexp_detail::avx512::exp_shifted(x + r * stride, n);
    else
      vexp_detail::avx2::exp_shifted(x + r * stride, n);
  }
  for (int r0 = 0; r0 < rows; r0 += 4) {
    double sum[4];
    float* xr = x + r0 * stride;
    switch (std::min(4, rows - r0)) {
      case 1: vexp_detail::sums<1>(xr, n, stride, sum); break;
      case 2: vexp_detail::sums<2>(xr, n, stride, sum); break;
      case 3: vexp_detail::sums<3>(xr, n, stride, sum); break;
      default: vexp_detail::sums<4>(xr, n, stride, sum); break;
    }
    for (int r = 0; r < std::min(4, rows - r0); ++r) {
      const float inv = (float)(1.0 / sum[r]);
      float* row = xr + r * stride;
      for (int i = 0; i < n; ++i) row[i] *= inv;
    }
  }
}

void softmax_isa(float* x, int n, KernelIsa isa) { softmax_rows_isa(x, n, 1, n, isa); }

void softmax_rows(float* x, int n, int rows, int64_t stride) {
  softmax_rows_isa(x, n, rows, stride, exp_f32_matches_libm() ? kernel_isa() : KernelIsa::Ref);
}

void softmax(float* x, int n) { softmax_rows(x, n, 1, n); }

}  // namespace ctrust
