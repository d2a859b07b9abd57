#include "eval/kld.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "base/error.h"
#include "base/mmap.h"
#include "eval/metrics.h"
#include "model/perplexity.h"

namespace ctrust {

// ---------------------------------------------------------------------------------------------------
// Per-token statistics

void KldAccumulator::add(const float* lb, const float* lq, int n_vocab, int32_t target) {
  if (target < 0 || target >= n_vocab) fail("kl: target token {} out of range", target);
  double k = 0;
  int top_b = 0, top_q = 0;
  for (int i = 0; i < n_vocab; i++) {
    const double a = lb[i];
    k += std::exp(a) * (a - double(lq[i]));
    if (lb[i] > lb[top_b]) top_b = i;
    if (lq[i] > lq[top_q]) top_q = i;
  }
  kl.push_back(std::max(0.0, k));
  dp.push_back(std::exp(double(lq[target])) - std::exp(double(lb[target])));
  nll_base.push_back(-double(lb[target]));
  nll_b.push_back(-double(lq[target]));
  this->target.push_back(target);
  same.push_back(top_b == top_q);
  same_top += top_b == top_q;
}

double kl_topk_token(const int32_t* ids, const float* logp, int k, float logp_rest, const float* lq, int n_vocab,
                     std::vector<uint8_t>& mark) {
  if (mark.size() < size_t(n_vocab)) mark.assign(size_t(n_vocab), 0);
  double s = 0;
  for (int j = 0; j < k; j++) {
    if (ids[j] < 0 || ids[j] >= n_vocab) fail("kl: top-k token id {} out of range", ids[j]);
    const double a = logp[j];
    s += std::exp(a) * (a - double(lq[ids[j]]));
    mark[size_t(ids[j])] = 1;
  }
  if (std::isfinite(logp_rest)) {
    double rest_q = 0;
    for (int i = 0; i < n_vocab; i++)
      if (!mark[size_t(i)]) rest_q += std::exp(double(lq[i]));
    const double lr = logp_rest;
    s += std::exp(lr) * (lr - std::log(std::max(rest_q, 1e-300)));
  }
  for (int j = 0; j < k; j++) mark[size_t(ids[j])] = 0;
  return std::max(0.0, s);
}

void KldAccumulator::add_topk(const int32_t* ids, const float* logp, int k, float logp_rest, float logp_target,
                              const float* lq, int n_vocab, int32_t target) {
  if (target < 0 || target >= n_vocab) fail("kl: target token {} out of range", target);
  if (k < 1) fail("kl: top-k baseline with k = {}", k);
  kl.push_back(kl_topk_token(ids, logp, k, logp_rest, lq, n_vocab, mark));
  int top_q = 0;
  for (int i = 1; i < n_vocab; i++)
    if (lq[i] > lq[top_q]) top_q = i;
  dp.push_back(std::exp(double(lq[target])) - std::exp(double(logp_target)));
  nll_base.push_back(-double(logp_target));
  nll_b.push_back(-double(lq[target]));
  this->target.push_back(target);
  same.push_back(ids[0] == top_q);
  same_top += ids[0] == top_q;
}

static void mean_stderr(const std::vector<double>& v, double& mean, double& se) {
  const double n = double(v.size());
  double s = 0, s2 = 0;
  for (double x : v) s += x, s2 += x * x;
  mean = s / n;
  const double var = n > 1 ? std::max(0.0, (s2 / n - mean * mean) * n / (n - 1)) : 0.0;
  se = n > 1 ? std::sqrt(var / n) : 0.0;
}

template <size_t N>
static std::vector<double> percentiles(std::vector<double> v, const double (&qs)[N]) {
  std::sort(v.begin(), v.end());
  std::vector<double> out;
  for (double q : qs) out.push_back(percentile_sorted(v, q));
  return out;
}

KldStats KldAccumulator::finish() const {
  KldStats s;
  s.n_tokens = int64_t(kl.size());
  if (kl.empty()) fail("kl: no tokens were scored");
  const double n = double(kl.size());
  mean_stderr(kl, s.kl_mean, s.kl_stderr);
  mean_stderr(dp, s.dp_mean, s.dp_stderr);
  double r2 = 0;
  for (double x : dp) r2 += x * x;
  s.dp_rms = std::sqrt(r2 / n);
  s.kl_pct = percentiles(kl, kKldPercentiles);
  s.dp_pct = percentiles(dp, kDpPercentiles);
  const double p = double(same_top) / n;
  s.same_top = p;
  s.same_top_stderr = n > 1 ? std::sqrt(p * (1 - p) / (n - 1)) : 0.0;
  double mb, mq, seb, seq;
  mean_stderr(nll_base, mb, seb);
  mean_stderr(nll_b, mq, seq);
  s.ppl_base = std::exp(mb);
  s.ppl_b = std::exp(mq);
  s.ppl_base_stderr = s.ppl_base * seb;
  s.ppl_b_stderr = s.ppl_b * seq;
  std::vector<double> d(kl.size());
  for (size_t i = 0; i < d.size(); i++) d[i] = nll_b[i] - nll_base[i];
  mean_stderr(d, s.ln_ppl_ratio, s.ln_ppl_ratio_stderr);
  s.ppl_ratio = std::exp(s.ln_ppl_ratio);
  double cov = 0, va = 0, vb = 0;
  for (size_t i = 0; i < d.size(); i++) {
    cov += (nll_base[i] - mb) * (nll_b[i] - mq);
    va += (nll_base[i] - mb) * (nll_base[i] - mb);
    vb += (nll_b[i] - mq) * (nll_b[i] - mq);
  }
  s.cor_ln_ppl = va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : 1.0;
  if (!kl_topk.empty()) {
    if (kl_topk.size() != kl.size()) fail("kl: {} top-k values for {} tokens", kl_topk.size(), kl.size());
    double sum = 0, err = 0, emax = 0;
    for (size_t i = 0; i < kl.size(); i++) {
      sum += kl_topk[i];
      err += kl[i] - kl_topk[i];
      emax = std::max(emax, kl[i] - kl_topk[i]);
    }
    s.topk_kl_mean = sum / n;
    s.topk_err_mean = err / n;
    s.topk_err_max = emax;
    s.topk_err_rel = s.kl_mean > 0 ? s.topk_err_mean / s.kl_mean : 0.0;
  }
  s.per_token_kl = kl;
  s.per_token_target = target;
  s.per_token_nll_base = nll_base;
  s.per_token_nll_b = nll_b;
  s.per_token_same = same;
  return s;
}

nlohmann::json KldStats::to_json() const {
  auto pct = [](const std::vector<double>& v, const auto& qs) {
    nlohmann::json j = nlohmann::json::object();
    for (size_t i = 0; i < v.size() && i < std::size(qs); i++) {
      const double q = qs[i];
      const std::string name = q >= 1 ? "max" : q <= 0 ? "min" : q == 0.5 ? "median" : fmt::format("p{:g}", 100 * q);
      j[name] = v[i];
    }
    return j;
  };
  nlohmann::json j = {{"mode", mode},
                      {"n_tokens", n_tokens},
                      {"n_chunks", n_chunks},
                      {"n_ctx", n_ctx},
                      {"kl_mean", kl_mean},
                      {"kl_stderr", kl_stderr},
                      {"kl_percentiles", pct(kl_pct, kKldPercentiles)},
                      {"same_top", same_top},
                      {"same_top_stderr", same_top_stderr},
                      {"dp_mean", dp_mean},
                      {"dp_stderr", dp_stderr},
                      {"dp_rms", dp_rms},
                      {"dp_percentiles", pct(dp_pct, kDpPercentiles)},
                      {"ppl_base", ppl_base},
                      {"ppl_base_stderr", ppl_base_stderr},
                      {"ppl_b", ppl_b},
                      {"ppl_b_stderr", ppl_b_stderr},
                      {"ppl_ratio", ppl_ratio},
                      {"ln_ppl_ratio", ln_ppl_ratio},
                      {"ln_ppl_ratio_stderr", ln_ppl_ratio_stderr},
                      {"cor_ln_ppl", cor_ln_ppl}};
  if (top_k > 0) j["top_k"] = top_k;
  if (topk_kl_mean >= 0)
    j["topk"] = {{"kl_mean", topk_kl_mean}, {"err_mean", topk_err_mean}, {"err_max", topk_err_max},
                 {"err_rel", topk_err_rel}};
  return j;
}

// ---------------------------------------------------------------------------------------------------
// Chunks (llama.cpp perplexity protocol)

namespace {

struct Chunks {
  std::vector<int32_t> tokens;  // n_chunks x n_ctx, BOS placed
  int n_chunks = 0;
};

// The chunks of llama.cpp's protocol (model/perplexity.h), all at once: a saved baseline keeps them.
Chunks make_chunks(const Model& m, const std::string& text, int n_ctx, int max_chunks) {
  if (n_ctx < 4) fail("kl: context {} is too small", n_ctx);
  if (m.cfg.n_ctx > 0 && n_ctx > m.cfg.n_ctx) fail("kl: context {} exceeds the model's context {}", n_ctx, m.cfg.n_ctx);
  const std::vector<int32_t> all = perplexity_tokens(m, text);
  Chunks c;
  c.n_chunks = perplexity_chunks(all.size(), n_ctx);
  if (max_chunks >= 0) c.n_chunks = std::min(c.n_chunks, max_chunks);
  if (c.n_chunks == 0) fail("kl: text has {} tokens, fewer than one chunk of {}", all.size(), n_ctx);
  c.tokens.resize(size_t(c.n_chunks) * size_t(n_ctx));
  for (int i = 0; i < c.n_chunks; i++) perplexity_chunk(m.tok, all, n_ctx, i, c.tokens.data() + size_t(i) * size_t(n_ctx));
  return c;
}

// Log-probabilities of positions n_ctx/2 .. n_ctx-2 of one chunk (perplexity_scored(n_ctx) rows), in the runner's
// buffer (valid until its next run).
const float* chunk_logprobs(PplChunkRunner& runner, const int32_t* chunk, int n_vocab) {
  float* out = runner.run(chunk);
  for (int j = 0; j < perplexity_scored(runner.n_ctx()); j++) log_softmax(out + size_t(j) * size_t(n_vocab), n_vocab);
  return out;
}

// Top-k of one log-prob row (descending, ties by lower id) and the log of the mass outside it.
void top_k_row(const float* row, int n_vocab, int k, std::vector<int32_t>& idx, int32_t* ids, float* logp,
               float* logp_rest) {
  idx.resize(size_t(n_vocab));
  std::iota(idx.begin(), idx.end(), 0);
  auto cmp = [row](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), cmp);
  for (int j = 0; j < k; j++) ids[j] = idx[size_t(j)], logp[j] = row[idx[size_t(j)]];
  double rest = 0;
  for (size_t j = size_t(k); j < idx.size(); j++) rest += std::exp(double(row[idx[j]]));
  *logp_rest = rest > 0 ? float(std::log(rest)) : -std::numeric_limits<float>::infinity();
}

void check_pair(const Model& base, const Model& b) {
  if (base.tok.fingerprint() != b.tok.fingerprint())
    fail("kl: the two models have different tokenizers ({:016x} vs {:016x}); token-level KL needs the same vocabulary",
         base.tok.fingerprint(), b.tok.fingerprint());
  if (b.cfg.n_vocab != base.cfg.n_vocab) fail("kl: vocabulary sizes differ ({} vs {})", base.cfg.n_vocab, b.cfg.n_vocab);
}

}  // namespace

