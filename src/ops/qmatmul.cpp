// Native (typed-weight) matrix products: activation rounding as ggml, reference dot products, dispatch to the
// AVX2 / AVX-512 versions (qmatmul_x86.inc, compiled twice) and the threaded matrix drivers.
#include "ops/qmatmul.h"

#include <cpuid.h>

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "base/error.h"

namespace ctrust {

namespace {

constexpr int QK = 32;
constexpr int QK_K = 256;

// Block sizes in bytes (ggml-common.h).
constexpr size_t kQ4_0 = 18, kQ4_1 = 20, kQ5_0 = 22, kQ5_1 = 24, kQ8_0 = 34, kQ8_1 = 36;
constexpr size_t kQ2_K = 84, kQ3_K = 110, kQ4_K = 144, kQ5_K = 176, kQ6_K = 210, kQ8_K = 292;

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);  // exact (F16C)
}
inline uint16_t f2h(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
inline float rd_f32(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}
inline int16_t rd_i16(const uint8_t* p) {
  int16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ---------------------------------------------------------------- activation rounding

// Q8_0 / Q8_1 as ggml's x86 quantize_row_q8_0 / q8_1 (AVX2 path): d = max|x| / 127 (stored as f16),
// q = round_to_nearest_even(x * (127 / max|x|)); Q8_1 also s = f16(d * sum(q)).
void quant_q8_01(const float* x, uint8_t* y, int64_t n, bool with_sum) {
  const size_t bs = with_sum ? kQ8_1 : kQ8_0;
  for (int64_t b = 0; b < n / QK; ++b, x += QK, y += bs) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const uint16_t dh = f2h(d);
    std::memcpy(y, &dh, 2);
    int8_t* qs = reinterpret_cast<int8_t*>(y + (with_sum ? 4 : 2));
    int sum = 0;
    for (int j = 0; j < QK; ++j) {
      const int q = (int)__builtin_nearbyintf(x[j] * id);
      qs[j] = (int8_t)q;
      sum += q;
    }
    if (with_sum) {
      const uint16_t sh = f2h(d * (float)sum);
      std::memcpy(y + 2, &sh, 2);
    }
  }
}

// Q8_K: ggml's quantize_row_q8_K_ref (the x86 build uses it too).
void quant_q8_k(const float* x, uint8_t* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K, y += kQ8_K) {
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    int8_t* qs = reinterpret_cast<int8_t*>(y + 4);
    if (!amax) {
      std::memset(y, 0, kQ8_K);
      continue;
    }
    const float iscale = -127.f / max;
    // nearest_int(v) of ggml (v + 1.5 * 2^23, ties to even) is nearbyint(v) for |v| < 2^22; written so that the
    // product cannot be fused into an FMA.
    for (int j = 0; j < QK_K; ++j) qs[j] = (int8_t)std::min(127, (int)__builtin_nearbyintf(iscale * x[j]));
    for (int j = 0; j < QK_K / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += qs[j * 16 + ii];
      const int16_t s16 = (int16_t)sum;
      std::memcpy(y + 260 + 2 * j, &s16, 2);
    }
    const float d = 1 / iscale;
    std::memcpy(y, &d, 4);
  }
}

// ---------------------------------------------------------------- reference dot products

// Scales and mins of the 8 sub-blocks of a Q4_K / Q5_K block (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, int* d, int* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// The 16 signed 6-bit scales of a Q3_K block (already minus 32).
inline void q3k_scales(const uint8_t* s12, int* out) {
  const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  uint32_t aux[4];
  std::memcpy(aux, s12, 12);
  const uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  int8_t sc[16];
  std::memcpy(sc, aux, 16);
  for (int i = 0; i < 16; ++i) out[i] = sc[i] - 32;
}

// Unsigned quants u[256] of one k-quant block (value = u - offset, per type), the 16 integer scales of its
// 16-element sub-blocks, and the integer min of each (Q2_K, Q4_K, Q5_K; 0 otherwise). Plain loops, used by the
// reference and by the AVX paths' correction terms.
//   value(e) = d * sc[e/16] * (u[e] - off) - dmin * mn[e/16]
struct KBlock {
  uint8_t u[QK_K];
  int sc[16], mn[16];
  int off;
  float d, dmin;
};

