#include "model/perplexity.h"

#include <cmath>

#include "base/error.h"

namespace ctrust {

std::vector<int32_t> perplexity_tokens(const Tokenizer& tok, const std::string& text) {
  return tok.encode(text, /*add_bos=*/true);
}

std::vector<int32_t> perplexity_tokens(const Model& m, const std::string& text) {
  return perplexity_tokens(m.tok, text);
}

int perplexity_chunks(size_t n_tokens, int n_ctx) {
  if (n_ctx < 4) fail("perplexity context {} is too small (at least 4)", n_ctx);
  return int(n_tokens / size_t(n_ctx));
}

void perplexity_chunk(const Tokenizer& tok, std::span<const int32_t> tokens, int n_ctx, int i, int32_t* out) {
  const size_t start = size_t(i) * size_t(n_ctx);
  if (n_ctx < 4 || i < 0 || start + size_t(n_ctx) > tokens.size())
    fail("perplexity chunk {} of {} tokens is outside the text ({} tokens)", i, n_ctx, tokens.size());
  std::copy(tokens.begin() + std::ptrdiff_t(start), tokens.begin() + std::ptrdiff_t(start) + n_ctx, out);
  if (tok.adds_bos() && tok.bos() >= 0) out[0] = tok.bos();  // llama.cpp: BOS starts every chunk
}

PplChunkRunner::PplChunkRunner(const Model& m, int n_ctx)
    : m_(&m), n_ctx_(n_ctx), cache_(make_cache(m, std::max(n_ctx, 1))) {
  if (n_ctx < 4) fail("perplexity context {} is too small (at least 4)", n_ctx);
  logits_.resize(size_t(n_ctx - perplexity_first(n_ctx)) * size_t(m.cfg.n_vocab));
}

float* PplChunkRunner::run(const int32_t* chunk) {
  const int first = perplexity_first(n_ctx_);
  cache_.truncate(0);
  forward(*m_, st_, cache_, chunk, first, nullptr);  // the first half needs no logits
  // The whole second half, its last position included (its logits score nothing): the rows' values depend in
  // the last bits on how many rows a product has (BLAS), and this is the row count perplexity() always used,
  // which docs/correctness.md compares with llama.cpp.
  forward(*m_, st_, cache_, chunk + first, n_ctx_ - first, logits_.data());
  return logits_.data();
}

// Follows llama.cpp tools/perplexity/perplexity.cpp (perplexity()): each score is log_softmax as llama.cpp
// computes it: logit - max - log(sum_j expf(logit_j - max)), the sum in double.
PerplexityResult perplexity(const Model& m, const std::vector<int32_t>& tokens, int ctx, int max_chunks,
                            const std::function<void(int, int, double)>& progress) {
  if (ctx < 4) fail("perplexity: context {} is too small (at least 4)", ctx);
  if ((int64_t)tokens.size() < 2 * (int64_t)ctx)
    fail("perplexity: need at least {} tokens for a context of {}, the text has {}", 2 * (int64_t)ctx, ctx,
         tokens.size());
  const int n_chunk_max = perplexity_chunks(tokens.size(), ctx);
  const int n_chunk = max_chunks < 0 ? n_chunk_max : std::min(max_chunks, n_chunk_max);
  const int first = perplexity_first(ctx), scored = perplexity_scored(ctx);
  const int V = m.cfg.n_vocab;

  PerplexityResult r;
  PplChunkRunner runner(m, ctx);
  std::vector<int32_t> chunk(ctx);
  double nll = 0.0, nll2 = 0.0;
  int64_t count = 0;
  for (int i = 0; i < n_chunk; ++i) {
    perplexity_chunk(m.tok, tokens, ctx, i, chunk.data());
    const float* logits = runner.run(chunk.data());
    double chunk_nll = 0.0;
    for (int j = 0; j < scored; ++j) {
      const float* row = logits + (size_t)j * V;
      float mx = row[0];
      for (int t = 1; t < V; ++t) mx = std::max(mx, row[t]);
      double sum_exp = 0.0;
      for (int t = 0; t < V; ++t) sum_exp += std::exp(row[t] - mx);
      const double lp = row[chunk[first + j + 1]] - mx - std::log(sum_exp);
      nll -= lp;
      nll2 += lp * lp;
      chunk_nll -= lp;
    }
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
