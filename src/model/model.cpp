#include "model/model.h"

#include <sys/mman.h>
#include <unistd.h>

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>

#include "base/error.h"
#include "model/block.h"
#include "ops/attention.h"
#include "ops/ops.h"

namespace ctrust {

namespace {

// Checks a tensor's ggml shape {ne0 = cols, ne1 = rows} (rows < 0: a vector of `cols`).
const Tensor& shaped(const LoadedModel& f, const std::string& name, int64_t cols, int64_t rows) {
  const Tensor& t = f.get(name);
  bool ok = rows < 0 ? (t.numel() == cols && t.cols() == cols) : (t.cols() == cols && t.rows() == rows);
  if (!ok) {
    std::string shape;
    for (size_t i = 0; i < t.ne.size(); ++i) shape += (i ? " x " : "") + std::to_string(t.ne[i]);
    if (rows < 0)
      fail("{}: tensor {} has shape [{}], the config needs [{}]", f.path, name, shape, cols);
    fail("{}: tensor {} has shape [{}], the config needs [{} x {}] (in x out)", f.path, name, shape, cols, rows);
  }
  if (!t.data && !(t.raw && rows >= 0)) fail("{}: tensor {} has no data", f.path, name);
  return t;
}

// f32 weights bind `w`; a matrix held in its storage type (native mode) binds `wq`/`wtype`.
void bind_weight(Linear& L, const Tensor& w) {
  L.w = w.data;
  L.wq = w.data ? nullptr : w.raw;
  L.wtype = w.data ? GgmlType::F32 : w.src_type;
}

void bind_linear(Linear& L, const LoadedModel& f, const std::string& base, int64_t in, int64_t out) {
  const Tensor& w = shaped(f, base + ".weight", in, out);
  bind_weight(L, w);
  L.in = (int)in;
  L.out = (int)out;
  L.b = nullptr;
  if (const Tensor* b = f.find(base + ".bias")) {
    if (b->numel() != out) fail("{}: tensor {}.bias has {} values, expected {}", f.path, base, b->numel(), out);
    L.b = b->data;
  }
}


}  // namespace

void rebind_weights(Model& m) {
  const LoadedModel& f = m.file;
  const ModelConfig& c = m.cfg;
  if (c.n_vocab <= 0 || c.dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 ||
      c.hidden_dim <= 0)
    fail("{}: config has a non-positive size (vocab {}, dim {}, layers {}, heads {}/{}, head_dim {}, ffn {})", f.path,
         c.n_vocab, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim);
  if (c.n_heads % c.n_kv_heads != 0)
    fail("{}: n_kv_heads {} does not divide n_heads {}", f.path, c.n_kv_heads, c.n_heads);
  if (c.head_dim % 2 != 0) fail("{}: head_dim {} is odd (RoPE needs pairs)", f.path, c.head_dim);
  if (c.n_ctx <= 0) fail("{}: context length {} is not positive", f.path, c.n_ctx);
  if (!c.swa_layers.empty() && (int)c.swa_layers.size() != c.n_layers)
    fail("{}: sliding-window layer flags: {} for {} layers", f.path, c.swa_layers.size(), c.n_layers);
  if (c.sliding_window < 0 || !(c.embed_scale > 0) || !(c.attn_scale >= 0) || !(c.logit_softcap >= 0) ||
      !(c.rope_theta_swa > 0) || !(c.rope_freq_scale_swa > 0))
    fail("{}: bad sliding window {} / embedding scale {} / attention scale {} / soft-cap {} / local RoPE {} x {}",
         f.path, c.sliding_window, c.embed_scale, c.attn_scale, c.logit_softcap, c.rope_theta_swa,
         c.rope_freq_scale_swa);
  if (!(c.norm_eps > 0) || !(c.rope_theta > 0) || !(c.rope_freq_scale > 0))
    fail("{}: bad norm eps {} / rope theta {} / rope freq scale {}", f.path, c.norm_eps, c.rope_theta,
         c.rope_freq_scale);
  const int64_t qdim = (int64_t)c.n_heads * c.head_dim, kvdim = (int64_t)c.n_kv_heads * c.head_dim;

  const Tensor& emb = f.get("token_embd.weight");
  if (emb.cols() != c.dim)
    fail("{}: token_embd.weight rows have {} values, the model dim is {}", f.path, emb.cols(), c.dim);
  if (emb.rows() != c.n_vocab)
    fail("{}: token_embd.weight has {} rows, the vocabulary size is {}", f.path, emb.rows(), c.n_vocab);
  if (!f.tok.tokens.empty() && (int64_t)f.tok.tokens.size() > c.n_vocab)
    fail("{}: the tokenizer has {} tokens, more than the model's {} embedding rows", f.path, f.tok.tokens.size(),
         c.n_vocab);
  if (!emb.data && !emb.raw) fail("{}: tensor token_embd.weight has no data", f.path);
  m.tok_embd = emb.data;
  m.tok_embd_t = &emb;

  std::vector<LayerWeights> old = std::move(m.layers);
  m.layers.assign(c.n_layers, LayerWeights{});
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = m.layers[l];
    const std::string p = fmt::format("blk.{}.", l);
    L.attn_norm = shaped(f, p + "attn_norm.weight", c.dim, -1).data;
    L.ffn_norm = shaped(f, p + "ffn_norm.weight", c.dim, -1).data;
    bind_linear(L.wq, f, p + "attn_q", c.dim, qdim);
    bind_linear(L.wk, f, p + "attn_k", c.dim, kvdim);
    bind_linear(L.wv, f, p + "attn_v", c.dim, kvdim);
    bind_linear(L.wo, f, p + "attn_output", qdim, c.dim);
    bind_linear(L.w_gate, f, p + "ffn_gate", c.dim, c.hidden_dim);
    bind_linear(L.w_up, f, p + "ffn_up", c.dim, c.hidden_dim);
    bind_linear(L.w_down, f, p + "ffn_down", c.hidden_dim, c.dim);
    if (c.qk_norm) {
      L.q_norm = shaped(f, p + "attn_q_norm.weight", c.head_dim, -1).data;
      L.k_norm = shaped(f, p + "attn_k_norm.weight", c.head_dim, -1).data;
    }
    if (c.post_norms) {
      L.attn_post_norm = shaped(f, p + "post_attention_norm.weight", c.dim, -1).data;
      L.ffn_post_norm = shaped(f, p + "post_ffw_norm.weight", c.dim, -1).data;
    }
    if (c.qkv_bias && (!L.wq.b || !L.wk.b || !L.wv.b))
      fail("{}: the config asks for q/k/v biases but blk.{} lacks attn_q/k/v.bias", f.path, l);
    if (l < (int)old.size()) {  // keep the inference modes a compression stage chose
      for (const BlockLinear& b : kBlockLinears) {
        (L.*b.member).mode = (old[l].*b.member).mode;
        (L.*b.member).threshold = (old[l].*b.member).threshold;
      }
    }
  }
  m.output_norm = shaped(f, "output_norm.weight", c.dim, -1).data;
  LinearMode out_mode = m.output.mode;
  float out_thr = m.output.threshold;
  if (f.find("output.weight")) {
    bind_linear(m.output, f, "output", c.dim, c.n_vocab);
  } else {
    m.output = Linear{};
    bind_weight(m.output, emb);
    m.output.in = c.dim;
    m.output.out = c.n_vocab;
  }
  m.output.mode = out_mode;
  m.output.threshold = out_thr;
}