// Scales, mins, offset and the two f16 factors of one k-quant block.
void k_meta(GgmlType t, const uint8_t* x, KBlock& k) {
  std::fill(k.mn, k.mn + 16, 0);
  k.off = 0;
  k.dmin = 0.0f;
  switch (t) {
    case GgmlType::Q2_K:
      for (int s = 0; s < 16; ++s) {
        k.sc[s] = x[s] & 0xF;
        k.mn[s] = x[s] >> 4;
      }
      k.d = h2f(x + 80);
      k.dmin = h2f(x + 82);
      break;
    case GgmlType::Q3_K:
      q3k_scales(x + 96, k.sc);
      k.off = 4;
      k.d = h2f(x + 108);
      break;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
      for (int j = 0; j < 8; ++j) {
        int sc, m;
        scale_min_k4(j, x + 4, &sc, &m);
        k.sc[2 * j] = k.sc[2 * j + 1] = sc;
        k.mn[2 * j] = k.mn[2 * j + 1] = m;
      }
      k.d = h2f(x);
      k.dmin = h2f(x + 2);
      break;
    case GgmlType::Q6_K: {
      const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
      for (int s = 0; s < 16; ++s) k.sc[s] = sc[s];
      k.off = 32;
      k.d = h2f(x + 208);
      break;
    }
    default: fail("k_meta: not a k-quant type");
  }
}

void unpack_k(GgmlType t, const uint8_t* x, KBlock& k) {
  k_meta(t, x, k);
  for (int e = 0; e < QK_K; ++e) {
    const int n = e / 128, j = (e % 128) / 32, l = e % 32;
    int v = 0;
    switch (t) {
      case GgmlType::Q2_K: v = (x[16 + 32 * n + l] >> (2 * j)) & 3; break;
      case GgmlType::Q3_K: v = ((x[32 + 32 * n + l] >> (2 * j)) & 3) + ((x[l] >> (4 * n + j)) & 1) * 4; break;
      case GgmlType::Q4_K:
      case GgmlType::Q5_K: {
        const bool five = t == GgmlType::Q5_K;
        const uint8_t* q = x + (five ? 48 : 16);
        const int c = e / 64, hi = (e % 64) / 32;
        v = hi ? q[32 * c + l] >> 4 : q[32 * c + l] & 0xF;
        if (five) v += ((x[16 + l] >> (2 * c + hi)) & 1) * 16;
        break;
      }
      case GgmlType::Q6_K: {  // j: 0 low ql[l], 1 low ql[l+32], 2 high ql[l], 3 high ql[l+32]
        const uint8_t lq = x[64 * n + l + (j & 1) * 32];
        const int lo = j < 2 ? lq & 0xF : lq >> 4;
        v = lo | (((x[128 + 32 * n + l] >> (2 * j)) & 3) << 4);
        break;
      }
      default: break;
    }
    k.u[e] = (uint8_t)v;
  }
}

// Whether the k-quant type has a min term (value = d sc u - dmin mn: Q2_K, Q4_K, Q5_K) rather than an offset
// (value = d sc (u - off): Q3_K, Q6_K).
constexpr bool k_has_min(GgmlType t) { return t == GgmlType::Q2_K || t == GgmlType::Q4_K || t == GgmlType::Q5_K; }

// The f32 step of one k-quant block, shared by every version of the dot product: the block's exact integer sums
// isum = sum_s sc_s (u . q8 - off * bsum)_s and msum = sum_s mn_s bsum_s enter the running sum through two
// explicit FMAs (sumf + d dy isum, then - dmin dy msum), so the compiler has no contraction choice and the
// SIMD versions, which do the same per lane, give the same bits.
inline float k_block_f32(float sumf, float d, float dmin, float dy, int isum, int msum, bool has_min) {
  sumf = std::fma(d * dy, (float)isum, sumf);
  if (has_min) sumf = std::fma(-(dmin * dy), (float)msum, sumf);
  return sumf;
}

float ref_dot_k(GgmlType t, const uint8_t* w, const uint8_t* xq, int64_t n, size_t wbs) {
  float sumf = 0.0f;
  KBlock k;
  for (int64_t b = 0; b < n / QK_K; ++b, w += wbs, xq += kQ8_K) {
    unpack_k(t, w, k);
    const float dy = rd_f32(xq);
    const int8_t* q8 = reinterpret_cast<const int8_t*>(xq + 4);
    int isum = 0, msum = 0;
    for (int s = 0; s < 16; ++s) {
      int dot = 0, bsum = 0;
      for (int i = 0; i < 16; ++i) {
        dot += (int)k.u[16 * s + i] * q8[16 * s + i];
        bsum += q8[16 * s + i];
      }
      isum += k.sc[s] * (dot - k.off * bsum);
      msum += k.mn[s] * bsum;
    }
    sumf = k_block_f32(sumf, k.d, k.dmin, dy, isum, msum, k_has_min(t));
  }
  return sumf;
}

