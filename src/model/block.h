// One transformer layer, the body shared by forward(), forward_masked(), forward_batch() and the compression
// driver's block_forward(). Internal to src/: not part of the public API. The family's differences come from
// the config (filled from io/arch.h), never from its name:
//
//   h = rmsnorm(x);  q = q(h), k = k(h), v = v(h);  [qk_norm: q, k = rmsnorm per head]
//   a = o(attention(rope(q), rope(k), v))   (local layers: sliding window, local RoPE base)
//   x += [post_norms: rmsnorm](a)
//   f = down(act(gate(rmsnorm(x))) * up(rmsnorm(x)))   (act: SiLU or GELU)
//   x += [post_norms: rmsnorm](f)
//
// What differs between the callers is a parameter: how a Linear is applied to the rows (one call, or one call
// per sequence), the attention step (causal over one cache, masked, or per sequence), where each intermediate
// goes (BlockBuffers; buffers may alias as noted there), and the optional observer (calibration).
#pragma once
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "model/model.h"
#include "ops/attention.h"
#include "ops/ops.h"

namespace ctrust {

// The checks forward() and forward_masked() make before any work: the cache was made for this model, the n new
// positions fit in it, and every token id is in the vocabulary. Throws Error.
inline void check_forward_input(const Model& m, const KVCache& cache, const int32_t* tokens, int n) {
  const ModelConfig& c = m.cfg;
  const int kvdim = c.n_kv_heads * c.head_dim;
  if (cache.kv_dim != kvdim || cache.k.size() != (size_t)c.n_layers * cache.n_ctx * kvdim ||
      cache.v.size() != cache.k.size())
    fail("{}: KV cache does not fit this model (make it with make_cache)", m.file.path);
  if (cache.n_past < 0 || cache.n_past + n > cache.n_ctx)
    fail("{}: KV cache overflow: {} cached + {} new positions exceed its {} slots", m.file.path, cache.n_past, n,
         cache.n_ctx);
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c.n_vocab)
      fail("{}: token id {} at position {} is out of range [0, {})", m.file.path, tokens[i], i, c.n_vocab);
}

// x[i] = the embedding of tokens[i] (dim values), for i < n, times cfg.embed_scale (Gemma: sqrt(dim)).
inline void embed_tokens(const Model& m, const int32_t* tokens, int n, float* x) {
  const int dim = m.cfg.dim;
  if (!m.tok_embd) {  // native mode: the row dequantized, as ggml's get_rows does
    for (int i = 0; i < n; ++i) tensor_rows_f32(*m.tok_embd_t, tokens[i], 1, x + (int64_t)i * dim);
  } else {
    for (int i = 0; i < n; ++i)
      std::memcpy(x + (int64_t)i * dim, m.tok_embd + (int64_t)tokens[i] * dim, sizeof(float) * dim);
  }
  if (m.cfg.embed_scale != 1.0f) {
    const float s = m.cfg.embed_scale;
    for (int64_t i = 0; i < (int64_t)n * dim; ++i) x[i] *= s;
  }
}

// The attention of layer l: heads, scale, and the sliding window of a local layer.
inline AttentionShape layer_attention(const ModelConfig& c, int l) {
  return AttentionShape{c.n_heads, c.n_kv_heads, c.head_dim, c.attn_scale, c.is_local(l) ? c.sliding_window : 0};
}

// Whether local layers rotate with their own RoPE tables (another base or scale than the global layers).
inline bool has_local_rope(const ModelConfig& c) {
  return !c.swa_layers.empty() && (c.rope_theta_swa != c.rope_theta || c.rope_freq_scale_swa != c.rope_freq_scale);
}

// The final logits: soft-capped in place when the config has a cap (c * tanh(logits / c), as llama.cpp).
inline void finish_logits(const ModelConfig& c, float* logits, int64_t rows) {
  if (!(c.logit_softcap > 0)) return;
  const float cap = c.logit_softcap, inv = 1.0f / cap;
  for (int64_t i = 0; i < rows * c.n_vocab; ++i) logits[i] = cap * std::tanh(logits[i] * inv);
}

// Where the n rows of one layer's intermediates go. The caller owns the memory. Aliasing that is allowed
// (each buffer is dead before the next one written to the same memory): att may be xb (it is written after
// q/k/v have read xb); proj may be q or xb (written after attention has read q and o has read att).
struct BlockBuffers {
  float* xb;                    // rmsnorm output, n x dim (n x max(dim, qdim) when att aliases it)
  float* q;                     // queries, n x qdim
  float* k;                     // the new keys, n x kvdim (e.g. the cache slots of the new positions)
  float* v;                     // the new values, n x kvdim
  float* att;                   // attention output (the heads side by side), n x qdim
  float* proj;                  // output of attn_output and of ffn_down, n x dim
  float* gate;                  // n x hidden_dim, then silu(gate) * up in place
  float* up;                    // n x hidden_dim
  const float* cos_t, * sin_t;  // RoPE tables of the n rows, n x head_dim/2 each
  const float* cos_l = nullptr, * sin_l = nullptr;  // the local layers' tables (has_local_rope), else null
};

