// ggml tensor types: block layouts, bit-exact dequantization (ggml's dequantize_row_* reference code) and
// the reference quantizers (quantize_row_*_ref) for F32, F16, BF16, Q8_0, Q4_0, Q4_1.
// The arithmetic order below follows ggml exactly; floating-point contraction (FMA) is switched off so
// that d * q - m rounds twice, as in ggml's reference code and in the gguf Python package.
#pragma GCC optimize("fp-contract=off")

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "base/error.h"
#include "io/ctrust_types.h"
#include "io/gguf.h"

namespace ctrust {

namespace {

constexpr int64_t QK = 32;    // block size of the legacy quants
constexpr int64_t QK_K = 256; // block size of the k-quants

// Block sizes in bytes, as in ggml-common.h.
constexpr size_t kQ4_0 = 2 + QK / 2;                  // d, qs
constexpr size_t kQ4_1 = 2 + 2 + QK / 2;              // d, m, qs
constexpr size_t kQ5_0 = 2 + 4 + QK / 2;              // d, qh, qs
constexpr size_t kQ5_1 = 2 + 2 + 4 + QK / 2;          // d, m, qh, qs
constexpr size_t kQ8_0 = 2 + QK;                      // d, qs
constexpr size_t kQ8_1 = 2 + 2 + QK;                  // d, s, qs
constexpr size_t kQ2_K = QK_K / 16 + QK_K / 4 + 2 + 2;          // scales, qs, d, dmin = 84
constexpr size_t kQ3_K = QK_K / 8 + QK_K / 4 + 12 + 2;          // hmask, qs, scales, d = 110
constexpr size_t kQ4_K = 2 + 2 + 12 + QK_K / 2;                 // d, dmin, scales, qs = 144
constexpr size_t kQ5_K = 2 + 2 + 12 + QK_K / 8 + QK_K / 2;      // d, dmin, scales, qh, qs = 176
constexpr size_t kQ6_K = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;   // ql, qh, scales, d = 210
constexpr size_t kQ8_K = 4 + QK_K + QK_K / 16 * 2;              // d (f32), qs, bsums = 292

struct TypeRow {
  uint32_t id;
  GgmlTypeInfo info;
};

const TypeRow kTypes[] = {
    {0, {"f32", 1, 4, true, true}},
    {1, {"f16", 1, 2, true, true}},
    {2, {"q4_0", QK, kQ4_0, true, true}},
    {3, {"q4_1", QK, kQ4_1, true, true}},
    {6, {"q5_0", QK, kQ5_0, true, false}},
    {7, {"q5_1", QK, kQ5_1, true, false}},
    {8, {"q8_0", QK, kQ8_0, true, true}},
    {9, {"q8_1", QK, kQ8_1, false, false}},
    {10, {"q2_k", QK_K, kQ2_K, true, false}},
    {11, {"q3_k", QK_K, kQ3_K, true, false}},
    {12, {"q4_k", QK_K, kQ4_K, true, false}},
    {13, {"q5_k", QK_K, kQ5_K, true, false}},
    {14, {"q6_k", QK_K, kQ6_K, true, false}},
    {15, {"q8_k", QK_K, kQ8_K, false, false}},
    {26, {"i32", 1, 4, false, false}},  // only as the column permutation of ctrust act-order tensors
    {30, {"bf16", 1, 2, true, true}},
};

// ---- half / bfloat16 conversions ----

// Exact f16 -> f32 (every f16 value is representable in f32).
float fp16_to_fp32_slow(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        e++;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      mant &= 0x3ff;
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

const float* fp16_table() {
  static const std::array<float, 65536>* table = [] {
    auto* t = new std::array<float, 65536>();
    for (uint32_t i = 0; i < 65536; ++i) (*t)[i] = fp16_to_fp32_slow((uint16_t)i);
    return t;
  }();
  return table->data();
}

// f32 -> f16, round to nearest even (as ggml's GGML_FP32_TO_FP16 / F16C / numpy astype(float16)).
uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) {  // NaN: keep it quiet, keep the top mantissa bits
    return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
  }
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  // rounds to >= 65520: infinity
  if (ax < 0x38800000u) {                                   // below the smallest normal f16 (2^-14)
    if (ax < 0x33000000u) return (uint16_t)sign;            // < 2^-25: rounds to zero (ties to even 0)
    // subnormal f16: value = mant * 2^-24
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;  // so that result = m >> (shift) ... with 1 + 23 bit mantissa
    // value = m * 2^(e-127-23); in units of 2^-24: m * 2^(e-126) = m >> (126 - e)
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  // normal: rebias exponent, round the 13 dropped bits to nearest even
  uint32_t r = ax - ((127 - 15) << 23);
  uint32_t q = r >> 13;
  uint32_t rem = r & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
  return (uint16_t)(sign | q);
}

inline float bf16_to_fp32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ggml_compute_fp32_to_bf16: quiet NaNs, round to nearest even.
inline uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64);
  return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

inline uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void wr16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// ---- dequantization, one run of blocks; each mirrors ggml's dequantize_row_* ----

void deq_f16(const uint8_t* x, float* y, int64_t n, const float* t) {
  for (int64_t i = 0; i < n; ++i) y[i] = t[rd16(x + 2 * i)];
}
void deq_bf16(const uint8_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(rd16(x + 2 * i));
}

void deq_q4_0(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ4_0, y += QK) {
    const float d = t[rd16(x)];
    const uint8_t* qs = x + 2;
    for (int j = 0; j < QK / 2; ++j) {
      const int x0 = (qs[j] & 0x0F) - 8;
      const int x1 = (qs[j] >> 4) - 8;
      y[j] = x0 * d;
      y[j + QK / 2] = x1 * d;
    }
  }
}