float ref_vec_dot(GgmlType t, const uint8_t* w, const uint8_t* xq, int64_t n) {
  switch (t) {
    case GgmlType::F16: {
      float s = 0.0f;
      for (int64_t i = 0; i < n; ++i) s += h2f(w + 2 * i) * h2f(xq + 2 * i);
      return s;
    }
    case GgmlType::BF16: {
      float s = 0.0f;
      for (int64_t i = 0; i < n; ++i) s += ggml_bf16_to_fp32(*(const uint16_t*)(w + 2 * i)) *
                                           ggml_bf16_to_fp32(*(const uint16_t*)(xq + 2 * i));
      return s;
    }
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0: {
      const bool has_m = t == GgmlType::Q4_1 || t == GgmlType::Q5_1;
      const size_t wbs = ggml_type_info((uint32_t)t)->type_size, abs = has_m ? kQ8_1 : kQ8_0;
      float sumf = 0.0f;
      for (int64_t b = 0; b < n / QK; ++b, w += wbs, xq += abs) {
        const int8_t* q8 = reinterpret_cast<const int8_t*>(xq + (has_m ? 4 : 2));
        int v[QK];
        if (t == GgmlType::Q8_0) {
          for (int j = 0; j < QK; ++j) v[j] = (int8_t)w[2 + j];
        } else {
          const uint8_t* qs = w + (t == GgmlType::Q4_0 ? 2 : t == GgmlType::Q4_1 ? 4 : t == GgmlType::Q5_0 ? 6 : 8);
          uint32_t qh = 0;
          if (t == GgmlType::Q5_0) std::memcpy(&qh, w + 2, 4);
          if (t == GgmlType::Q5_1) std::memcpy(&qh, w + 4, 4);
          const bool five = t == GgmlType::Q5_0 || t == GgmlType::Q5_1;
          const int off = t == GgmlType::Q4_0 ? 8 : t == GgmlType::Q5_0 ? 16 : 0;
          for (int j = 0; j < QK / 2; ++j) {
            v[j] = (qs[j] & 0xF) + (five ? ((qh >> j) & 1) << 4 : 0) - off;
            v[j + 16] = (qs[j] >> 4) + (five ? ((qh >> (j + 16)) & 1) << 4 : 0) - off;
          }
        }
        int sumi = 0;
        for (int j = 0; j < QK; ++j) sumi += v[j] * q8[j];
        sumf += h2f(w) * h2f(xq) * (float)sumi;
        if (has_m) sumf += h2f(w + 2) * h2f(xq + 2);
      }
      return sumf;
    }
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return ref_dot_k(t, w, xq, n, ggml_type_info((uint32_t)t)->type_size);
    default: fail("native kernels: unsupported weight type {}", ggml_type_name(t));
  }
}

}  // namespace

// ---------------------------------------------------------------- AVX2 and AVX-512 versions

// The decode kernels (four weight rows against one activation row: dot_kq_w4, dot_q4k_w4p, dot_legacy_w4) read
// four rows block by block in turn, which the hardware prefetchers do not follow, so each step prefetches its
// share of the bytes this far ahead (rounded up to whole groups of four rows). One group ahead, as before, is only
// 1.4-5 KB for rows of 576-1536 values: less than a memory latency at 30-40 GB/s. Measured on the AMD EPYC (Zen 5)
// guest, quiet, 1 thread (docs/benchmarks.md, "Decode prefetch distance"): Qwen2.5-1.5B Q4_K_M decode 28.3 ->
// 31.4 tok/s (bench_engine, 3 rounds), SmolLM2 Q4_1 230 -> 290; bench_qmatmul q4_k 1536 x 100000 (streamed from
// memory) 29-35 -> 37-40 GB/s at 8-12 KB, less again at 16-24 KB.
constexpr size_t kDecodePrefetchBytes = 8192;
static inline size_t pf_ahead(size_t wrow) {
  const size_t g = 4 * wrow;
  return (kDecodePrefetchBytes + g - 1) / g * g;
}

namespace avx2 {
#define CT_VNNI 0
#include "ops/qmatmul_x86.inc"
#undef CT_VNNI
}  // namespace avx2

// gcc: #pragma GCC target; clang (the fuzz build) ignores it and takes the same target as an attribute on
// every function of the block.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#endif
namespace avx512 {
#define CT_VNNI 1
#include "ops/qmatmul_x86.inc"
#undef CT_VNNI
}  // namespace avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---------------------------------------------------------------- dispatch

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Ref: return "ref";
    case KernelIsa::Avx2: return "avx2";
    case KernelIsa::Avx512: return "avx512-vnni";
  }
  return "?";
}

// F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
static bool cpu_has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}

bool cpu_has_isa(KernelIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case KernelIsa::Ref: return true;
    case KernelIsa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case KernelIsa::Avx512:
      return cpu_has_isa(KernelIsa::Avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

namespace {
std::atomic<int> g_isa{-1};
}

KernelIsa kernel_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = (int)(cpu_has_isa(KernelIsa::Avx512) ? KernelIsa::Avx512
              : cpu_has_isa(KernelIsa::Avx2) ? KernelIsa::Avx2
                                             : KernelIsa::Ref);
    g_isa.store(v, std::memory_order_relaxed);
  }
  return (KernelIsa)v;
}