std::unique_ptr<Model> make_model(LoadedModel lm) {
  auto m = std::make_unique<Model>();
  m->file = std::move(lm);
  m->cfg = m->file.cfg;
  rebind_weights(*m);
  apply_linear_mode_metadata(*m);
  materialize_mode_weights(*m);
  try {
    m->tok = Tokenizer(m->file.tok);
  } catch (const Error& e) {
    fail("{}: {}", m->file.path, e.what());
  }
  // Tensors that were dequantized into `owned` no longer need their source pages: drop them from memory
  // (the mapping stays valid; a later read of Tensor::raw faults the pages back in from the file).
  if (m->file.map && m->file.map->size() > 0) {
    const long page = sysconf(_SC_PAGESIZE);
    const uintptr_t base = reinterpret_cast<uintptr_t>(m->file.map->data());
    const uintptr_t end = base + m->file.map->size();
    for (const auto& [name, t] : m->file.tensors) {
      if (!t.raw || t.owned.empty()) continue;
      const uintptr_t a = reinterpret_cast<uintptr_t>(t.raw);
      if (a < base || a + t.raw_bytes > end) continue;
      const uintptr_t lo = (a + page - 1) / page * page, hi = (a + t.raw_bytes) / page * page;
      if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
    }
  }
  return m;
}

