#include "model/perplexity.h"

#include <cmath>

#include "base/error.h"

namespace ctrust {

// Follows llama.cpp tools/perplexity/perplexity.cpp (perplexity(), ppl_stride 0): chunk i covers tokens
// [i*ctx, (i+1)*ctx) with a fresh cache; if the tokenizer adds BOS, the chunk's first token is replaced by BOS;
// logits of positions j = ctx/2 .. ctx-2 score tokens j+1 (ctx - ctx/2 - 1 tokens per chunk). Each score is
// log_softmax as llama.cpp computes it: logit - max - log(sum_j expf(logit_j - max)), the sum in double.
PerplexityResult perplexity(const Model& m, const std::vector<int32_t>& tokens, int ctx, int max_chunks,
                            const std::function<void(int, int, double)>& progress) {
  if (ctx < 4) fail("perplexity: context {} is too small (at least 4)", ctx);
  if ((int64_t)tokens.size() < 2 * (int64_t)ctx)
    fail("perplexity: need at least {} tokens for a context of {}, the text has {}", 2 * (int64_t)ctx, ctx,
         tokens.size());
  const int n_chunk_max = (int)(tokens.size() / ctx);
  const int n_chunk = max_chunks < 0 ? n_chunk_max : std::min(max_chunks, n_chunk_max);
  const int first = ctx / 2;
  const int V = m.cfg.n_vocab;
  const bool add_bos = m.tok.adds_bos() && m.tok.bos() >= 0;

  PerplexityResult r;
  KVCache cache = make_cache(m, ctx);
  std::vector<int32_t> chunk(ctx);
  const int n_scored_rows = ctx - first;  // logits rows first .. ctx-1 (the last one is not used)
  std::vector<float> logits((size_t)n_scored_rows * V);
  double nll = 0.0, nll2 = 0.0;
  int64_t count = 0;
  for (int i = 0; i < n_chunk; ++i) {
    const int64_t start = (int64_t)i * ctx;
    std::copy(tokens.begin() + start, tokens.begin() + start + ctx, chunk.begin());
    if (add_bos) chunk[0] = m.tok.bos();
    cache.n_past = 0;
    forward(m, cache, chunk.data(), first, nullptr);  // the first half needs no logits
    forward(m, cache, chunk.data() + first, ctx - first, logits.data());
    double chunk_nll = 0.0;
    for (int j = first; j < ctx - 1; ++j) {
      const float* row = logits.data() + (size_t)(j - first) * V;
      float mx = row[0];
      for (int t = 1; t < V; ++t) mx = std::max(mx, row[t]);
      double sum_exp = 0.0;
      for (int t = 0; t < V; ++t) sum_exp += std::exp(row[t] - mx);
      const double lp = row[chunk[j + 1]] - mx - std::log(sum_exp);
      nll -= lp;
      nll2 += lp * lp;
      chunk_nll -= lp;
    }
    const int scored = ctx - first - 1;
    count += scored;
    r.chunk_nll.push_back(chunk_nll / scored);
    if (progress) progress(i + 1, n_chunk, std::exp(nll / count));
  }
  r.n_chunks = n_chunk;
  r.n_scored = count;
  nll /= count;
  nll2 /= count;
  r.ppl = std::exp(nll);
  nll2 -= nll * nll;
  r.ppl_stderr = nll2 > 0 && count > 1 ? std::sqrt(nll2 / (count - 1)) * r.ppl : 0.0;
  return r;
}

}  // namespace ctrust