void set_kernel_isa(KernelIsa isa) {
  if (!cpu_has_isa(isa)) fail("this CPU does not support the {} kernels", kernel_isa_name(isa));
  g_isa.store((int)isa, std::memory_order_relaxed);
}

bool native_supported(GgmlType t) {
  switch (t) {
    case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0:
    case GgmlType::Q5_1: case GgmlType::Q8_0: case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K:
    case GgmlType::Q5_K: case GgmlType::Q6_K:
      return true;
    default: return false;
  }
}

GgmlType native_act_type(GgmlType t) {
  switch (t) {
    case GgmlType::F16: return GgmlType::F16;
    case GgmlType::BF16: return GgmlType::BF16;
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return GgmlType::Q8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1: return GgmlType::Q8_1;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
      return GgmlType::Q8_K;
    default: fail("native kernels: unsupported weight type {}", ggml_type_name(t));
  }
}

size_t native_act_bytes(GgmlType t, int64_t n) {
  const GgmlType a = native_act_type(t);
  const GgmlTypeInfo* info = ggml_type_info((uint32_t)a);
  if (n % info->block_size != 0) fail("native kernels: row of {} values is not a multiple of {}", n, info->block_size);
  return (size_t)(n / info->block_size) * info->type_size;
}

void native_quantize_row_isa(GgmlType t, const float* x, uint8_t* dst, int64_t n, KernelIsa isa) {
  if (isa == KernelIsa::Ref) return native_quantize_row(t, x, dst, n);
  const GgmlType a = native_act_type(t);
  const bool avx512 = isa == KernelIsa::Avx512;
  if (a == GgmlType::Q8_K) {
    avx512 ? avx512::quant_q8_k_x86(x, dst, n) : avx2::quant_q8_k_x86(x, dst, n);
  } else if (a == GgmlType::Q8_0 || a == GgmlType::Q8_1) {
    const bool s = a == GgmlType::Q8_1;
    avx512 ? avx512::quant_q8_01_x86(x, dst, n, s) : avx2::quant_q8_01_x86(x, dst, n, s);
  } else {
    native_quantize_row(t, x, dst, n);
  }
}

void native_quantize_row(GgmlType t, const float* x, uint8_t* dst, int64_t n) {
  switch (native_act_type(t)) {
    case GgmlType::Q8_0: quant_q8_01(x, dst, n, false); break;
    case GgmlType::Q8_1: quant_q8_01(x, dst, n, true); break;
    case GgmlType::Q8_K: quant_q8_k(x, dst, n); break;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f2h(x[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      break;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = ggml_fp32_to_bf16(x[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      break;
    default: break;
  }
}

namespace {

using DotFn = float (*)(GgmlType, const uint8_t*, const uint8_t*, int64_t);
using Dot4Fn = void (*)(GgmlType, const uint8_t*, const uint8_t* const*, int64_t, float*, const float* const*);

void ref_vec_dot4(GgmlType t, const uint8_t* w, const uint8_t* const* x, int64_t n, float* out,
                  const float* const*) {
  for (int r = 0; r < 4; ++r) out[r] = ref_vec_dot(t, w, x[r], n);
}

DotFn dot_fn(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Ref: return ref_vec_dot;
    case KernelIsa::Avx2: return avx2::vec_dot;
    case KernelIsa::Avx512: return avx512::vec_dot;
  }
  return ref_vec_dot;
}

// Groups of 8 activation rows (AVX-512, k-quants): the rows' bsums and block scales transposed once per product
// (avx512::vec_dot_kq_g8's layout): per group and block, bst 256 bytes (register k, lane j < 8: row j's
// bsum[4k], bsum[4k+1]; lane 8 + j: bsum[4k+2], bsum[4k+3]) and dyt 8 floats.
// Q4_K decode on AVX-512 (avx512::vec_dot_q4k_w4p): a Q8_K row with the quants of each 128-element half in the
// order [0..31, 64..95, 32..63, 96..127] (the weight's nibble order); d and the bsums stay as they are.
void q4k_permute_act(const uint8_t* src, uint8_t* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += kQ8_K, dst += kQ8_K) {
    std::memcpy(dst, src, kQ8_K);
    for (int h = 0; h < 2; ++h) {
      std::memcpy(dst + 4 + 128 * h + 32, src + 4 + 128 * h + 64, 32);
      std::memcpy(dst + 4 + 128 * h + 64, src + 4 + 128 * h + 32, 32);
    }
  }
}

void kq_group_layout(const uint8_t* xq, size_t arow, int64_t nb, uint8_t* bst, float* dyt) {
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* bs = bst + b * 256;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* blk = xq + arow * j + b * kQ8_K;
      std::memcpy(dyt + b * 8 + j, blk, 4);
      for (int k = 0; k < 4; ++k) {
        std::memcpy(bs + 64 * k + 4 * j, blk + 260 + 2 * (4 * k), 4);
        std::memcpy(bs + 64 * k + 32 + 4 * j, blk + 260 + 2 * (4 * k + 2), 4);
      }
    }
  }
}

using DotW4Fn = void (*)(GgmlType, const uint8_t*, size_t, const uint8_t*, int64_t, float*);

void ref_vec_dot_k_w4(GgmlType t, const uint8_t* w, size_t wrow, const uint8_t* x, int64_t n, float* out) {
  for (int k = 0; k < 4; ++k) out[k] = ref_vec_dot(t, w + wrow * k, x, n);
}

// Four weight rows against one activation row, k-quants (decode; the same results as four single products).
DotW4Fn dotw4_fn(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Ref: return ref_vec_dot_k_w4;
    case KernelIsa::Avx2: return avx2::vec_dot_k_w4;
    case KernelIsa::Avx512: return avx512::vec_dot_k_w4;
  }
  return ref_vec_dot_k_w4;
}

