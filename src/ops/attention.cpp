#include "ops/attention.h"

#include <cblas.h>
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/ops.h"
#include "ops/qmatmul.h"
#include "ops/vexp.h"

namespace ctrust {

namespace {
constexpr int kBlock = 64;  // query rows per task in the sgemm path
// The factor of the scores: s.scale, or 1/sqrt(head_dim) when it is 0.
inline float score_scale(const AttentionShape& s) {
  return s.scale > 0 ? s.scale : 1.0f / std::sqrt((float)s.head_dim);
}
// The first key a query at position p sees (its sliding window's start; 0 without a window).
inline int first_visible(const AttentionShape& s, int p) { return s.window > 0 ? std::max(0, p - s.window + 1) : 0; }
// Multiply-adds of the scores of G decode rows: below 1 << 18 threads cost more than they save.
inline int64_t decode_work(const AttentionShape& s, const DecodeRow* rows, int G) {
  int64_t work = 0;
  for (int r = 0; r < G; ++r) work += (int64_t)s.n_heads * (rows[r].pos + 1) * s.head_dim;
  return work;
}
}

// The product rounded to float on its own: the empty asm hides it from the compiler, which would otherwise fuse
// it with the following addition into an fma (-ffp-contract=fast, GCC's default) and change the rounding.
inline float rounded_product(float a, float b) {
  float p = a * b;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+x"(p));
#else
  volatile float v = p;
  p = v;
#endif
  return p;
}

void attention_scores_ref(const float* q, const float* k, int kv_stride, int hd, int lo, int len, float scale,
                          float* s) {
  for (int j = lo; j < len; ++j) {
    const float* kj = k + (int64_t)j * kv_stride;
    float d = 0.0f;
    for (int c = 0; c < hd; ++c) d += rounded_product(q[c], kj[c]);
    s[j] = d * scale;
  }
}

void attention_weighted_sum_ref(const float* p, const float* v, int kv_stride, int hd, int lo, int len, float* out) {
  for (int c = 0; c < hd; ++c) out[c] = 0.0f;
  for (int j = lo; j < len; ++j) {
    const float* vj = v + (int64_t)j * kv_stride;
    for (int c = 0; c < hd; ++c) out[c] = std::fma(p[j], vj[c], out[c]);
  }
}

#if defined(__AVX2__) && defined(__FMA__)
namespace {
// Keys j .. j+7, dimensions c0 .. c0+7 of k (row stride ld), transposed: col[m] lane i = k[j+i][c0+m].
inline void transpose8(const float* kj, int64_t ld, __m256 col[8]) {
  const __m256 r0 = _mm256_loadu_ps(kj), r1 = _mm256_loadu_ps(kj + ld), r2 = _mm256_loadu_ps(kj + 2 * ld),
               r3 = _mm256_loadu_ps(kj + 3 * ld), r4 = _mm256_loadu_ps(kj + 4 * ld),
               r5 = _mm256_loadu_ps(kj + 5 * ld), r6 = _mm256_loadu_ps(kj + 6 * ld),
               r7 = _mm256_loadu_ps(kj + 7 * ld);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  col[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  col[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  col[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  col[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  col[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  col[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  col[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  col[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
// acc += q[m] * col[m] for m = 0..7 in order, each product rounded before the addition (see rounded_product).
inline __m256 add_products8(__m256 acc, const float* q, const __m256 col[8]) {
  for (int m = 0; m < 8; ++m) {
    __m256 p = _mm256_mul_ps(_mm256_set1_ps(q[m]), col[m]);
    asm("" : "+x"(p));
    acc = _mm256_add_ps(acc, p);
  }
  return acc;
}
}  // namespace

// Eight keys per register, one per lane: their rows are transposed in 8 x 8 tiles so that lane i holds key j+i's
// dimension c, and acc += q[c] * k[j+i][c] (product rounded, then added) runs over c in order -- per lane the
// reference's sum. Four such blocks (32 keys) are interleaved: their addition chains are independent, so the
// out-of-order core overlaps them (one chain is bound by the addition's latency).
void attention_scores(const float* q, const float* k, int kv_stride, int hd, int lo, int len, float scale,
                      float* s) {
  if (hd % 8 != 0) return attention_scores_ref(q, k, kv_stride, hd, lo, len, scale, s);
  const __m256 vscale = _mm256_set1_ps(scale);
  const int64_t ld = kv_stride;
  int j = lo;
  for (; j + 32 <= len; j += 32) {
    const float* kj = k + (int64_t)j * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, col[8];
    for (int c0 = 0; c0 < hd; c0 += 8) {
      transpose8(kj + c0, ld, col);
      a0 = add_products8(a0, q + c0, col);
      transpose8(kj + 8 * ld + c0, ld, col);
      a1 = add_products8(a1, q + c0, col);
      transpose8(kj + 16 * ld + c0, ld, col);
      a2 = add_products8(a2, q + c0, col);
      transpose8(kj + 24 * ld + c0, ld, col);
      a3 = add_products8(a3, q + c0, col);
    }
    _mm256_storeu_ps(s + j, _mm256_mul_ps(a0, vscale));
    _mm256_storeu_ps(s + j + 8, _mm256_mul_ps(a1, vscale));
    _mm256_storeu_ps(s + j + 16, _mm256_mul_ps(a2, vscale));
    _mm256_storeu_ps(s + j + 24, _mm256_mul_ps(a3, vscale));
  }
  for (; j + 8 <= len; j += 8) {
    const float* kj = k + (int64_t)j * ld;
    __m256 acc = _mm256_setzero_ps(), col[8];
    for (int c0 = 0; c0 < hd; c0 += 8) {
      transpose8(kj + c0, ld, col);
      acc = add_products8(acc, q + c0, col);
    }
    _mm256_storeu_ps(s + j, _mm256_mul_ps(acc, vscale));
  }
  attention_scores_ref(q, k, kv_stride, hd, j, len, scale, s);
}

namespace {
// NH heads (query rows q + i * qs) against keys j .. j+7: each 8 x 8 tile of keys is transposed once and used by
// every head; per head and lane the same sum as attention_scores_ref.
template <int NH>
void scores_heads8(const float* q, int qs, const float* k, int64_t ld, int hd, int lo, int len, float scale,
                   float* s, int64_t ss) {
  const __m256 vscale = _mm256_set1_ps(scale);
  int j = lo;
  for (; j + 8 <= len; j += 8) {
    const float* kj = k + (int64_t)j * ld;
    __m256 acc[NH], col[8];
    for (int i = 0; i < NH; ++i) acc[i] = _mm256_setzero_ps();
    for (int c0 = 0; c0 < hd; c0 += 8) {
      transpose8(kj + c0, ld, col);
      for (int i = 0; i < NH; ++i) acc[i] = add_products8(acc[i], q + (int64_t)i * qs + c0, col);
    }
    for (int i = 0; i < NH; ++i) _mm256_storeu_ps(s + i * ss + j, _mm256_mul_ps(acc[i], vscale));
  }
  for (int i = 0; i < NH; ++i) attention_scores_ref(q + (int64_t)i * qs, k, (int)ld, hd, j, len, scale, s + i * ss);
}
}  // namespace

namespace {
void scores_heads_avx2(const float* q, int q_head_stride, int nh, const float* k, int kv_stride, int hd, int lo,
                       int len, float scale, float* s, int64_t s_stride) {
  if (hd % 8 != 0 || nh == 1) {
    for (int i = 0; i < nh; ++i)
      attention_scores(q + (int64_t)i * q_head_stride, k, kv_stride, hd, lo, len, scale, s + i * s_stride);
    return;
  }
  for (int i0 = 0; i0 < nh; i0 += 4) {  // at most four heads per pass: their accumulators and a tile in registers
    const float* qi = q + (int64_t)i0 * q_head_stride;
    float* si = s + i0 * s_stride;
    switch (std::min(4, nh - i0)) {
      case 1: attention_scores(qi, k, kv_stride, hd, lo, len, scale, si); break;
      case 2: scores_heads8<2>(qi, q_head_stride, k, kv_stride, hd, lo, len, scale, si, s_stride); break;
      case 3: scores_heads8<3>(qi, q_head_stride, k, kv_stride, hd, lo, len, scale, si, s_stride); break;
      default: scores_heads8<4>(qi, q_head_stride, k, kv_stride, hd, lo, len, scale, si, s_stride); break;
    }
  }
}
}  // namespace

// out[c] = fma(p[j], v[j][c], out[c]) over j in order, as the reference, with the output in registers: 64
// dimensions (eight registers) per pass over the values.
void attention_weighted_sum(const float* p, const float* v, int kv_stride, int hd, int lo, int len, float* out) {
  if (hd % 8 != 0) return attention_weighted_sum_ref(p, v, kv_stride, hd, lo, len, out);
  for (int c0 = 0; c0 < hd; c0 += 64) {
    const int nr = std::min(8, (hd - c0) / 8);
    __m256 acc[8];
    for (int m = 0; m < 8; ++m) acc[m] = _mm256_setzero_ps();
    const float* vc = v + c0;
    if (nr == 8) {
      for (int j = lo; j < len; ++j) {
        const __m256 pj = _mm256_set1_ps(p[j]);
        const float* vj = vc + (int64_t)j * kv_stride;
        for (int m = 0; m < 8; ++m) acc[m] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * m), acc[m]);
      }
    } else {
      for (int j = lo; j < len; ++j) {
        const __m256 pj = _mm256_set1_ps(p[j]);
        const float* vj = vc + (int64_t)j * kv_stride;
        for (int m = 0; m < nr; ++m) acc[m] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * m), acc[m]);
      }
    }
    for (int m = 0; m < nr; ++m) _mm256_storeu_ps(out + c0 + 8 * m, acc[m]);
  }
}

// ---------------------------------------------------------------- AVX-512: 16 keys (scores) / 16 dims per register

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 warns inside its AVX-512 intrinsics that
#pragma GCC diagnostic ignored "-Wuninitialized"        // start from an undefined vector (as qmatmul_x86.inc)
#endif
namespace attn_avx512 {

// Keys j .. j+15 (rows kj + i * ld), dimensions c0 .. c0+7, transposed: col[m] lane i = k[j+i][c0+m]. Rows from
// nv on (a block at the end of the range) repeat row nv-1: their lanes are computed and not stored. The register
// of rows (i, i+4) (i < 4) and (8+i, 12+i) goes through the 8 x 8 steps of transpose8 within each 256-bit half,
// and a 128-bit shuffle of the two halves' results puts key j+i in lane i.
// Rows a and b (the last valid row for those from nv on) in one register.
template <bool kTail>
inline __m512 row_pair(const float* kj, int64_t ld, int nv, int a, int b) {
  const __m256 ra = _mm256_loadu_ps(kj + (kTail ? std::min(a, nv - 1) : a) * ld);
  const __m256 rb = _mm256_loadu_ps(kj + (kTail ? std::min(b, nv - 1) : b) * ld);
  return _mm512_insertf32x8(_mm512_castps256_ps512(ra), rb, 1);
}
template <bool kTail>
inline void transpose16x8(const float* kj, int64_t ld, int nv, __m512 col[8]) {
  const __m512 r0 = row_pair<kTail>(kj, ld, nv, 0, 4), r1 = row_pair<kTail>(kj, ld, nv, 1, 5),
               r2 = row_pair<kTail>(kj, ld, nv, 2, 6), r3 = row_pair<kTail>(kj, ld, nv, 3, 7),
               r4 = row_pair<kTail>(kj, ld, nv, 8, 12), r5 = row_pair<kTail>(kj, ld, nv, 9, 13),
               r6 = row_pair<kTail>(kj, ld, nv, 10, 14), r7 = row_pair<kTail>(kj, ld, nv, 11, 15);
  const __m512 t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
  const __m512 t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
  const __m512 t4 = _mm512_unpacklo_ps(r4, r5), t5 = _mm512_unpackhi_ps(r4, r5);
  const __m512 t6 = _mm512_unpacklo_ps(r6, r7), t7 = _mm512_unpackhi_ps(r6, r7);
  const __m512 u0 = _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m512 u1 = _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m512 u2 = _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m512 u3 = _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m512 u4 = _mm512_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m512 u5 = _mm512_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m512 u6 = _mm512_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m512 u7 = _mm512_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  // u0's 128-bit parts: dimension 0 of rows 0-3, dimension 4 of rows 0-3, dimension 0 of rows 4-7, dimension 4
  // of rows 4-7; u4's the same for rows 8-15.
  col[0] = _mm512_shuffle_f32x4(u0, u4, _MM_SHUFFLE(2, 0, 2, 0));
  col[1] = _mm512_shuffle_f32x4(u1, u5, _MM_SHUFFLE(2, 0, 2, 0));
  col[2] = _mm512_shuffle_f32x4(u2, u6, _MM_SHUFFLE(2, 0, 2, 0));
  col[3] = _mm512_shuffle_f32x4(u3, u7, _MM_SHUFFLE(2, 0, 2, 0));
  col[4] = _mm512_shuffle_f32x4(u0, u4, _MM_SHUFFLE(3, 1, 3, 1));
  col[5] = _mm512_shuffle_f32x4(u1, u5, _MM_SHUFFLE(3, 1, 3, 1));
  col[6] = _mm512_shuffle_f32x4(u2, u6, _MM_SHUFFLE(3, 1, 3, 1));
  col[7] = _mm512_shuffle_f32x4(u3, u7, _MM_SHUFFLE(3, 1, 3, 1));
}

// acc += q[m] * col[m] for m = 0..7 in order, each product rounded before the addition (see rounded_product).
inline __m512 add_products16(__m512 acc, const float* q, const __m512 col[8]) {
  for (int m = 0; m < 8; ++m) {
    __m512 p = _mm512_mul_ps(_mm512_set1_ps(q[m]), col[m]);
    asm("" : "+v"(p));
    acc = _mm512_add_ps(acc, p);
  }
  return acc;
}

// NH heads (rows q + i * qs) against keys j .. j+15 (nv of them valid): each 16 x 8 tile of keys is transposed
// once and serves every head; per head and lane the sum of attention_scores_ref.
template <int NH, bool kTail>
inline void block16(const float* q, int qs, const float* kj, int64_t ld, int hd, int nv, __m512 vscale, float* s,
                    int64_t ss) {
  __m512 acc[NH], col[8];
  for (int i = 0; i < NH; ++i) acc[i] = _mm512_setzero_ps();
  for (int c0 = 0; c0 < hd; c0 += 8) {
    transpose16x8<kTail>(kj + c0, ld, nv, col);
    for (int i = 0; i < NH; ++i) acc[i] = add_products16(acc[i], q + (int64_t)i * qs + c0, col);
  }
  const __mmask16 m = kTail ? (__mmask16)((1u << nv) - 1) : (__mmask16)0xffff;
  for (int i = 0; i < NH; ++i) _mm512_mask_storeu_ps(s + i * ss, m, _mm512_mul_ps(acc[i], vscale));
}

// Software prefetch distances (rows ahead) of the two kernels: a decode step reads each sequence's cache once, from
// memory (the caches of a batch of sequences do not fit in the caches), 256 bytes per row of a kv head at the
// row stride; prefetching cut attention() over caches in memory by ~25% (bench_attention's "cold" rows).
constexpr int kPfS = 32, kPfW = 24;
template <int NH>
void scores_heads16(const float* q, int qs, const float* k, int64_t ld, int hd, int lo, int len, float scale,
                    float* s, int64_t ss) {
  const __m512 vscale = _mm512_set1_ps(scale);
  int j = lo;
  for (; j + 16 <= len; j += 16) {
    {  // the 16 rows kPfS ahead
      const int jp = std::min(len - 1, j + kPfS);
      const int je = std::min(len, jp + 16);
      for (int r = jp; r < je; ++r)
        for (int c = 0; c < hd; c += 16) _mm_prefetch((const char*)(k + (int64_t)r * ld + c), _MM_HINT_T0);
    }
    block16<NH, false>(q, qs, k + (int64_t)j * ld, ld, hd, 16, vscale, s + j, ss);
  }
  if (j < len) block16<NH, true>(q, qs, k + (int64_t)j * ld, ld, hd, len - j, vscale, s + j, ss);
}

void scores_heads(const float* q, int q_head_stride, int nh, const float* k, int kv_stride, int hd, int lo, int len,
                  float scale, float* s, int64_t s_stride) {
  for (int i0 = 0; i0 < nh; i0 += 4) {  // at most four heads per pass: their accumulators and a tile in registers
    const float* qi = q + (int64_t)i0 * q_head_stride;
    float* si = s + i0 * s_stride;
    switch (std::min(4, nh - i0)) {
      case 1: scores_heads16<1>(qi, q_head_stride, k, kv_stride, hd, lo, len, scale, si, s_stride); break;
      case 2: scores_heads16<2>(qi, q_head_stride, k, kv_stride, hd, lo, len, scale, si, s_stride); break;
      case 3: scores_heads16<3>(qi, q_head_stride, k, kv_stride, hd, lo, len, scale, si, s_stride); break;
      default: scores_heads16<4>(qi, q_head_stride, k, kv_stride, hd, lo, len, scale, si, s_stride); break;
    }
  }
}

// NH heads' weighted sums over NR x 16 dimensions (v, out at the chunk's first dimension): each value row is
// loaded once for all heads; out[i][c] = fma(p_i[j], v_j[c], out[i][c]) over j in order, as the reference, from
// 0 or (in != null) from in[i][c] (a sum over earlier keys carried on: the same chain of fma's).
template <int NH, int NR>
void wsum_chunk(const float* p, int64_t ps, const float* v, int64_t ld, int lo, int len, const float* in,
                int64_t is, float* out, int64_t os) {
  __m512 acc[NH][NR];
  for (int i = 0; i < NH; ++i)
    for (int m = 0; m < NR; ++m) acc[i][m] = in ? _mm512_loadu_ps(in + i * is + 16 * m) : _mm512_setzero_ps();
  for (int j = lo; j < len; ++j) {
    const float* vj = v + (int64_t)j * ld;
    if (j + kPfW < len)
      for (int m = 0; m < NR; ++m) _mm_prefetch((const char*)(vj + kPfW * ld + 16 * m), _MM_HINT_T0);
    __m512 vr[NR];
    for (int m = 0; m < NR; ++m) vr[m] = _mm512_loadu_ps(vj + 16 * m);
    for (int i = 0; i < NH; ++i) {
      const __m512 pj = _mm512_set1_ps(p[i * ps + j]);
      for (int m = 0; m < NR; ++m) acc[i][m] = _mm512_fmadd_ps(pj, vr[m], acc[i][m]);
    }
  }
  for (int i = 0; i < NH; ++i)
    for (int m = 0; m < NR; ++m) _mm512_storeu_ps(out + i * os + 16 * m, acc[i][m]);
}

template <int NH>
void wsum_heads(const float* p, int64_t ps, const float* v, int64_t ld, int hd, int lo, int len, const float* in,
                int64_t is, float* out, int64_t os) {
  for (int c0 = 0; c0 < hd; c0 += 64) {
    const float* ic = in ? in + c0 : nullptr;
    switch (std::min(4, (hd - c0) / 16)) {
      case 1: wsum_chunk<NH, 1>(p, ps, v + c0, ld, lo, len, ic, is, out + c0, os); break;
      case 2: wsum_chunk<NH, 2>(p, ps, v + c0, ld, lo, len, ic, is, out + c0, os); break;
      case 3: wsum_chunk<NH, 3>(p, ps, v + c0, ld, lo, len, ic, is, out + c0, os); break;
      default: wsum_chunk<NH, 4>(p, ps, v + c0, ld, lo, len, ic, is, out + c0, os); break;
    }
  }
}

// hd % 16 == 0. in: null (sums from 0) or the nh heads' sums so far (stride in_stride; may equal out).
void weighted_sum_heads(const float* p, int64_t p_stride, int nh, const float* v, int kv_stride, int hd, int lo,
                        int len, float* out, int64_t out_stride, const float* in = nullptr, int64_t in_stride = 0) {
  for (int i0 = 0; i0 < nh; i0 += 4) {  // at most four heads per pass (16 accumulators of 64 dimensions)
    const float* pi = p + i0 * p_stride;
    const float* ii = in ? in + i0 * in_stride : nullptr;
    float* oi = out + i0 * out_stride;
    switch (std::min(4, nh - i0)) {
      case 1: wsum_heads<1>(pi, p_stride, v, kv_stride, hd, lo, len, ii, in_stride, oi, out_stride); break;
      case 2: wsum_heads<2>(pi, p_stride, v, kv_stride, hd, lo, len, ii, in_stride, oi, out_stride); break;
      case 3: wsum_heads<3>(pi, p_stride, v, kv_stride, hd, lo, len, ii, in_stride, oi, out_stride); break;
      default: wsum_heads<4>(pi, p_stride, v, kv_stride, hd, lo, len, ii, in_stride, oi, out_stride); break;
    }
  }
}

// Scores of NH heads (rows q + i * qs) against a block of nv <= 16 keys already transposed into T (T + 16 * c:
// dimension c of the 16 keys): per lane the sum of attention_scores_ref.
template <int NH>
inline void scores_from_tile(const float* q, int qs, const float* T, int hd, int nv, __m512 vscale, float* s,
                             int64_t ss) {
  __m512 acc[NH];
  for (int i = 0; i < NH; ++i) acc[i] = _mm512_setzero_ps();
  for (int c = 0; c < hd; ++c) {
    const __m512 col = _mm512_loadu_ps(T + 16 * c);
    for (int i = 0; i < NH; ++i) {
      __m512 p = _mm512_mul_ps(_mm512_set1_ps(q[(int64_t)i * qs + c]), col);
      asm("" : "+v"(p));
      acc[i] = _mm512_add_ps(acc[i], p);
    }
  }
  const __mmask16 m = (__mmask16)((1u << nv) - 1);
  for (int i = 0; i < NH; ++i) _mm512_mask_storeu_ps(s + i * ss, m, _mm512_mul_ps(acc[i], vscale));
}

void scores_from_tile_heads(const float* q, int qs, int nh, const float* T, int hd, int nv, __m512 vscale, float* s,
                            int64_t ss) {
  for (int i0 = 0; i0 < nh; i0 += 4) {
    const float* qi = q + (int64_t)i0 * qs;
    float* si = s + i0 * ss;
    switch (std::min(4, nh - i0)) {
      case 1: scores_from_tile<1>(qi, qs, T, hd, nv, vscale, si, ss); break;
      case 2: scores_from_tile<2>(qi, qs, T, hd, nv, vscale, si, ss); break;
      case 3: scores_from_tile<3>(qi, qs, T, hd, nv, vscale, si, ss); break;
      default: scores_from_tile<4>(qi, qs, T, hd, nv, vscale, si, ss); break;
    }
  }
}

// Keys j .. j+nv-1 (nv <= 16) of one kv head, all hd dimensions, transposed into T (16 * hd floats).
void transpose_block(const float* kj, int64_t ld, int hd, int nv, float* T) {
  __m512 col[8];
  for (int c0 = 0; c0 < hd; c0 += 8) {
    if (nv == 16)
      transpose16x8<false>(kj + c0, ld, 16, col);
    else
      transpose16x8<true>(kj + c0, ld, nv, col);
    for (int m = 0; m < 8; ++m) _mm512_storeu_ps(T + 16 * (c0 + m), col[m]);
  }
}

// One kv head g of attention_decode_shared: buf holds off[G] scores, a 16 x hd key block and G x group x hd sums.
void decode_shared_head(const DecodeRow* rows, int G, int kv_stride, int P, int g, int hd, int group, float scale,
                        const int64_t* off, float* buf) {
  const int64_t ld = kv_stride;
  constexpr int kVBlock = 32;  // value rows of the prefix per pass over the sequences (8 KB at hd 64)
  float* S = buf;
  float* T = S + off[G];
  float* A = T + 16 * hd;  // row r's group sums at A + r * group * hd
  const __m512 vscale = _mm512_set1_ps(scale);
  // Scores of the prefix keys [0, P): each block of 16 keys transposed once (from row 0's cache: every
  // row's holds the same keys there) and used by every row's query heads.
  const float* k0 = rows[0].k + (int64_t)g * hd;
  for (int j = 0; j < P; j += 16) {
    const int nv = std::min(16, P - j);
    if (j + 32 < P)
      for (int r2 = j + 32; r2 < std::min(P, j + 48); ++r2)
        for (int c = 0; c < hd; c += 16) _mm_prefetch((const char*)(k0 + r2 * ld + c), _MM_HINT_T0);
    attn_avx512::transpose_block(k0 + (int64_t)j * ld, ld, hd, nv, T);
    for (int r = 0; r < G; ++r) {
      const int len = rows[r].pos + 1;
      attn_avx512::scores_from_tile_heads(rows[r].q + (int64_t)g * group * hd, hd, group, T, hd, nv, vscale,
                                          S + off[r] + j, len);
    }
  }
  // Each row's own keys [P, pos], then its softmax.
  for (int r = 0; r < G; ++r) {
    const int len = rows[r].pos + 1;
    attn_avx512::scores_heads(rows[r].q + (int64_t)g * group * hd, hd, group, rows[r].k + (int64_t)g * hd,
                              kv_stride, hd, P, len, scale, S + off[r], len);
    softmax_rows(S + off[r], len, group, len);
  }
  // The weighted sums over the prefix values, a block of kVBlock value rows (from row 0's cache) at a time
  // for every row (the block stays in the L1 cache); each sum carried on from the previous block.
  const float* v0 = rows[0].v + (int64_t)g * hd;
  for (int j = 0; j < P; j += kVBlock) {
    const int je = std::min(P, j + kVBlock);
    for (int r2 = je; r2 < std::min(P, je + kVBlock); ++r2)  // the next block, while this one is used G times
      for (int c = 0; c < hd; c += 16) _mm_prefetch((const char*)(v0 + r2 * ld + c), _MM_HINT_T0);
    for (int r = 0; r < G; ++r) {
      float* Ar = A + (int64_t)r * group * hd;
      const int len = rows[r].pos + 1;
      attn_avx512::weighted_sum_heads(S + off[r], len, group, v0, kv_stride, hd, j, je, Ar, hd,
                                      j == 0 ? nullptr : Ar, hd);
    }
  }
  // Then each row's own values [P, pos], into its output.
  for (int r = 0; r < G; ++r) {
    const int len = rows[r].pos + 1;
    float* Ar = A + (int64_t)r * group * hd;
    attn_avx512::weighted_sum_heads(S + off[r], len, group, rows[r].v + (int64_t)g * hd, kv_stride, hd, P,
                                    len, rows[r].out + (int64_t)g * group * hd, hd, Ar, hd);
  }
}

}  // namespace attn_avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
#else
void attention_scores(const float* q, const float* k, int kv_stride, int hd, int lo, int len, float scale,
                      float* s) {
  attention_scores_ref(q, k, kv_stride, hd, lo, len, scale, s);
}
void attention_weighted_sum(const float* p, const float* v, int kv_stride, int hd, int lo, int len, float* out) {
  attention_weighted_sum_ref(p, v, kv_stride, hd, lo, len, out);
}
#endif

void attention_scores_heads_isa(const float* q, int q_head_stride, int nh, const float* k, int kv_stride, int hd,
                                int lo, int len, float scale, float* s, int64_t s_stride, KernelIsa isa) {
#if defined(__AVX2__) && defined(__FMA__)
  if (isa == KernelIsa::Avx512 && hd % 8 == 0)
    return attn_avx512::scores_heads(q, q_head_stride, nh, k, kv_stride, hd, lo, len, scale, s, s_stride);
  if (isa != KernelIsa::Ref)
    return scores_heads_avx2(q, q_head_stride, nh, k, kv_stride, hd, lo, len, scale, s, s_stride);
#endif
  for (int i = 0; i < nh; ++i)
    attention_scores_ref(q + (int64_t)i * q_head_stride, k, kv_stride, hd, lo, len, scale, s + i * s_stride);
}

void attention_scores_heads(const float* q, int q_head_stride, int nh, const float* k, int kv_stride, int hd, int lo,
                            int len, float scale, float* s, int64_t s_stride) {
  attention_scores_heads_isa(q, q_head_stride, nh, k, kv_stride, hd, lo, len, scale, s, s_stride, kernel_isa());
}

void attention_weighted_sum_heads_isa(const float* p, int64_t p_stride, int nh, const float* v, int kv_stride, int hd,
                                      int lo, int len, float* out, int64_t out_stride, KernelIsa isa) {
#if defined(__AVX2__) && defined(__FMA__)
  if (isa == KernelIsa::Avx512 && hd % 16 == 0)
    return attn_avx512::weighted_sum_heads(p, p_stride, nh, v, kv_stride, hd, lo, len, out, out_stride);
#endif
  for (int i = 0; i < nh; ++i) {
    if (isa == KernelIsa::Ref)
      attention_weighted_sum_ref(p + i * p_stride, v, kv_stride, hd, lo, len, out + i * out_stride);
    else
      attention_weighted_sum(p + i * p_stride, v, kv_stride, hd, lo, len, out + i * out_stride);
  }
}

void attention_weighted_sum_heads(const float* p, int64_t p_stride, int nh, const float* v, int kv_stride, int hd,
                                  int lo, int len, float* out, int64_t out_stride) {
  attention_weighted_sum_heads_isa(p, p_stride, nh, v, kv_stride, hd, lo, len, out, out_stride, kernel_isa());
}

namespace {
// One decode row's kv head g: the query heads of group g (q: the row's n_heads * head_dim floats) against keys
// and values [first visible, pos] of a cache (k, v at position 0, stride kv_stride), into out (the row's
// n_heads * head_dim floats). scores: the calling thread's buffer.
void decode_kv_head(const AttentionShape& s, const float* q, const float* k, const float* v, int kv_stride, int p,
                    int g, float* out, std::vector<float>& scores) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const float scale = score_scale(s);
  const int lo = first_visible(s, p), len = p + 1;  // visible keys [lo, len)
  if ((int64_t)scores.size() < (int64_t)group * len) scores.resize((int64_t)group * len);
  float* S = scores.data();
  attention_scores_heads(q + (int64_t)g * group * hd, hd, group, k + (int64_t)g * hd, kv_stride, hd, lo, len, scale,
                         S, len);
  softmax_rows(S + lo, len - lo, group, len);
  attention_weighted_sum_heads(S, len, group, v + (int64_t)g * hd, kv_stride, hd, lo, len,
                               out + (int64_t)g * group * hd, hd);
}
}  // namespace

void attention_decode_rows(const AttentionShape& s, const DecodeRow* rows, int G, int kv_stride) {
  const int tasks = G * s.n_kv_heads;
#pragma omp parallel if (decode_work(s, rows, G) > (1 << 18))
  {
    std::vector<float> scores;  // this thread's, for this call
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < tasks; ++t) {
      const DecodeRow& d = rows[t / s.n_kv_heads];
      decode_kv_head(s, d.q, d.k, d.v, kv_stride, d.pos, t % s.n_kv_heads, d.out, scores);
    }
  }
}

void attention(const AttentionShape& s, const float* q, const float* k, const float* v, int kv_stride, int pos0,
               int n, float* out) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const int q_stride = s.n_heads * hd;
  const float scale = score_scale(s);
  const int n_blocks = (n + kBlock - 1) / kBlock;
  const int n_tasks = s.n_heads * n_blocks;
  auto first_key = [&s](int p) { return first_visible(s, p); };

  // Threads only pay off when there is enough work (their start-up costs microseconds).
  const int64_t work = (int64_t)s.n_heads * n * (pos0 + n) * hd;
  if (n <= 2) {
    // Decode (one or two new rows): one task per kv head, whose query heads share each transposed key tile
    // (attention_scores_heads); per head the same arithmetic as one head at a time.
#pragma omp parallel if (work > (1 << 18))
    {
      std::vector<float> scores;  // this thread's, for this call (grown to its largest task, freed on return)
#pragma omp for schedule(dynamic, 1)
      for (int g = 0; g < s.n_kv_heads; ++g)
        for (int r = 0; r < n; ++r)
          decode_kv_head(s, q + (int64_t)r * q_stride, k, v, kv_stride, pos0 + r, g, out + (int64_t)r * q_stride,
                         scores);
    }
    return;
  }
#pragma omp parallel if (work > (1 << 18))
  {
    std::vector<float> scores;  // this thread's, for this call (grown to its largest task, freed on return)
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < n_tasks; ++t) {
      const int h = t / n_blocks, blk = t % n_blocks;
      const int i0 = blk * kBlock, i1 = std::min(n, i0 + kBlock);
      const int rows = i1 - i0;
      const int kb = first_key(pos0 + i0);  // first key any row of the block sees
      const int L = pos0 + i1 - kb;          // keys kb .. pos0+i1-1: those needed by the block's rows
      const float* kh = k + (int64_t)(h / group) * hd + (int64_t)kb * kv_stride;
      const float* vh = v + (int64_t)(h / group) * hd + (int64_t)kb * kv_stride;
      const float* qh = q + (int64_t)i0 * q_stride + (int64_t)h * hd;
      float* oh = out + (int64_t)i0 * q_stride + (int64_t)h * hd;
      if ((int64_t)scores.size() < (int64_t)rows * L) scores.resize((int64_t)rows * L);
      float* S = scores.data();
      if (rows <= 2) {
        for (int r = 0; r < rows; ++r) {
          const int p = pos0 + i0 + r;
          const int lo = first_key(p) - kb, len = p + 1 - kb;  // visible columns [lo, len)
          const float* qr = qh + (int64_t)r * q_stride;
          float* sr = S + (int64_t)r * L;
          attention_scores(qr, kh, kv_stride, hd, lo, len, scale, sr);
          softmax(sr + lo, len - lo);
          attention_weighted_sum(sr, vh, kv_stride, hd, lo, len, oh + (int64_t)r * q_stride);
        }
        continue;
      }
      // S = scale * Q_blk K^T : [rows x L]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, L, hd, scale, qh, q_stride, kh, kv_stride, 0.0f,
                  S, L);
      for (int r = 0; r < rows; ++r) {
        const int p = pos0 + i0 + r;
        const int lo = first_key(p) - kb, len = p + 1 - kb;  // causal (and window): keys kb+lo .. p
        float* sr = S + (int64_t)r * L;
        for (int j = 0; j < lo; ++j) sr[j] = 0.0f;
        softmax(sr + lo, len - lo);
        for (int j = len; j < L; ++j) sr[j] = 0.0f;
      }
      // O_blk = S V : [rows x hd]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, L, 1.0f, S, L, vh, kv_stride, 0.0f, oh,
                  q_stride);
    }
  }
}