void deq_q4_1(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ4_1, y += QK) {
    const float d = t[rd16(x)];
    const float m = t[rd16(x + 2)];
    const uint8_t* qs = x + 4;
    for (int j = 0; j < QK / 2; ++j) {
      const int x0 = (qs[j] & 0x0F);
      const int x1 = (qs[j] >> 4);
      y[j] = x0 * d + m;
      y[j + QK / 2] = x1 * d + m;
    }
  }
}

void deq_q5_0(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ5_0, y += QK) {
    const float d = t[rd16(x)];
    uint32_t qh;
    std::memcpy(&qh, x + 2, 4);
    const uint8_t* qs = x + 6;
    for (int j = 0; j < QK / 2; ++j) {
      const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
      const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
      const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - 16;
      const int32_t x1 = ((qs[j] >> 4) | xh_1) - 16;
      y[j] = x0 * d;
      y[j + QK / 2] = x1 * d;
    }
  }
}

void deq_q5_1(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ5_1, y += QK) {
    const float d = t[rd16(x)];
    const float m = t[rd16(x + 2)];
    uint32_t qh;
    std::memcpy(&qh, x + 4, 4);
    const uint8_t* qs = x + 8;
    for (int j = 0; j < QK / 2; ++j) {
      const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
      const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
      const int x0 = (qs[j] & 0x0F) | xh_0;
      const int x1 = (qs[j] >> 4) | xh_1;
      y[j] = x0 * d + m;
      y[j + QK / 2] = x1 * d + m;
    }
  }
}

void deq_q8_0(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ8_0, y += QK) {
    const float d = t[rd16(x)];
    const int8_t* qs = reinterpret_cast<const int8_t*>(x + 2);
    for (int j = 0; j < QK; ++j) y[j] = qs[j] * d;
  }
}

void deq_q2_k(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ2_K) {
    const uint8_t* scales = x;
    const uint8_t* q = x + 16;
    const float d = t[rd16(x + 80)];
    const float min = t[rd16(x + 82)];
    int is = 0;
    float dl, ml;
    for (int n = 0; n < QK_K; n += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        uint8_t sc = scales[is++];
        dl = d * (sc & 0xF);
        ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
        sc = scales[is++];
        dl = d * (sc & 0xF);
        ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
        shift += 2;
      }
      q += 32;
    }
  }
}

void deq_q3_k(const uint8_t* x, float* y, int64_t nb, const float* t) {
  const uint32_t kmask1 = 0x03030303;
  const uint32_t kmask2 = 0x0f0f0f0f;
  uint32_t aux[4];
  for (int64_t i = 0; i < nb; ++i, x += kQ3_K) {
    const uint8_t* hm = x;
    const uint8_t* q = x + 32;
    const float d_all = t[rd16(x + 108)];
    uint8_t m = 1;
    std::memcpy(aux, x + 96, 12);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    std::memcpy(scales, aux, 16);
    int is = 0;
    float dl;
    for (int n = 0; n < QK_K; n += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        dl = d_all * (scales[is++] - 32);
        for (int l = 0; l < 16; ++l)
          *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
        dl = d_all * (scales[is++] - 32);
        for (int l = 0; l < 16; ++l)
          *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
        shift += 2;
        m <<= 1;
      }
      q += 32;
    }
  }
}

inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