KldStats kl_divergence(const Model& base, const Model& b, const std::string& text, const KldOptions& opt) {
  check_pair(base, b);
  const int n_vocab = base.cfg.n_vocab, n_ctx = opt.n_ctx;
  if (b.cfg.n_ctx > 0 && n_ctx > b.cfg.n_ctx) fail("kl: context {} exceeds the model's context {}", n_ctx, b.cfg.n_ctx);
  if (opt.top_k < 0 || opt.top_k > n_vocab) fail("kl: top-k {} outside 1..{}", opt.top_k, n_vocab);
  const Chunks ch = make_chunks(base, text, n_ctx, opt.max_chunks);
  PplChunkRunner run_base(base, n_ctx), run_b(b, n_ctx);
  const int first = perplexity_first(n_ctx), n_out = perplexity_scored(n_ctx);
  const int k = opt.top_k;
  std::vector<int32_t> idx, ids(size_t(std::max(k, 1)));
  std::vector<float> tlp(ids.size());
  std::vector<uint8_t> mark;
  KldAccumulator acc;
  for (int c = 0; c < ch.n_chunks; c++) {
    const int32_t* chunk = ch.tokens.data() + size_t(c) * size_t(n_ctx);
    const float* lb = chunk_logprobs(run_base, chunk, n_vocab);
    const float* lq = chunk_logprobs(run_b, chunk, n_vocab);
    for (int j = 0; j < n_out; j++) {
      const float* rb = lb + size_t(j) * size_t(n_vocab);
      const float* rq = lq + size_t(j) * size_t(n_vocab);
      acc.add(rb, rq, n_vocab, chunk[first + j + 1]);
      if (k > 0) {
        float rest;
        top_k_row(rb, n_vocab, k, idx, ids.data(), tlp.data(), &rest);
        acc.kl_topk.push_back(kl_topk_token(ids.data(), tlp.data(), k, rest, rq, n_vocab, mark));
      }
    }
    if (opt.progress) opt.progress(c + 1, ch.n_chunks);
  }
  KldStats s = acc.finish();
  s.n_chunks = ch.n_chunks;
  s.n_ctx = n_ctx;
  s.top_k = k;
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Compact baseline

KldBase make_kld_base(const Model& base, const std::string& text, int top_k, const KldOptions& opt) {
  const int n_vocab = base.cfg.n_vocab, n_ctx = opt.n_ctx;
  if (top_k < 1 || top_k > n_vocab) fail("kl: top-k {} outside 1..{}", top_k, n_vocab);
  Chunks ch = make_chunks(base, text, n_ctx, opt.max_chunks);
  KldBase kb;
  kb.n_ctx = n_ctx;
  kb.n_vocab = n_vocab;
  kb.n_chunks = ch.n_chunks;
  kb.top_k = top_k;
  kb.tokenizer_fp = base.tok.fingerprint();
  kb.tokens = std::move(ch.tokens);
  const int first = perplexity_first(n_ctx), n_out = perplexity_scored(n_ctx);
  const size_t n_scored = size_t(kb.n_chunks) * size_t(n_out);
  kb.logp_target.resize(n_scored);
  kb.logp_rest.resize(n_scored);
  kb.top_id.resize(n_scored * size_t(top_k));
  kb.top_logp.resize(n_scored * size_t(top_k));
  PplChunkRunner runner(base, n_ctx);
  std::vector<int32_t> idx;
  for (int c = 0; c < kb.n_chunks; c++) {
    const int32_t* chunk = kb.tokens.data() + size_t(c) * size_t(n_ctx);
    const float* lb = chunk_logprobs(runner, chunk, n_vocab);
    for (int j = 0; j < n_out; j++) {
      const size_t t = size_t(c) * size_t(n_out) + size_t(j);
      const float* row = lb + size_t(j) * size_t(n_vocab);
      kb.logp_target[t] = row[chunk[first + j + 1]];
      top_k_row(row, n_vocab, top_k, idx, kb.top_id.data() + t * size_t(top_k), kb.top_logp.data() + t * size_t(top_k),
                &kb.logp_rest[t]);
    }
    if (opt.progress) opt.progress(c + 1, kb.n_chunks);
  }
  return kb;
}

// File: "CTKLDB01", u32 n_ctx, n_vocab, n_chunks, top_k, u64 tokenizer fingerprint, i32 tokens[n_chunks*n_ctx],
// then per scored token: f32 logp_target, f32 logp_rest, i32 ids[top_k], f32 logp[top_k]. Little-endian.
static constexpr char kKldMagic[8] = {'C', 'T', 'K', 'L', 'D', 'B', '0', '1'};

void save_kld_base(const KldBase& kb, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot create baseline file", path);
  auto put = [&out](const void* p, size_t n) { out.write(static_cast<const char*>(p), std::streamsize(n)); };
  put(kKldMagic, 8);
  const uint32_t hdr[4] = {uint32_t(kb.n_ctx), uint32_t(kb.n_vocab), uint32_t(kb.n_chunks), uint32_t(kb.top_k)};
  put(hdr, sizeof hdr);
  put(&kb.tokenizer_fp, 8);
  put(kb.tokens.data(), kb.tokens.size() * 4);
  const size_t k = size_t(kb.top_k);
  for (size_t t = 0; t < kb.logp_target.size(); t++) {
    put(&kb.logp_target[t], 4);
    put(&kb.logp_rest[t], 4);
    put(kb.top_id.data() + t * k, k * 4);
    put(kb.top_logp.data() + t * k, k * 4);
  }
  out.flush();
  if (!out) fail("{}: write failed", path);
}

KldBase load_kld_base(const std::string& path) {
  MappedFile f(path);
  const uint8_t* p = f.data();
  const size_t size = f.size();
  const size_t head = 8 + 16 + 8;
  if (size < head || std::memcmp(p, kKldMagic, 8) != 0)
    fail("{}: not a ctrust KL baseline file (made by `ctrust kld --save-base`)", path);
  uint32_t hdr[4];
  std::memcpy(hdr, p + 8, sizeof hdr);
  KldBase kb;
  std::memcpy(&kb.tokenizer_fp, p + 24, 8);
  if (hdr[0] < 4 || hdr[0] > (1u << 24) || hdr[1] < 2 || hdr[1] > (1u << 24) || hdr[2] < 1 || hdr[2] > (1u << 24) ||
      hdr[3] < 1 || hdr[3] > hdr[1])
    fail("{}: bad header (n_ctx {}, n_vocab {}, n_chunks {}, top_k {})", path, hdr[0], hdr[1], hdr[2], hdr[3]);
  kb.n_ctx = int(hdr[0]);
  kb.n_vocab = int(hdr[1]);
  kb.n_chunks = int(hdr[2]);
  kb.top_k = int(hdr[3]);
  const size_t n_tok = size_t(kb.n_chunks) * size_t(kb.n_ctx);
  const size_t n_scored = size_t(kb.n_chunks) * size_t(perplexity_scored(kb.n_ctx));
  const size_t k = size_t(kb.top_k);
  const size_t expect = head + n_tok * 4 + n_scored * (8 + 8 * k);
  if (size != expect) fail("{}: {} bytes, but its header implies {} (truncated or corrupt)", path, size, expect);
  kb.tokens.resize(n_tok);
  std::memcpy(kb.tokens.data(), p + head, n_tok * 4);
  for (int32_t t : kb.tokens)
    if (t < 0 || t >= kb.n_vocab) fail("{}: token id {} outside the vocabulary of {}", path, t, kb.n_vocab);
  kb.logp_target.resize(n_scored);
  kb.logp_rest.resize(n_scored);
  kb.top_id.resize(n_scored * k);
  kb.top_logp.resize(n_scored * k);
  const uint8_t* q = p + head + n_tok * 4;
  for (size_t t = 0; t < n_scored; t++) {
    std::memcpy(&kb.logp_target[t], q, 4);
    std::memcpy(&kb.logp_rest[t], q + 4, 4);
    std::memcpy(kb.top_id.data() + t * k, q + 8, k * 4);
    std::memcpy(kb.top_logp.data() + t * k, q + 8 + k * 4, k * 4);
    q += 8 + 8 * k;
    if (!(kb.logp_target[t] <= 0) || !(kb.logp_rest[t] <= 0))
      fail("{}: scored token {}: log-probabilities must be <= 0", path, t);
    for (size_t j = 0; j < k; j++) {
      const int32_t id = kb.top_id[t * k + j];
      const float lp = kb.top_logp[t * k + j];
      if (id < 0 || id >= kb.n_vocab) fail("{}: scored token {}: top-k id {} out of range", path, t, id);
      if (!(lp <= 0) || (j > 0 && lp > kb.top_logp[t * k + j - 1]))
        fail("{}: scored token {}: top-k log-probabilities must be <= 0 and descending", path, t);
    }
  }
  return kb;
}

KldStats kl_divergence(const KldBase& kb, const Model& b, const std::string& text, const KldOptions& opt) {
  if (b.tok.fingerprint() != kb.tokenizer_fp)
    fail("kl: the model's tokenizer ({:016x}) differs from the baseline's ({:016x}); token-level KL needs the same "
         "vocabulary", b.tok.fingerprint(), kb.tokenizer_fp);
  if (b.cfg.n_vocab != kb.n_vocab) fail("kl: vocabulary sizes differ ({} vs {})", kb.n_vocab, b.cfg.n_vocab);
  const int n_ctx = kb.n_ctx, n_vocab = kb.n_vocab;
  if (b.cfg.n_ctx > 0 && n_ctx > b.cfg.n_ctx) fail("kl: context {} exceeds the model's context {}", n_ctx, b.cfg.n_ctx);
  int n_chunks = kb.n_chunks;
  if (opt.max_chunks >= 0) n_chunks = std::min(n_chunks, opt.max_chunks);
  if (!text.empty()) {
    const Chunks ch = make_chunks(b, text, n_ctx, n_chunks);
    if (ch.n_chunks < n_chunks ||
        !std::equal(ch.tokens.begin(), ch.tokens.end(), kb.tokens.begin()))
      fail("kl: the text's tokens differ from the ones the baseline was made with");
  }
  PplChunkRunner runner(b, n_ctx);
  const int first = perplexity_first(n_ctx), n_out = perplexity_scored(n_ctx);
  const size_t k = size_t(kb.top_k);
  KldAccumulator acc;
  for (int c = 0; c < n_chunks; c++) {
    const int32_t* chunk = kb.tokens.data() + size_t(c) * size_t(n_ctx);
    const float* lq = chunk_logprobs(runner, chunk, n_vocab);
    for (int j = 0; j < n_out; j++) {
      const size_t t = size_t(c) * size_t(n_out) + size_t(j);
      acc.add_topk(kb.top_id.data() + t * k, kb.top_logp.data() + t * k, kb.top_k, kb.logp_rest[t],
                   kb.logp_target[t], lq + size_t(j) * size_t(n_vocab), n_vocab, chunk[first + j + 1]);
    }
    if (opt.progress) opt.progress(c + 1, n_chunks);
  }
  KldStats s = acc.finish();
  s.n_chunks = n_chunks;
  s.n_ctx = n_ctx;
  s.mode = "topk";
  s.top_k = kb.top_k;
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Paired comparison

KldTokens kld_tokens(const KldStats& s, const std::string& base, const std::string& model) {
  const size_t n = s.per_token_kl.size();
  if (n == 0 || s.per_token_target.size() != n || s.per_token_nll_base.size() != n || s.per_token_nll_b.size() != n ||
      s.per_token_same.size() != n)
    fail("kl: the statistics have no per-token values");
  KldTokens t;
  t.n_ctx = s.n_ctx;
  t.n_chunks = s.n_chunks;
  t.top_k = s.mode == "topk" ? s.top_k : 0;
  t.mode = s.mode;
  t.base = base;
  t.model = model;
  t.target = s.per_token_target;
  t.kl = s.per_token_kl;
  t.nll_base = s.per_token_nll_base;
  t.nll_b = s.per_token_nll_b;
  t.same = s.per_token_same;
  return t;
}

namespace {

constexpr const char* kTokensMagic = "# ctrust kld tokens v1";

// Newlines and tabs would break the line format.
std::string one_line(std::string v) {
  for (char& c : v)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return v;
}

}  // namespace

void save_kld_tokens(const KldTokens& t, const std::string& path) {
  if (t.n_chunks < 1 || t.n() % t.n_chunks != 0) fail("kl: {} tokens do not split into {} chunks", t.n(), t.n_chunks);
  std::ofstream out(path, std::ios::trunc);
  if (!out) fail("{}: cannot create tokens file", path);
  out << kTokensMagic << "\n";
  out << fmt::format("# n_ctx {}\n# n_chunks {}\n# mode {}\n# top_k {}\n# base {}\n# model {}\n", t.n_ctx, t.n_chunks,
                     t.mode, t.top_k, one_line(t.base), one_line(t.model));
  out << "chunk\ttarget\tkl\tnll_base\tnll_b\tsame_top\n";
  const int64_t per = t.n() / t.n_chunks;
  for (int64_t i = 0; i < t.n(); i++)
    out << fmt::format("{}\t{}\t{:.9g}\t{:.9g}\t{:.9g}\t{}\n", i / per, t.target[size_t(i)], t.kl[size_t(i)],
                       t.nll_base[size_t(i)], t.nll_b[size_t(i)], int(t.same[size_t(i)]));
  out.flush();
  if (!out) fail("{}: write failed", path);
}

KldTokens load_kld_tokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open tokens file", path);
  std::string line;
  if (!std::getline(in, line) || line != kTokensMagic)
    fail("{}: not a ctrust kld tokens file (made by `ctrust kld --save-tokens`)", path);
  KldTokens t;
  int64_t lineno = 1;
  auto bad = [&](const std::string& why) { fail("{}: line {}: {}", path, lineno, why); };
  auto to_int = [&](const std::string& v) {
    try {
      size_t pos = 0;
      const long long x = std::stoll(v, &pos);
      if (pos != v.size() || x < 0 || x > (1LL << 30)) bad("bad integer '" + v + "'");
      return int(x);
    } catch (const std::logic_error&) {
      bad("bad integer '" + v + "'");
    }
    return 0;
  };
  bool header = false;
  int64_t chunk_prev = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (line.empty()) continue;
    if (line[0] == '#') {
      const size_t sp = line.find(' ', 2);
      const std::string key = line.substr(2, sp == std::string::npos ? std::string::npos : sp - 2);
      const std::string val = sp == std::string::npos ? "" : line.substr(sp + 1);
      if (key == "n_ctx") t.n_ctx = to_int(val);
      else if (key == "n_chunks") t.n_chunks = to_int(val);
      else if (key == "top_k") t.top_k = to_int(val);
      else if (key == "mode") t.mode = val;
      else if (key == "base") t.base = val;
      else if (key == "model") t.model = val;
      continue;
    }
    if (!header) {
      if (line != "chunk\ttarget\tkl\tnll_base\tnll_b\tsame_top") bad("expected the header row");
      header = true;
      continue;
    }
    std::istringstream ss(line);
    std::string f[6];
    for (auto& x : f)
      if (!std::getline(ss, x, '\t')) bad("expected 6 tab-separated fields");
    std::string rest;
    if (std::getline(ss, rest)) bad("more than 6 fields");
    const int chunk = to_int(f[0]);
    if (chunk < chunk_prev || chunk > chunk_prev + 1) bad("chunks must be consecutive");
    chunk_prev = chunk;
    double v[3];
    for (int j = 0; j < 3; j++) {
      char* end = nullptr;
      v[j] = std::strtod(f[2 + j].c_str(), &end);
      if (f[2 + j].empty() || *end != '\0' || !std::isfinite(v[j]) || v[j] < 0) bad("bad value '" + f[2 + j] + "'");
    }
    if (f[5] != "0" && f[5] != "1") bad("same_top must be 0 or 1");
    t.target.push_back(to_int(f[1]));
    t.kl.push_back(v[0]);
    t.nll_base.push_back(v[1]);
    t.nll_b.push_back(v[2]);
    t.same.push_back(f[5] == "1");
  }
  if (!header || t.kl.empty()) fail("{}: no tokens", path);
  if (t.mode != "exact" && t.mode != "topk") fail("{}: mode must be exact or topk, not '{}'", path, t.mode);
  if (t.n_ctx < 4) fail("{}: bad n_ctx {}", path, t.n_ctx);
  if (t.n_chunks != chunk_prev + 1 || t.n() % t.n_chunks != 0)
    fail("{}: {} tokens in {} chunks do not match the header's n_chunks {}", path, t.n(), chunk_prev + 1, t.n_chunks);
  return t;
}