void attention_decode_shared(const AttentionShape& s, const DecodeRow* rows, int G, int kv_stride, int P) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  bool grouped = G >= 2 && P > 0 && s.window == 0 && hd % 16 == 0 && kernel_isa() == KernelIsa::Avx512;
  for (int r = 0; r < G && grouped; ++r) grouped = rows[r].pos >= P;
#if defined(__AVX2__) && defined(__FMA__)
  if (grouped) {
    const float scale = score_scale(s);
    std::vector<int64_t> off(G + 1, 0);  // row r's scores at off[r]: group rows of pos + 1 keys
    for (int r = 0; r < G; ++r) off[r + 1] = off[r] + (int64_t)group * (rows[r].pos + 1);
#pragma omp parallel if (decode_work(s, rows, G) > (1 << 18))
    {
      std::vector<float> buf;  // this thread's: scores, the transposed key block, the sums over the prefix
#pragma omp for schedule(dynamic, 1)
      for (int g = 0; g < s.n_kv_heads; ++g) {
        buf.resize(off[G] + 16 * hd + (int64_t)G * group * hd);
        attn_avx512::decode_shared_head(rows, G, kv_stride, P, g, hd, group, scale, off.data(), buf.data());
      }
    }
    return;
  }
#endif
  attention_decode_rows(s, rows, G, kv_stride);
}

}  // namespace ctrust