void deq_q4_k(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ4_K) {
    const float d = t[rd16(x)];
    const float min = t[rd16(x + 2)];
    const uint8_t* scales = x + 4;
    const uint8_t* q = x + 16;
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < QK_K; j += 64) {
      get_scale_min_k4(is + 0, scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      get_scale_min_k4(is + 1, scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

void deq_q5_k(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ5_K) {
    const float d = t[rd16(x)];
    const float min = t[rd16(x + 2)];
    const uint8_t* scales = x + 4;
    const uint8_t* qh = x + 16;
    const uint8_t* ql = x + 48;
    int is = 0;
    uint8_t sc, m;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64) {
      get_scale_min_k4(is + 0, scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      get_scale_min_k4(is + 1, scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

void deq_q6_k(const uint8_t* x, float* y, int64_t nb, const float* t) {
  for (int64_t i = 0; i < nb; ++i, x += kQ6_K) {
    const uint8_t* ql = x;
    const uint8_t* qh = x + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
    const float d = t[rd16(x + 208)];
    for (int n = 0; n < QK_K; n += 128) {
      for (int l = 0; l < 32; ++l) {
        int is = l / 16;
        const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

// Dequantizes nb blocks starting at x (block_size elements each) into y.
void dequant_blocks(GgmlType type, const uint8_t* x, float* y, int64_t nb, const float* t) {
  switch (type) {
    case GgmlType::F32: std::memcpy(y, x, (size_t)nb * 4); break;
    case GgmlType::F16: deq_f16(x, y, nb, t); break;
    case GgmlType::BF16: deq_bf16(x, y, nb); break;
    case GgmlType::Q4_0: deq_q4_0(x, y, nb, t); break;
    case GgmlType::Q4_1: deq_q4_1(x, y, nb, t); break;
    case GgmlType::Q5_0: deq_q5_0(x, y, nb, t); break;
    case GgmlType::Q5_1: deq_q5_1(x, y, nb, t); break;
    case GgmlType::Q8_0: deq_q8_0(x, y, nb, t); break;
    case GgmlType::Q2_K: deq_q2_k(x, y, nb, t); break;
    case GgmlType::Q3_K: deq_q3_k(x, y, nb, t); break;
    case GgmlType::Q4_K: deq_q4_k(x, y, nb, t); break;
    case GgmlType::Q5_K: deq_q5_k(x, y, nb, t); break;
    case GgmlType::Q6_K: deq_q6_k(x, y, nb, t); break;
    default: fail("cannot dequantize ggml type {}", ggml_type_name(type));
  }
}

// ---- reference quantizers (ggml quantize_row_*_ref) ----

// ggml's MIN(15, (int8_t)v) for v in [0, 16.5]; also defined (clamped) for NaN/out-of-range input.
inline uint8_t trunc_nibble(float v) {
  if (!(v >= 0.0f)) return 0;
  if (v >= 15.0f) return 15;
  return (uint8_t)(int)v;
}

void quant_q8_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK, y += kQ8_0) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    wr16(y, fp32_to_fp16(d));
    int8_t* qs = reinterpret_cast<int8_t*>(y + 2);
    for (int j = 0; j < QK; ++j) {
      const float x0 = x[j] * id;
      // roundf: halves away from zero. |x0| <= 127 for finite input; NaN (from inf/NaN input) -> 0.
      qs[j] = x0 == x0 ? (int8_t)std::max(-128.0f, std::min(127.0f, std::round(x0))) : 0;
    }
  }
}

void quant_q4_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK, y += kQ4_0) {
    float amax = 0.0f;  // absolute max
    float max = 0.0f;
    for (int j = 0; j < QK; ++j) {
      const float v = x[j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    wr16(y, fp32_to_fp16(d));
    uint8_t* qs = y + 2;
    for (int j = 0; j < QK / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[QK / 2 + j] * id;
      const uint8_t xi0 = trunc_nibble(x0 + 8.5f);
      const uint8_t xi1 = trunc_nibble(x1 + 8.5f);
      qs[j] = xi0 | (uint8_t)(xi1 << 4);
    }
  }
}

void quant_q4_1(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK, y += kQ4_1) {
    float min = 3.402823466e+38f;
    float max = -3.402823466e+38f;
    for (int j = 0; j < QK; ++j) {
      const float v = x[j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    wr16(y, fp32_to_fp16(d));
    wr16(y + 2, fp32_to_fp16(min));
    uint8_t* qs = y + 4;
    for (int j = 0; j < QK / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[QK / 2 + j] - min) * id;
      const uint8_t xi0 = trunc_nibble(x0 + 0.5f);
      const uint8_t xi1 = trunc_nibble(x1 + 0.5f);
      qs[j] = xi0 | (uint8_t)(xi1 << 4);
    }
  }
}

}  // namespace

float ggml_fp16_to_fp32(uint16_t h) { return fp16_table()[h]; }
uint16_t ggml_fp32_to_fp16(float f) { return fp32_to_fp16(f); }
float ggml_bf16_to_fp32(uint16_t h) { return bf16_to_fp32(h); }
uint16_t ggml_fp32_to_bf16(float f) { return fp32_to_bf16(f); }

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  for (const auto& r : kTypes)
    if (r.id == type) return &r.info;
  return ctrust_type_info(type);  // ctrust's own types (bit 31 set), nullptr for unknown ids
}

const char* ggml_type_name(GgmlType t) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t));
  return info ? info->name : "unknown";
}

GgmlType ggml_type_from_name(std::string_view name) {
  std::string lower(name);
  for (auto& c : lower) c = (char)std::tolower((unsigned char)c);
  std::string valid;
  for (const auto& r : kTypes) {
    if (lower == r.info.name) return static_cast<GgmlType>(r.id);
    if (!valid.empty()) valid += ", ";
    valid += r.info.name;
  }
  fail("unknown tensor type '{}' (valid: {})", name, valid);
}

size_t ggml_nbytes(GgmlType t, int64_t n) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t));
  if (!info) fail("unknown ggml type id {}", static_cast<uint32_t>(t));
  if (n < 0 || n % info->block_size != 0)
    fail("{} elements is not a multiple of the {} block size {}", n, info->name, info->block_size);
  return (size_t)(n / info->block_size) * info->type_size;
}

