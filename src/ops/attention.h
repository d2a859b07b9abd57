// Causal multi-head attention with grouped-query heads, over a KV cache block.
#pragma once
#include <cstdint>

#include "ops/qmatmul.h"  // KernelIsa

namespace ctrust {

struct AttentionShape {
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads; n_heads % n_kv_heads == 0, query head h uses kv head h / (n_heads/n_kv_heads)
  int head_dim = 0;
  float scale = 0.0f;  // scores are scale * q.k; 0 = 1/sqrt(head_dim)
  int window = 0;      // sliding window: a query at position p sees keys at positions p - window + 1 .. p (0 = all)
};

// Scores of one query row against the keys j = lo .. len-1 of one head: s[j] = (q . k_j) * scale, where q . k_j is
// the float sum d += q[c] * k_j[c] over c = 0 .. hd-1 in order (from d = 0, each product rounded before it is
// added: no fma), k_j = k + j * kv_stride. The one- and two-row path of attention() (decode). That is the
// arithmetic GCC 12 gave the earlier plain loop for head sizes that are multiples of 4 and >= 8 (it vectorized
// the products and added them in order), so results are unchanged for every model here (head sizes 8-256).
// attention_scores is the vectorized kernel (AVX2: eight keys at a time, one per lane, after an 8 x 8
// transpose), bit-identical to attention_scores_ref, the plain loop (its reference twin; test
// Ops.AttentionScoresKernelEqualsReference).
void attention_scores(const float* q, const float* k, int kv_stride, int hd, int lo, int len, float scale, float* s);
void attention_scores_ref(const float* q, const float* k, int kv_stride, int hd, int lo, int len, float scale,
                          float* s);
// attention_scores for the nh query heads that share one kv head (grouped-query attention): head i's query at
// q + i * q_head_stride, its scores at s + i * s_stride. Each transposed key tile serves up to four heads; per head
// bit-identical to attention_scores_ref (tests Ops.AttentionScoresKernelEqualsReference,
// Ops.AttentionHeadsKernelsEqualReference). With AVX-512 (kernel_isa()): 16 keys per register, one per lane,
// after 16 x 8 transposes (two key rows per register through transpose8's steps, then a 128-bit shuffle); the
// last block of fewer than 16 keys repeats its last row in the spare lanes and stores only the valid ones.
void attention_scores_heads(const float* q, int q_head_stride, int nh, const float* k, int kv_stride, int hd, int lo,
                            int len, float scale, float* s, int64_t s_stride);
// The weighted sum of the values j = lo .. len-1 (the same path): out[c] = fma(p[j], v_j[c], out[c]) over j in
// order from out = 0 (the earlier loop's arithmetic), v_j = v + j * kv_stride; out has hd floats. The kernel keeps
// out in registers (AVX2); bit-identical to attention_weighted_sum_ref (test
// Ops.AttentionWeightedSumKernelEqualsReference).
void attention_weighted_sum(const float* p, const float* v, int kv_stride, int hd, int lo, int len, float* out);
void attention_weighted_sum_ref(const float* p, const float* v, int kv_stride, int hd, int lo, int len, float* out);
// attention_weighted_sum for the nh query heads of one kv head: head i's weights at p + i * p_stride, its output
// at out + i * out_stride. With AVX-512 (head sizes that are multiples of 16) each value row is loaded once for up
// to four heads (their 64-dimension outputs in 16 registers); per head bit-identical to attention_weighted_sum_ref
// (test Ops.AttentionHeadsKernelsEqualReference).
void attention_weighted_sum_heads(const float* p, int64_t p_stride, int nh, const float* v, int kv_stride, int hd,
                                  int lo, int len, float* out, int64_t out_stride);
// The two grouped kernels of one ISA (Ref: the plain loops; Avx2: the 8-key / per-head kernels above; Avx512:
// 16 keys per register after 16 x 8 transposes, and the grouped weighted sum). attention() takes kernel_isa()'s.
void attention_scores_heads_isa(const float* q, int q_head_stride, int nh, const float* k, int kv_stride, int hd,
                                int lo, int len, float scale, float* s, int64_t s_stride, KernelIsa isa);
void attention_weighted_sum_heads_isa(const float* p, int64_t p_stride, int nh, const float* v, int kv_stride, int hd,
                                      int lo, int len, float* out, int64_t out_stride, KernelIsa isa);

// q: [n][n_heads*head_dim], the queries of positions pos0 .. pos0+n-1 (RoPE applied).
// k, v: [pos0+n][n_kv_heads*head_dim] (row stride kv_stride), keys/values of positions 0 .. pos0+n-1.
// out: [n][n_heads*head_dim]. Query i attends to positions 0 .. pos0+i (only the last s.window of them when
// s.window > 0), with the scale s.scale (1/sqrt(head_dim) when 0).
// Parallel over heads (OpenMP); long blocks use one sgemm per head for the scores and the weighted sum.
void attention(const AttentionShape& s, const float* q, const float* k, const float* v, int kv_stride, int pos0,
               int n, float* out);


// One decode row (a single new query) of a sequence: its query (n_heads * head_dim floats), its cache's keys and
// values from position 0 (the new row at `pos` already written), its output (n_heads * head_dim floats).
struct DecodeRow {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  int pos = 0;
  float* out = nullptr;
};
// attention(s, q, k, v, kv_stride, pos, 1, out) for each of G rows whose caches hold the same keys and values at
// positions [0, P) (copies of one prompt prefix: samples of one prompt in batched generation), with the same
// floats: with AVX-512 (head size a multiple of 16, no sliding window) the prefix's keys and values are read once
// for all rows -- each block of 16 prefix keys transposed once and used by every row's heads, each block of prefix
// values used by every row's weighted sums (carried on in order, then each row's own keys [P, pos]) -- instead of
// once per row from each copy. Otherwise attention_decode_rows. Test Ops.AttentionDecodeSharedEqualsAttention.
void attention_decode_shared(const AttentionShape& s, const DecodeRow* rows, int G, int kv_stride, int P);
// attention(s, q, k, v, kv_stride, pos, 1, out) for each of G rows (of different sequences), with the same floats:
// one parallel loop over every row's kv heads, instead of one per row over its kv heads (with 3 kv heads, as
// SmolLM2 has, one of two threads waited for a third of each row's attention, or the row ran on one thread).
void attention_decode_rows(const AttentionShape& s, const DecodeRow* rows, int G, int kv_stride);
}  // namespace ctrust

namespace ctrust {

// Attention of n new queries over n_past cached keys followed by the n new keys (k, v: [n_past+n] rows,
// stride kv_stride). Every query sees all n_past cached keys; query i sees new key j iff mask[i*n + j] != 0.
// The mask must be lower-triangular (mask[i][j] == 0 for j > i) and have mask[i][i] != 0. With the causal mask
// (mask[i][j] = j <= i) this equals attention(s, q, k, v, kv_stride, n_past, n, out). Used to score several
// continuations of one context in one batch (each continuation sees the context and its own earlier tokens).
// With s.window > 0, pos[i] gives the position of new row i (cached key j has position j), and a query also
// hides the keys whose position is s.window or more below its own (pos may be null when s.window == 0).
void attention_masked(const AttentionShape& s, const float* q, const float* k, const float* v, int kv_stride,
                      int n_past, int n, const unsigned char* mask, float* out, const int* pos = nullptr);

}  // namespace ctrust
