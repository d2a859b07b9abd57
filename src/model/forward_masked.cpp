#include "model/forward_masked.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "model/block.h"
#include "ops/attention.h"
#include "ops/ops.h"

namespace ctrust {

void forward_masked(const Model& m, KVCache& cache, const int32_t* tokens, const int32_t* pos, int n,
                    const unsigned char* mask, const int32_t* out_rows, int n_out, float* logits) {
  ForwardState st;
  forward_masked(m, st, cache, tokens, pos, n, mask, out_rows, n_out, logits);
}

void forward_masked(const Model& m, ForwardState& s, KVCache& cache, const int32_t* tokens, const int32_t* pos,
                    int n, const unsigned char* mask, const int32_t* out_rows, int n_out, float* logits) {
  const ModelConfig& c = m.cfg;
  if (n <= 0) return;
  const int kvdim = c.n_kv_heads * c.head_dim, dim = c.dim;
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
  const SeqBuffers b = fit_seq_buffers(s, c, n);
  float* x = b.x;

  embed_tokens(m, tokens, n, x);
  for (int i = 0; i < n; ++i) {  // each row's own position
    rope_tables(pos[i], 1, c.head_dim, c.rope_theta, c.rope_freq_scale, b.cos_t + (int64_t)i * half,
                b.sin_t + (int64_t)i * half);
    if (b.cos_l)
      rope_tables(pos[i], 1, c.head_dim, c.rope_theta_swa, c.rope_freq_scale_swa, b.cos_l + (int64_t)i * half,
                  b.sin_l + (int64_t)i * half);
  }
  auto lin = [n](const Linear& L, const float* in, float* out) { linear(L, in, out, n); };
  for (int l = 0; l < c.n_layers; ++l) {
    const float* kc = cache.k.data() + (int64_t)l * cache.n_ctx * kvdim;
    const float* vc = cache.v.data() + (int64_t)l * cache.n_ctx * kvdim;
    auto attend = [&](const AttentionShape& shape, const float* q, float* out) {
      attention_masked(shape, q, kc, vc, kvdim, n_past, n, mask, out, pos);
    };
    transformer_block(m, l, x, n, cache_block_buffers(b, cache, l, n_past), lin, attend);
  }
  cache.n_past = n_past + n;

  if (!logits || n_out == 0) return;
  float* sel = ForwardState::fit(s.sel, (int64_t)n_out * dim);
  for (int r = 0; r < n_out; ++r)
    std::memcpy(sel + (int64_t)r * dim, x + (int64_t)out_rows[r] * dim, sizeof(float) * dim);
  rmsnorm(sel, m.output_norm, sel, n_out, dim, c.norm_eps);
  linear(m.output, sel, logits, n_out);
  finish_logits(c, logits, n_out);
}

}  // namespace ctrust