void dequantize(GgmlType t, const void* src, float* dst, int64_t n) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t));
  if (!info || !info->can_dequantize) fail("cannot dequantize ggml type {}", ggml_type_name(t));
  if (n < 0 || n % info->block_size != 0)
    fail("{} elements is not a multiple of the {} block size {}", n, info->name, info->block_size);
  if (n == 0) return;  // an empty tensor: dst may be null (memcpy with a null pointer is undefined)
  const int64_t nb = n / info->block_size;
  const uint8_t* x = static_cast<const uint8_t*>(src);
  const float* table = fp16_table();
  // Chunks of blocks spread over threads for big tensors.
  const int64_t chunk = std::max<int64_t>(1, 16384 / info->block_size);
  const int64_t n_chunks = (nb + chunk - 1) / chunk;
  if (is_ctrust_type(t)) {
#pragma omp parallel for schedule(dynamic, 4) if (n_chunks > 1)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t b0 = c * chunk;
      ctrust_dequantize_blocks(t, x + (size_t)b0 * info->type_size, dst + b0 * info->block_size,
                               std::min(nb, b0 + chunk) - b0);
    }
    return;
  }
  if (n_chunks <= 1) {
    dequant_blocks(t, x, dst, nb, table);
    return;
  }
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t b0 = c * chunk;
    const int64_t b1 = std::min(nb, b0 + chunk);
    dequant_blocks(t, x + (size_t)b0 * info->type_size, dst + b0 * info->block_size, b1 - b0, table);
  }
}

void quantize(GgmlType t, const float* src, void* dst, int64_t n) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t));
  if (!info || !info->can_quantize) fail("cannot quantize to ggml type {}", ggml_type_name(t));
  if (n < 0 || n % info->block_size != 0)
    fail("{} elements is not a multiple of the {} block size {}", n, info->name, info->block_size);
  uint8_t* y = static_cast<uint8_t*>(dst);
  const int64_t nb = n / info->block_size;
  const int64_t chunk = std::max<int64_t>(1, 16384 / info->block_size);
  const int64_t n_chunks = (nb + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 4) if (n_chunks > 1)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t b0 = c * chunk;
    const int64_t b1 = std::min(nb, b0 + chunk);
    const float* x = src + b0 * info->block_size;
    uint8_t* yy = y + (size_t)b0 * info->type_size;
    const int64_t cnt = b1 - b0;
    switch (t) {
      case GgmlType::F32: std::memcpy(yy, x, (size_t)cnt * 4); break;
      case GgmlType::F16:
        for (int64_t i = 0; i < cnt; ++i) wr16(yy + 2 * i, fp32_to_fp16(x[i]));
        break;
      case GgmlType::BF16:
        for (int64_t i = 0; i < cnt; ++i) wr16(yy + 2 * i, fp32_to_bf16(x[i]));
        break;
      case GgmlType::Q8_0: quant_q8_0(x, yy, cnt); break;
      case GgmlType::Q4_0: quant_q4_0(x, yy, cnt); break;
      case GgmlType::Q4_1: quant_q4_1(x, yy, cnt); break;
      default: break;
    }
  }
}

}  // namespace ctrust