// Four activation rows against one weight row (the same result as four single dot products).
Dot4Fn dot4_fn(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Ref: return ref_vec_dot4;
    case KernelIsa::Avx2: return avx2::vec_dot4;
    case KernelIsa::Avx512: return avx512::vec_dot4;
  }
  return ref_vec_dot4;
}

// A buffer of one product, allocated (zeroed) by the call and freed when it returns, so that nothing stays
// allocated between products. The largest, the activation rows rounded to the vec_dot type, is rows x in bytes
// (about 1.1 per value): small beside the product's rows x in x out multiply-adds (docs/benchmarks.md measures
// the per-call allocation against the per-thread pool it replaced).
template <class T>
T* call_buffer(std::unique_ptr<T[]>& b, size_t n) {
  b.reset(new T[n]());
  return b.get();
}

// Below this many multiply-adds a product runs on one thread: starting the team costs more.
constexpr int64_t kParallelMin = 1 << 17;
// Output rows per task of a multi-row product (their weights stay in L1/L2 while every activation row passes).
constexpr int kRowBlock = 16;
// Activation rows from which the AVX-512 k-quant products take the 16-weight-row tile kernel (its per-chunk
// unpacking of 16 weight rows is amortized over the rows; bench_qmatmul, 3 rounds at load 6.3: at 8 rows Q4_K
// 1536 -> 8960 150-168 GMAC/s against 115-133 for the 8-row group kernel, Q6_K 8960 -> 1536 86-129 against
// 97-116, at 12 rows 1.4-1.7x).
constexpr int kTileMinRows = 8;
// The longest activation row for which the AVX-512 legacy prefill kernel takes two groups of 16 rows per pass
// over a weight row, else one. bench_qmatmul q4_1, 128 rows, 1 thread: 576 -> 1536 127-130 GMAC/s with two groups,
// 108 with one; 1536 -> 576 85-91 with two, 94-100 with one; in chunks of 12-24 blocks with the running sums
// carried between them 57-94 (their loads and stores cost more than the cache misses they save).
constexpr int kPackPairMaxIn = 1024;
// The fewest rows left after the full groups of 16 that the AVX-512 legacy kernel takes as a zero-padded group
// (bench_qmatmul, 1 thread: q4_1 576 -> 1536 by the 4-row kernel 4 rows 0.093 ms, 8 rows 0.172 ms, a 16-row group
// 0.141 ms; q8_0 576 -> 49152 (SmolLM2's output matrix) 4 rows 2.98 ms, 8 rows 4.78 ms, a 16-row group 6.27 ms,
// and 8 rows padded 7.32 ms).
constexpr int kPackPadMin = 6, kPackPadMinQ8_0 = 12;
// Weight blocks per chunk of the AVX-512 k-quant group kernel (16 rows x 4 blocks of Q8_K = 19 KB of activations).
constexpr int kKChunk = 4;