namespace ctrust {

void attention_masked(const AttentionShape& s, const float* q, const float* k, const float* v, int kv_stride,
                      int n_past, int n, const unsigned char* mask, float* out, const int* pos) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const int q_stride = s.n_heads * hd;
  const float scale = score_scale(s);
  const int window = pos ? s.window : 0;
  // Within the window: key position kp is visible from a query at position qp (0 = no window).
  auto near = [window](int qp, int kp) { return window <= 0 || qp - kp < window; };
  const int n_blocks = (n + kBlock - 1) / kBlock;
  const int n_tasks = s.n_heads * n_blocks;
  const int64_t work = (int64_t)s.n_heads * n * (n_past + n) * hd;
#pragma omp parallel if (work > (1 << 18))
  {
    std::vector<float> scores;  // this thread's, for this call (grown to its largest task, freed on return)
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < n_tasks; ++t) {
      const int h = t / n_blocks, blk = t % n_blocks;
      const int i0 = blk * kBlock, i1 = std::min(n, i0 + kBlock);
      const int rows = i1 - i0;
      const float* kh = k + (int64_t)(h / group) * hd;
      const float* vh = v + (int64_t)(h / group) * hd;
      const float* qh = q + (int64_t)i0 * q_stride + (int64_t)h * hd;
      float* oh = out + (int64_t)i0 * q_stride + (int64_t)h * hd;
      // New keys before jmin are hidden from every row of the block (other items / other branches of a
      // block-diagonal mask): the scores skip them. Columns: [0, n_past) cached, then new keys jmin .. i1-1.
      int jmin = i1;
      for (int i = i0; i < i1; ++i) {
        const unsigned char* mr = mask + (int64_t)i * n;
        for (int j = 0; j < jmin && j <= i; ++j)
          if (mr[j]) {
            jmin = j;
            break;
          }
      }
      const int n_new = i1 - jmin;  // >= 1: the diagonal is visible
      const int W = n_past + n_new;
      if ((int64_t)scores.size() < (int64_t)rows * W) scores.resize((int64_t)rows * W);
      float* S = scores.data();
      const float* k_new = kh + (int64_t)(n_past + jmin) * kv_stride;
      const float* v_new = vh + (int64_t)(n_past + jmin) * kv_stride;
      if (n_past > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_past, hd, scale, qh, q_stride, kh, kv_stride,
                    0.0f, S, W);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_new, hd, scale, qh, q_stride, k_new, kv_stride,
                  0.0f, S + n_past, W);
      for (int r = 0; r < rows; ++r) {
        const int i = i0 + r;
        const unsigned char* mr = mask + (int64_t)i * n;
        float* sr = S + (int64_t)r * W;
        // softmax over the visible keys (sum in double, as softmax() does); hidden keys get weight 0
        const int qp = window > 0 ? pos[i] : 0;
        float mx = -INFINITY;
        for (int j = 0; j < n_past; ++j)
          if (near(qp, j)) mx = std::max(mx, sr[j]);
        for (int j = jmin; j <= i; ++j)
          if (mr[j] && (window <= 0 || near(qp, pos[j]))) mx = std::max(mx, sr[n_past + j - jmin]);
        double sum = 0.0;
        for (int j = 0; j < n_past; ++j) {
          sr[j] = near(qp, j) ? std::exp(sr[j] - mx) : 0.0f;
          sum += sr[j];
        }
        for (int j = jmin; j < i1; ++j) {
          float& x = sr[n_past + j - jmin];
          x = (j <= i && mr[j] && (window <= 0 || near(qp, pos[j]))) ? std::exp(x - mx) : 0.0f;
          sum += x;
        }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < W; ++j) sr[j] *= inv;
      }
      if (n_past > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_past, 1.0f, S, W, vh, kv_stride, 0.0f, oh,
                    q_stride);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_new, 1.0f, S + n_past, W, v_new, kv_stride,
                  n_past > 0 ? 1.0f : 0.0f, oh, q_stride);
    }
  }
}

}  // namespace ctrust
