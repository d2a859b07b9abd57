#include "eval/kld.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "eval/metrics.h"

namespace ctrust {

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
  same_top += top_b == top_q;
}

static void mean_stderr(const std::vector<double>& v, double& mean, double& se) {
  const double n = double(v.size());
  double s = 0, s2 = 0;
  for (double x : v) s += x, s2 += x * x;
  mean = s / n;
  const double var = n > 1 ? std::max(0.0, (s2 / n - mean * mean) * n / (n - 1)) : 0.0;
  se = n > 1 ? std::sqrt(var / n) : 0.0;
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
  auto pct = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    std::vector<double> out;
    for (double q : kKldPercentiles) out.push_back(percentile_sorted(v, q));
    return out;
  };
  s.kl_pct = pct(kl);
  s.dp_pct = pct(dp);
  const double p = double(same_top) / n;
  s.same_top = p;
  s.same_top_stderr = n > 1 ? std::sqrt(p * (1 - p) / (n - 1)) : 0.0;
  double mb, mq, se;
  mean_stderr(nll_base, mb, se);
  mean_stderr(nll_b, mq, se);
  s.ppl_base = std::exp(mb);
  s.ppl_b = std::exp(mq);
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
  return s;
}

nlohmann::json KldStats::to_json() const {
  auto pct = [](const std::vector<double>& v) {
    static const char* names[] = {"max", "p99.9", "p99", "p95", "p90", "median", "p10", "p5", "p1", "p0.1", "min"};
    nlohmann::json j = nlohmann::json::object();
    for (size_t i = 0; i < v.size() && i < std::size(names); i++) j[names[i]] = v[i];
    return j;
  };
  return {{"n_tokens", n_tokens},       {"n_chunks", n_chunks},
          {"kl_mean", kl_mean},         {"kl_stderr", kl_stderr},
          {"kl_percentiles", pct(kl_pct)}, {"same_top", same_top},
          {"same_top_stderr", same_top_stderr}, {"dp_mean", dp_mean},
          {"dp_stderr", dp_stderr},     {"dp_rms", dp_rms},
          {"dp_percentiles", pct(dp_pct)}, {"ppl_base", ppl_base},
          {"ppl_b", ppl_b},             {"ppl_ratio", ppl_ratio},
          {"ln_ppl_ratio", ln_ppl_ratio}, {"ln_ppl_ratio_stderr", ln_ppl_ratio_stderr},
          {"cor_ln_ppl", cor_ln_ppl}};
}

KldStats kl_divergence(const Model& base, const Model& b, const std::string& text, const KldOptions& opt) {
  if (base.tok.fingerprint() != b.tok.fingerprint())
    fail("kl: the two models have different tokenizers ({:016x} vs {:016x}); token-level KL needs the same vocabulary",
         base.tok.fingerprint(), b.tok.fingerprint());
  const int n_vocab = base.cfg.n_vocab;
  if (b.cfg.n_vocab != n_vocab) fail("kl: vocabulary sizes differ ({} vs {})", n_vocab, b.cfg.n_vocab);
  const int n_ctx = opt.n_ctx;
  if (n_ctx < 4) fail("kl: context {} is too small", n_ctx);
  for (const Model* m : {&base, &b})
    if (m->cfg.n_ctx > 0 && n_ctx > m->cfg.n_ctx) fail("kl: context {} exceeds a model's context {}", n_ctx, m->cfg.n_ctx);
  const std::vector<int32_t> tokens = base.tok.encode(text, /*add_bos=*/true);
  int n_chunks = int(tokens.size() / size_t(n_ctx));
  if (opt.max_chunks >= 0) n_chunks = std::min(n_chunks, opt.max_chunks);
  if (n_chunks == 0) fail("kl: text has {} tokens, fewer than one chunk of {}", tokens.size(), n_ctx);

  KVCache cb = make_cache(base, n_ctx), cq = make_cache(b, n_ctx);
  const int first = n_ctx / 2;
  const int n_out = n_ctx - 1 - first;  // scored positions first .. n_ctx-2 predict tokens first+1 .. n_ctx-1
  std::vector<float> lb(size_t(n_out) * size_t(n_vocab)), lq(lb.size());
  std::vector<float> last(static_cast<size_t>(n_vocab));
  KldAccumulator acc;
  ForwardOptions last_only;
  last_only.all_logits = false;
  for (int c = 0; c < n_chunks; c++) {
    std::vector<int32_t> chunk(tokens.begin() + std::ptrdiff_t(c) * n_ctx, tokens.begin() + std::ptrdiff_t(c + 1) * n_ctx);
    if (base.tok.adds_bos() && base.tok.bos() >= 0) chunk[0] = base.tok.bos();
    for (auto [m, cache, out] : {std::tuple{&base, &cb, &lb}, std::tuple{&b, &cq, &lq}}) {
      cache->truncate(0);
      forward(*m, *cache, chunk.data(), first, last.data(), last_only);
      forward(*m, *cache, chunk.data() + first, n_out, out->data());
    }
    for (int j = 0; j < n_out; j++) {
      float* rb = lb.data() + size_t(j) * size_t(n_vocab);
      float* rq = lq.data() + size_t(j) * size_t(n_vocab);
      log_softmax(rb, n_vocab);
      log_softmax(rq, n_vocab);
      acc.add(rb, rq, n_vocab, chunk[size_t(first + j + 1)]);
    }
    if (opt.progress) opt.progress(c + 1, n_chunks);
  }
  KldStats s = acc.finish();
  s.n_chunks = n_chunks;
  return s;
}

}  // namespace ctrust
