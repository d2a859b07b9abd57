#include "eval/score.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "model/perplexity.h"

namespace ctrust {

Request make_request(const Tokenizer& tok, const std::string& context_in, const std::string& cont_in) {
  std::string context = context_in, cont = cont_in;
  size_t keep = context.find_last_not_of(" \t\n\r");
  keep = keep == std::string::npos ? 0 : keep + 1;
  if (keep < context.size()) {
    cont = context.substr(keep) + cont;
    context.resize(keep);
  }
  Request r;
  std::vector<int32_t> ctx = tok.encode(context, /*add_bos=*/true);
  if (ctx.empty()) {
    const int32_t start = tok.bos() >= 0 ? tok.bos() : tok.eos();
    if (start < 0) fail("empty context and the tokenizer has neither BOS nor EOS");
    ctx.push_back(start);
    r.tokens = ctx;
    auto c = tok.encode(cont, false);
    r.tokens.insert(r.tokens.end(), c.begin(), c.end());
  } else {
    r.tokens = tok.encode(context + cont, true);
    if (r.tokens.size() <= ctx.size()) {
      r.tokens = ctx;
      auto c = tok.encode(cont, false);
      r.tokens.insert(r.tokens.end(), c.begin(), c.end());
    }
  }
  r.ctx_len = int(ctx.size());
  if (int(r.tokens.size()) <= r.ctx_len) fail("continuation '{}' encodes to no tokens", cont_in);
  return r;
}

nlohmann::json ItemScore::extra() const {
  nlohmann::json j = {{"n_tokens", n_tokens}, {"n_bytes", n_bytes}, {"greedy", greedy},
                      {"pred_norm", pred_norm}, {"pred_mean", pred_mean}, {"correct_norm", correct_norm},
                      {"correct_mean", correct_mean}};
  if (mc2 >= 0) j["mc2"] = mc2;
  return j;
}

static int argmax_of(const std::vector<double>& v) {
  return int(std::max_element(v.begin(), v.end()) - v.begin());
}

ItemScore score_item(const Model& m, KVCache& cache, const TaskItem& item) {
  const size_t nc = item.continuations.size();
  if (nc == 0) fail("item {}/{}: no choices", item.task, item.id);
  if (item.contexts.size() != 1 && item.contexts.size() != nc)
    fail("item {}/{}: {} contexts for {} choices", item.task, item.id, item.contexts.size(), nc);
  const int n_vocab = m.cfg.n_vocab;
  std::vector<Request> req(nc);
  for (size_t i = 0; i < nc; i++) {
    req[i] = make_request(m.tok, item.contexts[std::min(i, item.contexts.size() - 1)], item.continuations[i]);
    // Only tokens[0..n-1) are run (the last one is predicted, never an input).
    const int over = int(req[i].tokens.size()) - 1 - cache.n_ctx;
    if (over > 0) {
      if (req[i].ctx_len - over < 1)
        fail("item {}/{}: continuation of {} tokens does not fit the context of {}", item.task, item.id,
             req[i].tokens.size() - size_t(req[i].ctx_len), cache.n_ctx);
      req[i].tokens.erase(req[i].tokens.begin(), req[i].tokens.begin() + over);
      req[i].ctx_len -= over;
    }
  }
  // Shared prefix of every request, no longer than the shortest context.
  size_t L = size_t(req[0].ctx_len);
  for (size_t i = 1; i < nc; i++) {
    L = std::min(L, size_t(req[i].ctx_len));
    size_t k = 0;
    while (k < L && req[i].tokens[k] == req[0].tokens[k]) k++;
    L = k;
  }
  cache.truncate(0);
  std::vector<float> last;  // log-probs after the prefix (predicting position L)
  if (L > 0) {
    last.resize(size_t(n_vocab));
    ForwardOptions fo;
    fo.all_logits = false;
    forward(m, cache, req[0].tokens.data(), int(L), last.data(), fo);
    log_softmax(last.data(), n_vocab);
  }
  ItemScore s;
  s.ll.resize(nc);
  s.n_tokens.resize(nc);
  s.n_bytes.resize(nc);
  s.greedy.resize(nc);
  std::vector<float> logits;
  for (size_t i = 0; i < nc; i++) {
    const auto& t = req[i].tokens;
    const int n = int(t.size());
    cache.truncate(int(L));
    const int n_run = n - 1 - int(L);  // positions L .. n-2 are run; they predict tokens L+1 .. n-1
    if (n_run > 0) {
      logits.resize(size_t(n_run) * size_t(n_vocab));
      forward(m, cache, t.data() + L, n_run, logits.data());
    }
    double ll = 0;
    bool greedy = true;
    for (int j = req[i].ctx_len; j < n; j++) {
      // log-probs at position j-1 predict token j.
      float* row;
      if (j - 1 == int(L) - 1) {
        row = last.data();
      } else {
        row = logits.data() + size_t(j - 1 - int(L)) * size_t(n_vocab);
        log_softmax(row, n_vocab);
      }
      const int32_t tok = t[size_t(j)];
      if (tok < 0 || tok >= n_vocab) fail("token id {} out of range", tok);
      ll += double(row[tok]);
      if (std::max_element(row, row + n_vocab) - row != tok) greedy = false;
    }
    s.ll[i] = ll;
    s.n_tokens[i] = n - req[i].ctx_len;
    s.n_bytes[i] = int(item.choice_texts.size() == nc ? item.choice_texts[i].size() : item.continuations[i].size());
    s.greedy[i] = greedy;
  }
  std::vector<double> norm(nc), mean(nc);
  for (size_t i = 0; i < nc; i++) {
    norm[i] = s.ll[i] / double(std::max(1, s.n_bytes[i]));
    mean[i] = s.ll[i] / double(std::max(1, s.n_tokens[i]));
  }
  s.pred = argmax_of(s.ll);
  s.pred_norm = argmax_of(norm);
  s.pred_mean = argmax_of(mean);
  auto right = [&](int p) { return item.n_true > 0 ? p < item.n_true : p == item.gold; };
  if (nc == 1) {  // loglikelihood scoring: right = the continuation is the greedy one
    s.correct = s.correct_norm = s.correct_mean = s.greedy[0];
  } else {
    s.correct = right(s.pred);
    s.correct_norm = right(s.pred_norm);
    s.correct_mean = right(s.pred_mean);
  }
  if (item.n_true > 0) {
    const double mx = *std::max_element(s.ll.begin(), s.ll.end());
    double t = 0, all = 0;
    for (size_t i = 0; i < nc; i++) {
      const double p = std::exp(s.ll[i] - mx);
      all += p;
      if (int(i) < item.n_true) t += p;
    }
    s.mc2 = t / all;
  }
  return s;
}

std::vector<int32_t> perplexity_tokens(const Model& m, const std::string& text) {
  return m.tok.encode(text, /*add_bos=*/true);
}

int perplexity_chunks(size_t n_tokens, int n_ctx) {
  if (n_ctx < 4) fail("perplexity context {} is too small", n_ctx);
  return int(n_tokens / size_t(n_ctx));
}

ChunkScore score_chunk(const Model& m, const std::vector<int32_t>& tokens, int n_ctx, int chunk) {
  const size_t start = size_t(chunk) * size_t(n_ctx);
  if (chunk < 0 || start + size_t(n_ctx) > tokens.size())
    fail("perplexity chunk {} of {} tokens is outside the text ({} tokens)", chunk, n_ctx, tokens.size());
  std::vector<int32_t> part(tokens.begin() + std::ptrdiff_t(start), tokens.begin() + std::ptrdiff_t(start) + n_ctx);
  PerplexityResult r = perplexity(m, part, n_ctx, 1);
  if (r.n_chunks != 1 || r.chunk_nll.size() != 1) fail("perplexity of one chunk returned {} chunks", r.n_chunks);
  ChunkScore c;
  c.n_scored = r.n_scored;
  c.nll_sum = r.chunk_nll[0] * double(r.n_scored);
  return c;
}

}  // namespace ctrust