namespace {
// Every Linear of the model with its GGUF weight name.
std::vector<std::pair<std::string, Linear*>> named_linears(Model& m) {
  std::vector<std::pair<std::string, Linear*>> out;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    for (const BlockLinear& b : kBlockLinears)
      out.push_back({fmt::format("blk.{}.{}.weight", l, b.name), &(m.layers[l].*b.member)});
  }
  return out;  // the output head never has a mode: compression leaves it alone, and forward_batch relies on it
}
}  // namespace

std::vector<GgufKV> linear_mode_metadata(const Model& m) {
  std::vector<std::string> entries;
  for (auto& [name, L] : named_linears(const_cast<Model&>(m))) {
    if (L->mode == LinearMode::W8A8) entries.push_back(name + "=w8a8");
    // "llm_int8:": the weights are bitsandbytes' int8 rows (older files said "int8:" over f32 weights)
    if (L->mode == LinearMode::Int8Outlier) entries.push_back(fmt::format("{}=llm_int8:{}", name, L->threshold));
  }
  if (entries.empty()) return {};
  return {{"ctrust.linear_modes", GgufValue::str_array(entries)}};
}

void apply_linear_mode_metadata(Model& m) {
  const GgufKV* kv = nullptr;
  for (const GgufKV& x : m.file.meta)
    if (x.key == "ctrust.linear_modes") kv = &x;
  if (!kv) return;
  if (kv->value.type != GgufType::ARRAY || kv->value.elem != GgufType::STRING)
    fail("{}: ctrust.linear_modes is not an array of strings", m.file.path);
  auto lins = named_linears(m);
  for (const GgufValue& v : kv->value.arr) {
    const std::string& e = v.s;
    size_t eq = e.find('=');
    std::string name = e.substr(0, eq), mode = eq == std::string::npos ? "" : e.substr(eq + 1);
    auto it = std::find_if(lins.begin(), lins.end(), [&](const auto& p) { return p.first == name; });
    if (it == lins.end())
      fail("{}: ctrust.linear_modes names '{}', which is not a Linear of a transformer block", m.file.path, name);
    if (mode == "w8a8") {
      it->second->mode = LinearMode::W8A8;
    } else if (mode.rfind("int8:", 0) == 0) {
      fail("{}: this LLM.int8() file ('{}') was written by a ctrust that kept the weights in f32 and rounded them "
           "at inference; LLM.int8() now stores bitsandbytes' int8 rows: compress the model again",
           m.file.path, e);
    } else if (mode.rfind("llm_int8:", 0) == 0) {
      char* end = nullptr;
      float t = std::strtof(mode.c_str() + 9, &end);
      if (*end != 0 || !(t > 0)) fail("{}: ctrust.linear_modes: bad threshold in '{}'", m.file.path, e);
      it->second->mode = LinearMode::Int8Outlier;
      it->second->threshold = t;
    } else {
      fail("{}: ctrust.linear_modes: unknown mode in '{}' (w8a8 or llm_int8:THRESHOLD)", m.file.path, e);
    }
  }
}

void materialize_mode_weights(Model& m) {
  bool any = false;
  for (auto& [name, L] : named_linears(m)) {
    if (L->mode == LinearMode::F32 || L->w) continue;
    materialize_f32(m.file.tensors.at(name));
    any = true;
  }
  if (any) rebind_weights(m);
}

std::unique_ptr<Model> open_model(const std::string& path, const LoadOptions& opts) {
  return make_model(load_model(path, opts));
}

