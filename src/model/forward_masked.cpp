#include "model/forward_masked.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "model/block.h"
#include "ops/attention.h"
#include "ops/ops.h"

namespace ctrust {

namespace {
struct MaskedScratch {
  std::vector<float> x, xb, attn, gate, up, cos_t, sin_t, cos_l, sin_l, sel;
  static float* fit(std::vector<float>& v, int64_t n) {
    if ((int64_t)v.size() < n) v.resize(n);
    return v.data();
  }
};
thread_local MaskedScratch g_masked;
}  // namespace

void forward_masked(const Model& m, KVCache& cache, const int32_t* tokens, const int32_t* pos, int n,
                    const unsigned char* mask, const int32_t* out_rows, int n_out, float* logits) {
  const ModelConfig& c = m.cfg;
  if (n <= 0) return;
  const int kvdim = c.n_kv_heads * c.head_dim, qdim = c.n_heads * c.head_dim, dim = c.dim;
  check_forward_input(m, cache, tokens, n);
  for (int i = 0; i < n; ++i) {
    if (pos[i] < 0) fail("{}: negative position {} for batch row {}", m.file.path, pos[i], i);
    if (!mask[(int64_t)i * n + i]) fail("forward_masked: row {} does not see itself", i);
    for (int j = i + 1; j < n; ++j)
      if (mask[(int64_t)i * n + j]) fail("forward_masked: row {} sees the later row {}", i, j);
  }
  for (int r = 0; r < n_out; ++r)
    if (out_rows[r] < 0 || out_rows[r] >= n) fail("forward_masked: output row {} outside the batch of {}", out_rows[r], n);

  const int n_past = cache.n_past;
  const int half = c.head_dim / 2;
  MaskedScratch& s = g_masked;
  float* x = MaskedScratch::fit(s.x, (int64_t)n * dim);
  float* xb = MaskedScratch::fit(s.xb, (int64_t)n * std::max(dim, qdim));
  float* att = MaskedScratch::fit(s.attn, (int64_t)n * qdim);
  float* gate = MaskedScratch::fit(s.gate, (int64_t)n * c.hidden_dim);
  float* up = MaskedScratch::fit(s.up, (int64_t)n * c.hidden_dim);
  float* cos_t = MaskedScratch::fit(s.cos_t, (int64_t)n * half);
  float* sin_t = MaskedScratch::fit(s.sin_t, (int64_t)n * half);

  embed_tokens(m, tokens, n, x);
  for (int i = 0; i < n; ++i)
    rope_tables(pos[i], 1, c.head_dim, c.rope_theta, c.rope_freq_scale, cos_t + (int64_t)i * half,
                sin_t + (int64_t)i * half);
  const bool local_rope = has_local_rope(c);
  float* cos_l = local_rope ? MaskedScratch::fit(s.cos_l, (int64_t)n * half) : nullptr;
  float* sin_l = local_rope ? MaskedScratch::fit(s.sin_l, (int64_t)n * half) : nullptr;
  if (local_rope)
    for (int i = 0; i < n; ++i)
      rope_tables(pos[i], 1, c.head_dim, c.rope_theta_swa, c.rope_freq_scale_swa, cos_l + (int64_t)i * half,
                  sin_l + (int64_t)i * half);
  auto lin = [n](const Linear& L, const float* in, float* out) { linear(L, in, out, n); };

  for (int l = 0; l < c.n_layers; ++l) {
    float* kc = cache.k.data() + (int64_t)l * cache.n_ctx * kvdim;
    float* vc = cache.v.data() + (int64_t)l * cache.n_ctx * kvdim;
    // As in forward(): new keys/values into the cache, q and the projections in `attn`, the heads' outputs in xb.
    const BlockBuffers bufs{.xb = xb, .q = att, .k = kc + (int64_t)n_past * kvdim, .v = vc + (int64_t)n_past * kvdim,
                            .att = xb, .proj = att, .gate = gate, .up = up, .cos_t = cos_t, .sin_t = sin_t,
                            .cos_l = cos_l, .sin_l = sin_l};
    auto attend = [&](const AttentionShape& shape, const float* q, float* out) {
      attention_masked(shape, q, kc, vc, kvdim, n_past, n, mask, out, pos);
    };
    transformer_block(m, l, x, n, bufs, lin, attend);
  }
  cache.n_past = n_past + n;

  if (!logits || n_out == 0) return;
  float* sel = MaskedScratch::fit(s.sel, (int64_t)n_out * dim);
  for (int r = 0; r < n_out; ++r)
    std::memcpy(sel + (int64_t)r * dim, x + (int64_t)out_rows[r] * dim, sizeof(float) * dim);
  rmsnorm(sel, m.output_norm, sel, n_out, dim, c.norm_eps);
  linear(m.output, sel, logits, n_out);
  finish_logits(c, logits, n_out);
}

}  // namespace ctrust