// The buffers of forward() and forward_masked() for n rows, from the caller's state: the residual stream x, the
// normed rows xb (also the heads' outputs), att (queries, then the projections), the FFN's gate and up, the RoPE
// tables (the local layers' own only when has_local_rope, else null). The new keys/values go straight into the
// cache (cache_block_buffers).
struct SeqBuffers {
  float *x, *xb, *att, *gate, *up, *cos_t, *sin_t, *cos_l, *sin_l;
};
inline SeqBuffers fit_seq_buffers(ForwardState& s, const ModelConfig& c, int64_t n) {
  const int64_t qdim = (int64_t)c.n_heads * c.head_dim, half = c.head_dim / 2;
  const bool local = has_local_rope(c);
  return SeqBuffers{.x = ForwardState::fit(s.x, n * c.dim),
                    .xb = ForwardState::fit(s.xb, n * std::max<int64_t>(c.dim, qdim)),
                    .att = ForwardState::fit(s.q, n * qdim),
                    .gate = ForwardState::fit(s.gate, n * c.hidden_dim),
                    .up = ForwardState::fit(s.up, n * c.hidden_dim),
                    .cos_t = ForwardState::fit(s.cos_t, n * half),
                    .sin_t = ForwardState::fit(s.sin_t, n * half),
                    .cos_l = local ? ForwardState::fit(s.cos_l, n * half) : nullptr,
                    .sin_l = local ? ForwardState::fit(s.sin_l, n * half) : nullptr};
}
// Layer l's BlockBuffers over b, the new keys/values written to the cache slots from `slot` on.
inline BlockBuffers cache_block_buffers(const SeqBuffers& b, KVCache& cache, int l, int slot) {
  const int64_t kvdim = cache.kv_dim;
  float* kc = cache.k.data() + (int64_t)l * cache.n_ctx * kvdim;
  float* vc = cache.v.data() + (int64_t)l * cache.n_ctx * kvdim;
  return BlockBuffers{.xb = b.xb, .q = b.att, .k = kc + slot * kvdim, .v = vc + slot * kvdim, .att = b.xb,
                      .proj = b.att, .gate = b.gate, .up = b.up, .cos_t = b.cos_t, .sin_t = b.sin_t,
                      .cos_l = b.cos_l, .sin_l = b.sin_l};
}

// x (n rows of dim) <- layer l of m applied to x.
//  lin(L, in, out):  out = in L^T (+ b) over the n rows (e.g. linear(L, in, out, n))
//  attend(shape, q, att): attention of the n queries (RoPE applied) over the keys/values, which include the n
//                    new rows in b.k / b.v (RoPE applied to k) -> att; shape = layer_attention(cfg, l) (scale,
//                    sliding window)
//  obs (may be null) sees the input of every Linear, before it runs: attn_q, attn_k, attn_v, attn_output,
//                    ffn_gate, ffn_up, ffn_down.
template <class Lin, class Attend>
inline void transformer_block(const Model& m, int l, float* x, int n, const BlockBuffers& b, Lin&& lin,
                              Attend&& attend, const LinearObserver* obs = nullptr) {
  const ModelConfig& c = m.cfg;
  const LayerWeights& L = m.layers[l];
  const int dim = c.dim, qdim = c.n_heads * c.head_dim;
  const int64_t nd = (int64_t)n * dim, nh = (int64_t)n * c.hidden_dim;

  // Attention.
  rmsnorm(x, L.attn_norm, b.xb, n, dim, c.norm_eps);
  if (obs) {
    (*obs)(l, "attn_q", b.xb, n, dim);
    (*obs)(l, "attn_k", b.xb, n, dim);
    (*obs)(l, "attn_v", b.xb, n, dim);
  }
  lin(L.wq, b.xb, b.q);
  lin(L.wk, b.xb, b.k);
  lin(L.wv, b.xb, b.v);
  if (L.q_norm) rmsnorm(b.q, L.q_norm, b.q, n * c.n_heads, c.head_dim, c.norm_eps);
  if (L.k_norm) rmsnorm(b.k, L.k_norm, b.k, n * c.n_kv_heads, c.head_dim, c.norm_eps);
  const bool local_rope = b.cos_l && c.is_local(l);
  const float* cos_t = local_rope ? b.cos_l : b.cos_t;
  const float* sin_t = local_rope ? b.sin_l : b.sin_t;
  rope(b.q, n, c.n_heads, c.head_dim, c.rope, cos_t, sin_t);
  rope(b.k, n, c.n_kv_heads, c.head_dim, c.rope, cos_t, sin_t);
  attend(layer_attention(c, l), b.q, b.att);
  if (obs) (*obs)(l, "attn_output", b.att, n, qdim);
  lin(L.wo, b.att, b.proj);
  if (L.attn_post_norm) rmsnorm(b.proj, L.attn_post_norm, b.proj, n, dim, c.norm_eps);
  for (int64_t i = 0; i < nd; ++i) x[i] += b.proj[i];

  // Feed-forward (SwiGLU or GeGLU).
  rmsnorm(x, L.ffn_norm, b.xb, n, dim, c.norm_eps);
  if (obs) {
    (*obs)(l, "ffn_gate", b.xb, n, dim);
    (*obs)(l, "ffn_up", b.xb, n, dim);
  }
  lin(L.w_gate, b.xb, b.gate);
  lin(L.w_up, b.xb, b.up);
  gated_act(c.act, b.gate, b.up, b.gate, nh);
  if (obs) (*obs)(l, "ffn_down", b.gate, n, c.hidden_dim);
  lin(L.w_down, b.gate, b.proj);
  if (L.ffn_post_norm) rmsnorm(b.proj, L.ffn_post_norm, b.proj, n, dim, c.norm_eps);
  for (int64_t i = 0; i < nd; ++i) x[i] += b.proj[i];
}

}  // namespace ctrust