KVCache make_cache(const Model& m, int n_ctx) {
  if (n_ctx <= 0) fail("{}: cache size {} must be positive", m.file.path, n_ctx);
  KVCache c;
  c.n_ctx = n_ctx;
  c.kv_dim = m.cfg.n_kv_heads * m.cfg.head_dim;
  const size_t n = (size_t)m.cfg.n_layers * n_ctx * c.kv_dim;
  c.k.assign(n, 0.0f);
  c.v.assign(n, 0.0f);
  return c;
}

void ForwardState::reserve(const ModelConfig& c, int64_t rows) { fit_seq_buffers(*this, c, rows); }

size_t ForwardState::capacity_bytes() const {
  size_t n = 0;
  for (const std::vector<float>* b : {&x, &xb, &q, &k, &v, &att, &proj, &gate, &up, &cos_t, &sin_t, &cos_l, &sin_l, &sel})
    n += b->capacity() * sizeof(float);
  return n;
}

void ForwardState::release() {
  for (std::vector<float>* b : {&x, &xb, &q, &k, &v, &att, &proj, &gate, &up, &cos_t, &sin_t, &cos_l, &sin_l, &sel})
    std::vector<float>().swap(*b);
}

void forward(const Model& m, KVCache& cache, const int32_t* tokens, int n, float* logits, const ForwardOptions& opt) {
  ForwardState st;
  forward(m, st, cache, tokens, n, logits, opt);
}

void forward(const Model& m, ForwardState& s, KVCache& cache, const int32_t* tokens, int n, float* logits,
             const ForwardOptions& opt) {
  const ModelConfig& c = m.cfg;
  if (n <= 0) return;
  const int kvdim = c.n_kv_heads * c.head_dim, dim = c.dim;
  check_forward_input(m, cache, tokens, n);

  const int pos0 = cache.n_past;
  const SeqBuffers b = fit_seq_buffers(s, c, n);
  float* x = b.x;
  const LinearObserver* obs = opt.observer && *opt.observer ? opt.observer : nullptr;

  embed_tokens(m, tokens, n, x);
  rope_tables(pos0, n, c.head_dim, c.rope_theta, c.rope_freq_scale, b.cos_t, b.sin_t);
  if (b.cos_l) rope_tables(pos0, n, c.head_dim, c.rope_theta_swa, c.rope_freq_scale_swa, b.cos_l, b.sin_l);

  auto lin = [n](const Linear& L, const float* in, float* out) { linear(L, in, out, n); };
  for (int l = 0; l < c.n_layers; ++l) {
    const float* kc = cache.k.data() + (int64_t)l * cache.n_ctx * kvdim;
    const float* vc = cache.v.data() + (int64_t)l * cache.n_ctx * kvdim;
    auto attend = [&](const AttentionShape& shape, const float* q, float* out) {
      attention(shape, q, kc, vc, kvdim, pos0, n, out);
    };
    transformer_block(m, l, x, n, cache_block_buffers(b, cache, l, pos0), lin, attend, obs);
  }
  cache.n_past = pos0 + n;

  if (!logits) return;
  if (opt.all_logits) {
    rmsnorm(x, m.output_norm, b.xb, n, dim, c.norm_eps);
    linear(m.output, b.xb, logits, n);
    finish_logits(c, logits, n);
  } else {
    rmsnorm(x + (int64_t)(n - 1) * dim, m.output_norm, b.xb, 1, dim, c.norm_eps);
    linear(m.output, b.xb, logits, 1);
    finish_logits(c, logits, 1);
  }
}

void log_softmax_ref(float* row, int n) {
  float mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = std::max(mx, row[i]);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += std::exp((double)(row[i] - mx));
  const float lse = mx + (float)std::log(sum);
  for (int i = 0; i < n; ++i) row[i] -= lse;
}