void matmul_impl(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows, KernelIsa isa,
                 bool threads) {
  if (!native_supported(t)) fail("native kernels: unsupported weight type {}", ggml_type_name(t));
  const size_t wrow = ggml_nbytes(t, in);
  const size_t arow = native_act_bytes(t, in);
  // The call's buffers: rounded activation rows; Q8_0/Q8_1 block scales as f32 ([d, s] per block); the AVX-512
  // G-row layout of avx512::dotg_packed (G = avx512::kPackRows; per group of G rows and weight block: quants
  // [8][G][4], scales d [G], s [G], signed types' offsets [8][G]); the k-quants' AVX-512 kq_group_layout per
  // group of 8 rows (kbs, kdy); the
  // Q4_K decode row in the weight's nibble order (q4k_permute_act).
  std::unique_ptr<uint8_t[]> xq_buf, kbs_buf, kperm_buf, pq_buf;
  std::unique_ptr<float[]> kdy_buf, scales_buf, pd_buf, ps_buf;
  std::unique_ptr<int32_t[]> po_buf;
  uint8_t* xq = call_buffer(xq_buf, arow * (size_t)rows);
  const DotFn dot = dot_fn(isa);
  const Dot4Fn dot4 = dot4_fn(isa);
  // k-quants on AVX-512 with many rows: tiles of 16 weight rows (avx512::ktile_matmul) for the full tiles
  const bool ktile = native_act_type(t) == GgmlType::Q8_K && isa == KernelIsa::Avx512 && rows >= kTileMinRows &&
                     out >= avx512::kTileW;
  // k-quants on AVX-512 otherwise: full groups of 8 rows through avx512::vec_dot_kq_g8 (two groups per pass where
  // they exist)
  const bool kq8 = native_act_type(t) == GgmlType::Q8_K && isa == KernelIsa::Avx512 && rows >= 8 && !ktile;
  const bool par = threads && (int64_t)rows * in * out >= kParallelMin && omp_get_max_threads() > 1;
  const GgmlType at = native_act_type(t);
  const bool legacy_type = at == GgmlType::Q8_0 || at == GgmlType::Q8_1;
  const bool legacy = rows >= 4 && legacy_type;
  const int nb = in / 32;
  const int kgroups = kq8 ? rows / 8 : 0, knb = in / QK_K;
  uint8_t* kbs = nullptr;
  float* kdy = nullptr;
  if (kq8) {
    kbs = call_buffer(kbs_buf, (size_t)kgroups * knb * 256);
    kdy = call_buffer(kdy_buf, (size_t)kgroups * knb * 8);
  }
  uint8_t* kperm = nullptr;
  if (rows == 1 && t == GgmlType::Q4_K && isa == KernelIsa::Avx512) {
    kperm = call_buffer(kperm_buf, arow);
  }
  float* scales = nullptr;
  if (legacy) {
    scales = call_buffer(scales_buf, (size_t)rows * nb * 2);
  }
  // AVX-512: the full groups of G rows also in the transposed layout (one row per 32-bit lane).
  const bool packed = legacy && isa == KernelIsa::Avx512;
  constexpr int G = avx512::kPackRows;
  static_assert(G == 16, "dot_legacyt_packed: one row per lane of a 512-bit register");
  // a last group of at least kPackPadMin rows is padded to G with zero rows (one 16-row pass costs less than the
  // 4-row kernel's passes from about 6 rows on)
  const int pad_min = t == GgmlType::Q8_0 ? kPackPadMinQ8_0 : kPackPadMin;
  const int groups = packed ? rows / G + (rows % G >= pad_min ? 1 : 0) : 0;
  const int off = avx512::legacy_offset(t);
  uint8_t* pq = nullptr;
  float *pd = nullptr, *ps = nullptr;
  int32_t* po = nullptr;
  if (packed) {
    pq = call_buffer(pq_buf, (size_t)groups * nb * G * 32);
    pd = call_buffer(pd_buf, (size_t)groups * nb * G);
    ps = call_buffer(ps_buf, (size_t)groups * nb * G);
    if (off) po = call_buffer(po_buf, (size_t)groups * nb * G * 8);
  }
  // Decode (one activation row): the row is rounded (and permuted for the Q4_K kernel) before the threads start,
  // and the product's loops end without a barrier of their own, so a decode product costs one fork and one join
  // instead of four barriers (each a wake-up when idle threads sleep: docs/benchmarks.md, "Quiet machines").
  const bool pre = rows == 1;
  if (pre) {
    native_quantize_row_isa(t, x, xq, in, isa);
    if (kperm) q4k_permute_act(xq, kperm, in / QK_K);
  }
#pragma omp parallel if (par)
  {
    if (!pre) {
#pragma omp for schedule(static)
      for (int r = 0; r < rows; ++r) {
        uint8_t* q = xq + arow * r;
        native_quantize_row_isa(t, x + (int64_t)r * in, q, in, isa);
        if (legacy) {  // the blocks' f16 d (and s) as f32, once per row (exact conversions)
          const size_t bs = at == GgmlType::Q8_1 ? kQ8_1 : kQ8_0;
          for (int b = 0; b < nb; ++b) {
            scales[((size_t)r * nb + b) * 2] = h2f(q + b * bs);
            scales[((size_t)r * nb + b) * 2 + 1] = at == GgmlType::Q8_1 ? h2f(q + b * bs + 2) : 0.0f;
          }
        }
      }
    }
    if (packed) {
      const size_t bs = at == GgmlType::Q8_1 ? kQ8_1 : kQ8_0, qoff = at == GgmlType::Q8_1 ? 4 : 2;
#pragma omp for schedule(static)
      for (int g = 0; g < groups; ++g)
        for (int k = 0; k < G; ++k) {
          const int r = G * g + k;
          // padding rows (r >= rows) read zero quants and scales; their results are not stored
          static const uint8_t kZeroBlock[kQ8_1] = {};
          static const float kZeroScales[2] = {};
          const bool pad = r >= rows;
          const uint8_t* q = pad ? nullptr : xq + arow * r;
          const float* sc = pad ? nullptr : scales + (size_t)r * nb * 2;
          for (int b = 0; b < nb; ++b) {
            const size_t gb = (size_t)g * nb + b;
            const uint8_t* qb = pad ? kZeroBlock + qoff : q + b * bs + qoff;
            const float* sb = pad ? kZeroScales : sc + 2 * b;
            for (int j = 0; j < 8; ++j) {
              std::memcpy(pq + gb * G * 32 + G * 4 * j + 4 * k, qb + 4 * j, 4);
              if (po) {
                const int8_t* y = reinterpret_cast<const int8_t*>(qb + 4 * j);
                po[gb * G * 8 + G * j + k] = -off * (y[0] + y[1] + y[2] + y[3]);
              }
            }
            pd[gb * G + k] = sb[0];
            ps[gb * G + k] = sb[1];
          }
        }
    }
    if (kq8) {
#pragma omp for schedule(static)
      for (int g = 0; g < kgroups; ++g)
        kq_group_layout(xq + arow * 8 * g, arow, knb, kbs + (size_t)g * knb * 256, kdy + (size_t)g * knb * 8);
    }
    if (ktile) {
      constexpr int W = avx512::kTileW;
      const int ntile = out / W;
      std::unique_ptr<avx512::KTileBlock[]> scratch(new avx512::KTileBlock[avx512::kTileChunk]);
      std::unique_ptr<avx512::KTileAcc[]> acc(new avx512::KTileAcc[rows]);
#pragma omp for schedule(dynamic, 1)
      for (int tile = 0; tile < ntile; ++tile)
        avx512::ktile_matmul(t, w + wrow * W * tile, wrow, xq, arow, rows, in, y + W * tile, out, scratch.get(),
                             acc.get());
      // the last out % 16 weight rows: one product per output
#pragma omp for schedule(static)
      for (int o = W * ntile; o < out; ++o)
        for (int r = 0; r < rows; ++r) y[(int64_t)r * out + o] = dot(t, w + wrow * o, xq + arow * r, in);
    } else if (rows == 1 && native_act_type(t) == GgmlType::Q8_K) {  // k-quants: four weight rows per pass
      const DotW4Fn dotw4 = dotw4_fn(isa);
      const int n4 = out / 4;
      if (t == GgmlType::Q4_K && isa == KernelIsa::Avx512) {
        const uint8_t* xp = kperm;
#pragma omp for schedule(static) nowait
        for (int g = 0; g < n4; ++g) avx512::vec_dot_q4k_w4p(w + wrow * 4 * g, wrow, xp, in, y + 4 * g);
      } else {
#pragma omp for schedule(static) nowait
        for (int g = 0; g < n4; ++g) dotw4(t, w + wrow * 4 * g, wrow, xq, in, y + 4 * g);
      }
#pragma omp for schedule(static) nowait
      for (int o = 4 * n4; o < out; ++o) y[o] = dot(t, w + wrow * o, xq, in);
    } else if (rows == 1 && isa == KernelIsa::Avx512 && legacy_type) {  // four weight rows per pass
      const int n4 = out / 4;
#pragma omp for schedule(static) nowait
      for (int g = 0; g < n4; ++g) avx512::vec_dot_legacy_w4(t, w + wrow * 4 * g, wrow, xq, in, y + 4 * g);
#pragma omp for schedule(static) nowait
      for (int o = 4 * n4; o < out; ++o) y[o] = dot(t, w + wrow * o, xq, in);
    } else if (rows == 1) {
#pragma omp for schedule(static) nowait
      for (int o = 0; o < out; ++o) y[o] = dot(t, w + wrow * o, xq, in);
    } else {
      const int nblk = (out + kRowBlock - 1) / kRowBlock;
#pragma omp for schedule(dynamic, 1)
      for (int bi = 0; bi < nblk; ++bi) {
        const int o0 = bi * kRowBlock, o1 = std::min(out, o0 + kRowBlock);
        int r = 0;
        // AVX-512: two groups of G packed rows per pass over a weight row (one for an odd last group, and for rows
        // longer than kPackPairMaxIn)
        for (int g = 0, ng; (ng = std::min(in <= kPackPairMaxIn ? 2 : 1, groups - g)) > 0; g += ng, r += ng * G) {
          const uint8_t* gq[2];
          const float *gd[2], *gs[2];
          const int32_t* go[2] = {};
          for (int k = 0; k < ng; ++k) {
            const size_t gb = (size_t)(g + k) * nb;
            gq[k] = pq + gb * G * 32;
            gd[k] = pd + gb * G;
            gs[k] = ps + gb * G;
            if (po) go[k] = po + gb * G * 8;
          }
          static_assert(kRowBlock == 16, "store_transposed16: 16 weight rows");
          float v[kRowBlock][2 * G];  // [weight row][activation row], stored to y row by row (contiguous)
          for (int o = o0; o < o1; ++o) avx512::dotg_packed(t, w + wrow * o, gq, gd, gs, go, in, ng, v[o - o0]);
          const int nk = std::min(ng * G, rows - r);
          if (o1 - o0 == 16) {  // a full block of weight rows: 16 x 16 transposes
            for (int k0 = 0; k0 < nk; k0 += 16)
              avx512::store_transposed16(&v[0][0], 2 * G, k0, std::min(16, nk - k0), y + (int64_t)(r + k0) * out + o0, out);
          } else {
            for (int k = 0; k < nk; ++k)
              for (int o = o0; o < o1; ++o) y[(int64_t)(r + k) * out + o] = v[o - o0][k];
          }
        }
        r = std::min(r, rows);  // past a padded last group
        // k-quants (AVX-512): 16 or 8 activation rows per pass over a weight row, in the transposed group layout,
        // the row's blocks in chunks of kKChunk so that the rows' activations and the weight rows' chunks stay in
        // L1 across the output rows (an 8960-value activation row is 10 KB: 16 of them would not)
        for (int ng; kq8 && (ng = std::min(2, (rows - r) / 8)) > 0; r += 8 * ng) {
          const uint8_t* xs[16];
          for (int k = 0; k < 8 * ng; ++k) xs[k] = xq + arow * (r + k);
          const size_t g0 = (size_t)(r / 8) * knb;
          float acc[kRowBlock][16] = {};
          for (int b0 = 0; b0 < knb; b0 += kKChunk) {
            const int b1 = std::min(knb, b0 + kKChunk);
            for (int o = o0; o < o1; ++o)
              avx512::vec_dot_kq_g8(t, w + wrow * o, xs, kbs + g0 * 256, kdy + g0 * 8, knb, b0, b1, ng, acc[o - o0]);
          }
          for (int o = o0; o < o1; ++o)
            for (int k = 0; k < 8 * ng; ++k) y[(int64_t)(r + k) * out + o] = acc[o - o0][k];
        }
        for (; r + 4 <= rows; r += 4) {  // four activation rows per pass over a weight row
          const uint8_t* xs[4] = {xq + arow * r, xq + arow * (r + 1), xq + arow * (r + 2), xq + arow * (r + 3)};
          const float* xd[4] = {};
          if (legacy)
            for (int k = 0; k < 4; ++k) xd[k] = scales + (size_t)(r + k) * nb * 2;
          float v[4];
          for (int o = o0; o < o1; ++o) {
            dot4(t, w + wrow * o, xs, in, v, legacy ? xd : nullptr);
            for (int k = 0; k < 4; ++k) y[(int64_t)(r + k) * out + o] = v[k];
          }
        }
        for (; r < rows; ++r) {
          const uint8_t* xr = xq + arow * r;
          float* yr = y + (int64_t)r * out;
          for (int o = o0; o < o1; ++o) yr[o] = dot(t, w + wrow * o, xr, in);
        }
      }
    }
  }
}

}  // namespace

float native_vec_dot(GgmlType t, const uint8_t* w, const uint8_t* xq, int64_t n, KernelIsa isa) {
  if (!native_supported(t)) fail("native kernels: unsupported weight type {}", ggml_type_name(t));
  return dot_fn(isa)(t, w, xq, n);
}

void native_matmul(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows) {
  matmul_impl(t, w, in, out, x, y, rows, kernel_isa(), true);
}

void native_matmul_isa(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows,
                       KernelIsa isa) {
  if (!cpu_has_isa(isa)) fail("this CPU does not support the {} kernels", kernel_isa_name(isa));
  matmul_impl(t, w, in, out, x, y, rows, isa, false);
}

}  // namespace ctrust