nlohmann::json PairedStat::to_json() const {
  return {{"a", a}, {"b", b}, {"delta", delta}, {"se_tokens", se_tokens}, {"se_chunks", se_chunks},
          {"ci_low", ci.low}, {"ci_high", ci.high}, {"se_bootstrap", ci.se}};
}

nlohmann::json KldPaired::to_json() const {
  return {{"n_tokens", n_tokens}, {"n_chunks", n_chunks}, {"n_ctx", n_ctx}, {"mode", mode}, {"top_k", top_k},
          {"base", base}, {"model_a", model_a}, {"model_b", model_b}, {"kl", kl.to_json()},
          {"ln_ppl_ratio", nll.to_json()}, {"ppl_ratio", std::exp(nll.delta)}, {"same_top", same_top.to_json()},
          {"kl_ratio", kl_ratio}, {"kl_ratio_ci_low", kl_ratio_ci.low}, {"kl_ratio_ci_high", kl_ratio_ci.high},
          {"b_lower", b_lower}, {"b_higher", b_higher},
          {"bootstrap", {{"unit", "chunk"}, {"resamples", boot.resamples}, {"seed", boot.seed}, {"level", boot.level}}}};
}

KldPaired kld_paired(const KldTokens& a, const KldTokens& b, const BootstrapOptions& opt) {
  if (a.n() == 0 || b.n() == 0) fail("kl paired: no tokens");
  if (a.n_ctx != b.n_ctx || a.n_chunks != b.n_chunks || a.n() != b.n())
    fail("kl paired: the runs scored different tokens ({} tokens in {} chunks of {} vs {} in {} of {})", a.n(),
         a.n_chunks, a.n_ctx, b.n(), b.n_chunks, b.n_ctx);
  if (a.mode != b.mode || a.top_k != b.top_k)
    fail("kl paired: the KLs are of different kinds ({}{} vs {}{}): compare runs against the same baseline",
         a.mode, a.mode == "topk" ? fmt::format(" k={}", a.top_k) : "", b.mode,
         b.mode == "topk" ? fmt::format(" k={}", b.top_k) : "");
  if (a.n_chunks < 1 || a.n() % a.n_chunks != 0) fail("kl paired: {} tokens do not split into {} chunks", a.n(), a.n_chunks);
  for (size_t i = 0; i < a.kl.size(); i++) {
    if (a.target[i] != b.target[i]) fail("kl paired: scored token {} differs ({} vs {}): not the same text", i, a.target[i], b.target[i]);
    if (std::abs(a.nll_base[i] - b.nll_base[i]) > 1e-4 * std::max(1.0, std::abs(a.nll_base[i])))
      fail("kl paired: token {}: the base's log-probability differs ({:.6g} vs {:.6g}): not the same base model",
           i, -a.nll_base[i], -b.nll_base[i]);
  }
  const size_t n = a.kl.size(), nc = size_t(a.n_chunks), per = n / nc;
  KldPaired r;
  r.n_tokens = int64_t(n);
  r.n_chunks = a.n_chunks;
  r.n_ctx = a.n_ctx;
  r.mode = a.mode;
  r.top_k = a.top_k;
  r.model_a = a.model;
  r.model_b = b.model;
  r.base = a.base;
  r.boot = opt;
  // Per chunk: sums of KL_A, KL_B, NLL_A, NLL_B, same_A, same_B.
  constexpr int kS = 6;
  std::vector<std::array<double, kS>> sums(nc, std::array<double, kS>{});
  for (size_t i = 0; i < n; i++) {
    auto& c = sums[i / per];
    c[0] += a.kl[i], c[1] += b.kl[i], c[2] += a.nll_b[i], c[3] += b.nll_b[i], c[4] += a.same[i], c[5] += b.same[i];
    r.b_lower += b.kl[i] < a.kl[i];
    r.b_higher += b.kl[i] > a.kl[i];
  }
  r.b_lower /= double(n);
  r.b_higher /= double(n);
  auto stat = [&](PairedStat& p, int ia, const std::vector<double>& va, const std::vector<double>& vb) {
    std::vector<double> d(n), dc(nc);
    for (size_t i = 0; i < n; i++) d[i] = vb[i] - va[i];
    for (size_t c = 0; c < nc; c++) dc[c] = (sums[c][size_t(ia + 1)] - sums[c][size_t(ia)]) / double(per);
    double m = 0, se = 0, mc = 0;
    mean_stderr(d, m, se);
    p.delta = m;
    p.se_tokens = se;
    mean_stderr(dc, mc, p.se_chunks);
    double sa = 0, sb = 0;
    for (size_t c = 0; c < nc; c++) sa += sums[c][size_t(ia)], sb += sums[c][size_t(ia + 1)];
    p.a = sa / double(n);
    p.b = sb / double(n);
  };
  stat(r.kl, 0, a.kl, b.kl);
  stat(r.nll, 2, a.nll_b, b.nll_b);
  {
    std::vector<double> sa(a.same.begin(), a.same.end()), sb(b.same.begin(), b.same.end());
    stat(r.same_top, 4, sa, sb);
  }
  r.kl_ratio = r.kl.a > 0 ? r.kl.b / r.kl.a : std::numeric_limits<double>::quiet_NaN();
  const size_t strata[1] = {nc};
  const auto reps = stratified_bootstrap(strata, opt, [&](const std::vector<std::vector<size_t>>& picks) {
    std::array<double, kS> t{};
    for (size_t c : picks[0])
      for (int j = 0; j < kS; j++) t[size_t(j)] += sums[c][size_t(j)];
    const double m = double(picks[0].size() * per);
    return std::vector<double>{(t[1] - t[0]) / m, (t[3] - t[2]) / m, (t[5] - t[4]) / m,
                               t[0] > 0 ? t[1] / t[0] : std::numeric_limits<double>::quiet_NaN()};
  });
  const std::vector<Interval> iv = percentile_intervals(reps, opt.level);
  r.kl.ci = iv[0];
  r.nll.ci = iv[1];
  r.same_top.ci = iv[2];
  r.kl_ratio_ci = iv[3];
  return r;
}

}  // namespace ctrust