namespace {

// e^x for x in [-700, 0] (the caller makes sure): 2^k e^r with k = round(x / ln 2), r = x - k ln 2 (Cody-Waite:
// k ln2_hi is exact for |k| < 2^21), e^r by its Taylor polynomial of degree 13 (|r| <= 0.347: truncation
// < 1e-17). Relative error a few units of 2^-53 -- not libm's exp bit for bit, so log_softmax only uses its sum
// where the rounding to float provably does not depend on the difference. Branch-free (no clamp: a select stops
// g++ 12 from vectorizing the calling loop).
inline double exp_nonpositive(double x) {
  constexpr double kShift = 0x1.8p52, kLog2e = 1.4426950408889634074, kLn2Hi = 6.93147180369123816490e-01,
                   kLn2Lo = 1.90821492927058770002e-10;
  const double t = x * kLog2e + kShift;  // k in the low bits of t
  const double kd = t - kShift;
  const double r = (x - kd * kLn2Hi) - kd * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t k = std::bit_cast<int64_t>(t) - std::bit_cast<int64_t>(kShift);
  return std::bit_cast<double>(std::bit_cast<int64_t>(p) + (k << 52));  // p in [0.7, 1.5], k >= -1010: normal
}

// The largest and smallest of row[0..n) as std::max / std::min loops from -inf / +inf find them (NaNs skipped),
// except that the sign of a zero result may differ; *nan tells whether the row has a NaN.
struct RowRange {
  float mx = -INFINITY, mn = INFINITY;
  bool nan = false;
};
RowRange row_range(const float* row, int n) {
  RowRange g;
  int i = 0;
#if defined(__AVX2__)
  // max_ps(x, acc) = x > acc ? x : acc: std::max(acc, x)'s choice lane by lane (a NaN x keeps acc); min_ps alike.
  __m256 a0 = _mm256_set1_ps(-INFINITY), a1 = a0, b0 = _mm256_set1_ps(INFINITY), b1 = b0, u = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(row + i), x1 = _mm256_loadu_ps(row + i + 8);
    a0 = _mm256_max_ps(x0, a0), a1 = _mm256_max_ps(x1, a1);
    b0 = _mm256_min_ps(x0, b0), b1 = _mm256_min_ps(x1, b1);
    u = _mm256_or_ps(u, _mm256_cmp_ps(x0, x1, _CMP_UNORD_Q));
  }
  alignas(32) float lanes[32];
  _mm256_store_ps(lanes, a0), _mm256_store_ps(lanes + 8, a1), _mm256_store_ps(lanes + 16, b0),
      _mm256_store_ps(lanes + 24, b1);
  for (int l = 0; l < 16; ++l) g.mx = std::max(g.mx, lanes[l]), g.mn = std::min(g.mn, lanes[16 + l]);
  g.nan = _mm256_movemask_ps(u) != 0;
#endif
  for (; i < n; ++i) {
    g.nan |= row[i] != row[i];
    g.mx = std::max(g.mx, row[i]);
    g.mn = std::min(g.mn, row[i]);
  }
  return g;
}

// The first index of the value m in row[0..n) (m is one of them).
int first_index_of(const float* row, int n, float m) {
  int b = 0;
#if defined(__AVX2__)
  const __m256 mv = _mm256_set1_ps(m);
  for (; b + 32 <= n; b += 32) {
    const __m256 e = _mm256_or_ps(
        _mm256_or_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + b), mv, _CMP_EQ_OQ),
                     _mm256_cmp_ps(_mm256_loadu_ps(row + b + 8), mv, _CMP_EQ_OQ)),
        _mm256_or_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + b + 16), mv, _CMP_EQ_OQ),
                     _mm256_cmp_ps(_mm256_loadu_ps(row + b + 24), mv, _CMP_EQ_OQ)));
    if (_mm256_movemask_ps(e)) break;
  }
#endif
  for (int j = b; j < n; ++j)
    if (row[j] == m) return j;
  return 0;  // not reached
}

// log_softmax; with best != null also the index std::max_element gives on the result.
void log_softmax_impl(float* row, int n, int* best) {
  auto reference = [&] {
    log_softmax_ref(row, n);
    if (best) *best = n > 0 ? int(std::max_element(row, row + n) - row) : 0;
  };
  const RowRange g = row_range(row, n);
  // The plain loop for what the fast path does not cover: NaNs, infinities, a zero maximum (its sign), a range
  // wider than exp_nonpositive's.
  if (n <= 0 || g.nan || g.mx == 0.0f || !std::isfinite(g.mx) || !std::isfinite(g.mn) ||
      !((double)(g.mn - g.mx) >= -700.0))
    return reference();
  const float mx = g.mx;
  // sum_i e^(row_i - mx) with a vectorized exp and sum: within a relative 4 n 2^-53 + 1e-14 of log_softmax_ref's
  // sum (each sum of the n positive terms is within (n - 1) 2^-53 of the exact one, the exps within 1e-15). log is
  // monotonic, so ref's log(sum) lies within `tol` of lg (plus log's own rounding); where float(lg - tol) and
  // float(lg + tol) agree, ref's float(log(sum)) is that float. Otherwise (rows near a rounding boundary, and a
  // very peaked row whose log(sum) is tiny) the reference computes it.
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; ++j) sum += exp_nonpositive((double)(row[j] - mx));
  const double lg = std::log(sum);
  const double tol = 4.0 * n * 0x1p-53 + 1e-14 + 1e-15 * std::fabs(lg);
  if (!((float)(lg - tol) == (float)(lg + tol))) return reference();
  const float lse = mx + (float)lg;
  for (int j = 0; j < n; ++j) row[j] -= lse;
  // Rounding is monotonic: the largest result is mx - lse, and max_element gives its first occurrence.
  if (best) *best = first_index_of(row, n, mx - lse);
}

}  // namespace

void log_softmax(float* row, int n) { log_softmax_impl(row, n, nullptr); }

int log_softmax_argmax(float* row, int n) {
  int best = 0;
  log_softmax_impl(row, n, &best);
  return best;
}

std::vector<float> token_logprobs(const Model& m, std::span<const int32_t> tokens) {
  const int n = (int)tokens.size();
  std::vector<float> out;
  if (n < 2) return out;
  out.reserve(n - 1);
  const int V = m.cfg.n_vocab;
  const int chunk = std::min(m.cfg.n_ctx, n);
  constexpr int kBatch = 128;  // logits of at most this many positions are held at once
  KVCache cache = make_cache(m, chunk);
  ForwardState st;
  std::vector<float> logits((size_t)std::min(kBatch, chunk) * V);
  std::vector<float> carry;  // last row of the previous chunk: predicts the first token of the next chunk
  for (int c0 = 0; c0 < n; c0 += chunk) {
    const int c1 = std::min(n, c0 + chunk);
    cache.n_past = 0;
    for (int b0 = c0; b0 < c1; b0 += kBatch) {
      const int b1 = std::min(c1, b0 + kBatch);
      forward(m, st, cache, tokens.data() + b0, b1 - b0, logits.data());
      for (int i = b0; i < b1; ++i) {
        float* row = logits.data() + (size_t)(i - b0) * V;
        if (i == b0 && !carry.empty()) {  // position i-1 was the last of the previous batch
          log_softmax(carry.data(), V);
          out.push_back(carry[tokens[i]]);
        }
        if (i + 1 < b1) {
          log_softmax(row, V);
          out.push_back(row[tokens[i + 1]]);
        }
      }
      carry.assign(logits.data() + (size_t)(b1 - 1 - b0) * V, logits.data() + (size_t)(b1 - b0) * V);
    }
  }
  return out;
}

int32_t sample_token(float* logits, int n_vocab, float temperature, float top_p, std::mt19937_64& rng) {
  if (temperature <= 0.0f) {
    return (int32_t)(std::max_element(logits, logits + n_vocab) - logits);  // first maximum
  }
  for (int i = 0; i < n_vocab; ++i) logits[i] /= temperature;
  softmax(logits, n_vocab);
  std::vector<int32_t> order(n_vocab);
  std::iota(order.begin(), order.end(), 0);
  int kept = n_vocab;
  double mass = 1.0;
  if (top_p < 1.0f) {
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    double cum = 0.0;
    for (kept = 0; kept < n_vocab;) {
      cum += logits[order[kept++]];
      if (cum >= top_p) break;
    }
    mass = cum;
  }
  const double u = (double)(rng() >> 11) * 0x1.0p-53 * mass;
  double cum = 0.0;
  for (int i = 0; i < kept; ++i) {
    cum += logits[order[i]];
    if (cum > u) return order[i];
  }
  return order[kept - 1];  // rounding left u beyond the last cumulative value
}

size_t longest_stop_string(const std::vector<std::string>& stops) {
  size_t n = 0;
  for (const auto& s : stops) n = std::max(n, s.size());
  return n;
}

bool new_stop_string(const std::string& text, size_t piece, size_t longest, const std::vector<std::string>& stops) {
  const size_t from = text.size() > piece + longest ? text.size() - piece - longest : 0;
  for (const auto& s : stops)
    if (!s.empty() && text.find(s, from) != std::string::npos) return true;
  return false;
}

std::string cut_at_stop_strings(std::string text, const std::vector<std::string>& stops) {
  for (const auto& stop : stops) {
    const size_t p = stop.empty() ? std::string::npos : text.find(stop);
    if (p != std::string::npos) text.erase(p);
  }
  return text;
}

StopStringStream::StopStringStream(std::vector<std::string> stops)
    : stops_(std::move(stops)), hold_(longest_stop_string(stops_)) {}

std::string StopStringStream::push(const std::string& piece) {
  text_ += piece;
  if (text_.size() <= shown_ + hold_) return {};
  size_t end = text_.size() - hold_;
  // A piece that runs past a stop string must not show its start: stop before the first one not yet shown.
  for (const auto& stop : stops_) {
    if (stop.empty()) continue;
    const size_t p = text_.find(stop, shown_ + 1 > stop.size() ? shown_ + 1 - stop.size() : 0);
    if (p != std::string::npos) end = std::min(end, std::max(p, shown_));
  }
  std::string s = text_.substr(shown_, end - shown_);
  shown_ = end;
  return s;
}

std::string StopStringStream::finish() {
  text_ = cut_at_stop_strings(std::move(text_), stops_);
  std::string s = shown_ < text_.size() ? text_.substr(shown_) : std::string();
  shown_ = std::max(shown_, text_.size());
  return s;
}

// Generation: prefill the prompt (last logits only), then repeat: pick a token with sample_token (rng =
// std::mt19937_64(seed)); if it is EOS and stop_at_eos, stop (EOS is not returned nor passed to on_token);
// otherwise append it to the result, call on_token (false stops), stop if the text of the generated pieces
// now contains a stop string (the token completing it is kept), stop at max_tokens or when the model's
// context is full; else decode that one token with the cache (GEMV path) for the next logits.
std::vector<int32_t> generate(const Model& m, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                              const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) fail("{}: generate needs a non-empty prompt (at least BOS)", m.file.path);
  if ((int)prompt.size() >= m.cfg.n_ctx)
    fail("{}: prompt of {} tokens leaves no room in the {}-token context", m.file.path, prompt.size(), m.cfg.n_ctx);
  std::vector<int32_t> out;
  if (opt.max_tokens <= 0) return out;
  const int n_ctx = (int)std::min<int64_t>(m.cfg.n_ctx, (int64_t)prompt.size() + opt.max_tokens);
  KVCache cache = make_cache(m, n_ctx);
  ForwardState st;  // the prompt's rows, then one row per step
  std::vector<float> logits(m.cfg.n_vocab);
  ForwardOptions fo;
  fo.all_logits = false;
  forward(m, st, cache, prompt.data(), (int)prompt.size(), logits.data(), fo);
  std::mt19937_64 rng(opt.seed);
  std::string text;
  const size_t longest_stop = longest_stop_string(opt.stop_strings);
  for (;;) {
    const int32_t t = sample_token(logits.data(), m.cfg.n_vocab, opt.temperature, opt.top_p, rng);
    if (opt.stop_at_eos && t == m.tok.eos()) break;
    out.push_back(t);
    if (on_token && !on_token(t)) break;
    if (longest_stop > 0) {
      const std::string p = m.tok.piece(t);
      text += p;
      if (new_stop_string(text, p.size(), longest_stop, opt.stop_strings)) break;
    }
    if ((int)out.size() >= opt.max_tokens || cache.n_past >= cache.n_ctx) break;
    forward(m, st, cache, &t, 1, logits.data(), fo);
  }
  return out;
}

}  // namespace ctrust
