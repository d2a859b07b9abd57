#include "eval/score.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "base/error.h"
#include "model/forward_masked.h"

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
  if (truncated > 0) j["truncated"] = truncated;
  if (cont_dropped > 0) j["cont_dropped"] = cont_dropped;
  return j;
}

static int argmax_of(const std::vector<double>& v) {
  return int(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<Request> item_requests(const Tokenizer& tok, int n_ctx, const TaskItem& item) {
  const size_t nc = item.continuations.size();
  if (nc == 0) fail("item {}/{}: no choices", item.task, item.id);
  if (item.contexts.size() != 1 && item.contexts.size() != nc)
    fail("item {}/{}: {} contexts for {} choices", item.task, item.id, item.contexts.size(), nc);
  std::vector<Request> req(nc);
  for (size_t i = 0; i < nc; i++) {
    req[i] = make_request(tok, item.contexts[std::min(i, item.contexts.size() - 1)], item.continuations[i]);
    // Only tokens[0..n-1) are run (the last one is predicted, never an input): lm-eval's
    // (context + continuation)[-(max_length + 1):][:-1].
    const int over = int(req[i].tokens.size()) - 1 - n_ctx;
    if (over > 0) {
      req[i].tokens.erase(req[i].tokens.begin(), req[i].tokens.begin() + over);
      req[i].truncated = over;
      req[i].ctx_len -= over;
      if (req[i].ctx_len < 1) {  // the window starts inside the continuation: its first token has no predictor
        req[i].cont_dropped = 1 - req[i].ctx_len;
        req[i].ctx_len = 1;
      }
    }
  }
  return req;
}

namespace {

// Shared prefix of every request, no longer than the shortest context.
size_t shared_prefix(const std::vector<Request>& req) {
  size_t L = size_t(req[0].ctx_len);
  for (size_t i = 1; i < req.size(); i++) {
    L = std::min(L, size_t(req[i].ctx_len));
    size_t k = 0;
    while (k < L && req[i].tokens[k] == req[0].tokens[k]) k++;
    L = k;
  }
  return L;
}

}  // namespace

void finish_score(ItemScore& s, const TaskItem& item, const std::vector<Request>& req) {
  const size_t nc = s.ll.size();
  for (const Request& r : req) {
    s.truncated = std::max(s.truncated, r.truncated);
    s.cont_dropped = std::max(s.cont_dropped, r.cont_dropped);
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
  if (item.scoring == Scoring::Loglikelihood) {  // right = the continuation is the greedy one
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
}

int bytes_of_choice(const TaskItem& item, size_t i) {
  return int(item.choice_texts.size() == item.continuations.size() ? item.choice_texts[i].size()
                                                                    : item.continuations[i].size());
}

ItemScore score_item(const Model& m, KVCache& cache, const TaskItem& item) {
  const size_t nc = item.continuations.size();
  const int n_vocab = m.cfg.n_vocab;
  std::vector<Request> req = item_requests(m.tok, cache.n_ctx, item);
  const size_t L = shared_prefix(req);
  cache.truncate(0);
  ForwardState st;           // the activations of this item's forward passes
  std::vector<float> last;  // log-probs after the prefix (predicting position L)
  if (L > 0) {
    last.resize(size_t(n_vocab));
    ForwardOptions fo;
    fo.all_logits = false;
    forward(m, st, cache, req[0].tokens.data(), int(L), last.data(), fo);
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
      forward(m, st, cache, t.data() + L, n_run, logits.data());
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
    s.n_bytes[i] = bytes_of_choice(item, i);
    s.greedy[i] = greedy;
  }
  finish_score(s, item, req);
  return s;
}

// Choice i of s gains the log-probability row[t] of its token t; its greedy flag drops unless t is the argmax.
static void add_token_logprob(ItemScore& s, size_t i, int32_t t, const float* row, int32_t best, int n_vocab) {
  if (t < 0 || t >= n_vocab) fail("token id {} out of range", t);
  s.ll[i] += double(row[t]);
  if (best != t) s.greedy[i] = false;
}

void ItemScorer::run_packed(const std::vector<int32_t>& tok, const std::vector<int32_t>& pos,
                            const std::vector<unsigned char>& mask, const std::vector<int32_t>& out_rows) {
  const int n = int(tok.size()), n_vocab = m_->cfg.n_vocab;
  if (logits_.size() < out_rows.size() * size_t(n_vocab)) logits_.resize(out_rows.size() * size_t(n_vocab));
  forward_masked(*m_, st_, cache_, tok.data(), pos.data(), n, mask.data(), out_rows.data(), int(out_rows.size()),
                 logits_.data());
  tokens_run_ += n;
  forwards_++;
  rows_out_ += int64_t(out_rows.size());
  // Each output row into log-probabilities, and its argmax (the greedy flags). Rows are independent: threads
  // split them (same floats as one thread).
  const int n_out = int(out_rows.size());
  best_.resize(size_t(n_out));
#pragma omp parallel for schedule(static) if (n_out >= 8)
  for (int r = 0; r < n_out; r++) best_[size_t(r)] = log_softmax_argmax(logits_.data() + size_t(r) * size_t(n_vocab), n_vocab);
}

ItemScorer::ItemScorer(const Model& m, int n_ctx, int max_batch)
    : m_(&m), cache_(make_cache(m, n_ctx)), max_batch_(std::max(1, max_batch)) {
  auto rowwise = [](const Linear& L) { return L.mode != LinearMode::Int8Outlier; };
  share_forwards_ = rowwise(m.output);
  for (const LayerWeights& L : m.layers)
    for (const BlockLinear& b : kBlockLinears) share_forwards_ = share_forwards_ && rowwise(L.*b.member);
}

void ItemScorer::reset() {
  cache_.truncate(0);
  cached_.clear();
}

ItemScore ItemScorer::score(const TaskItem& item) {
  if (!share_forwards_) reset();
  const Model& m = *m_;
  const size_t nc = item.continuations.size();
  const int n_vocab = m.cfg.n_vocab;
  std::vector<Request> req = item_requests(m.tok, cache_.n_ctx, item);
  const int L = int(shared_prefix(req));
  const std::vector<int32_t>& ctx = req[0].tokens;  // its first L tokens are the shared context

  // Reuse the cached context as far as it agrees; the last context token always runs (its logits are needed).
  int P = 0;
  const int max_reuse = std::min<int>(int(cached_.size()), L - 1);
  while (P < max_reuse && cached_[size_t(P)] == ctx[size_t(P)]) P++;
  cache_.truncate(P);
  cached_.resize(size_t(P));
  // A context longer than a batch runs ahead in causal chunks (no logits), leaving its last token.
  while (L - 1 - P > max_batch_) {
    forward(m, st_, cache_, ctx.data() + P, max_batch_, nullptr);
    tokens_run_ += max_batch_;
    forwards_++;
    P += max_batch_;
  }

  ItemScore s;
  s.ll.assign(nc, 0.0);
  s.n_tokens.resize(nc);
  s.n_bytes.resize(nc);
  s.greedy.assign(nc, true);
  for (size_t i = 0; i < nc; i++) {
    s.n_tokens[i] = int(req[i].tokens.size()) - req[i].ctx_len;
    s.n_bytes[i] = bytes_of_choice(item, i);
  }
  // Choice i runs tokens [L, n_i - 1) at positions L..; the row of token j-1 predicts token j (j >= ctx_len).
  auto run_len = [&](size_t i) { return std::max(0, int(req[i].tokens.size()) - 1 - L); };
  auto rows_of = [&](size_t i) {  // logit rows inside the choice's own tokens
    return std::max(0, int(req[i].tokens.size()) - std::max(req[i].ctx_len, L + 1));
  };
  bool need_prefix_row = false;  // the context's last row predicts token L of choices with ctx_len == L
  for (size_t i = 0; i < nc; i++) need_prefix_row |= L > 0 && req[i].ctx_len == L;
  const int64_t max_rows = std::max<int64_t>(16, (int64_t(1) << 24) / n_vocab);  // logits held at once

  std::vector<int32_t> tok, pos, seg, out_rows;
  std::vector<unsigned char> mask;
  std::vector<float>& logits = logits_;
  // Per output row: which (choice, token index) pairs it predicts.
  std::vector<std::vector<std::pair<int, int>>> targets;
  size_t next = 0;
  bool prefix_pending = P < L;
  while (prefix_pending || next < nc) {
    tok.clear(), pos.clear(), seg.clear(), out_rows.clear(), targets.clear();
    const int room = cache_.n_ctx - cache_.n_past;
    if (prefix_pending) {
      for (int k = P; k < L; k++) tok.push_back(ctx[size_t(k)]), pos.push_back(k), seg.push_back(-1);
      if (need_prefix_row) {
        out_rows.push_back(int32_t(tok.size()) - 1);
        targets.emplace_back();
        for (size_t i = 0; i < nc; i++)
          if (req[i].ctx_len == L) targets.back().push_back({int(i), L});
      }
      prefix_pending = false;
    }
    const size_t first = next;
    while (next < nc) {
      const int len = run_len(next), rows = rows_of(next);
      const bool alone = next == first && tok.empty();
      if (!alone && (int(tok.size()) + len > std::min(room, max_batch_) ||
                     int64_t(out_rows.size()) + rows > max_rows))
        break;
      const std::vector<int32_t>& t = req[next].tokens;
      const int base = int(tok.size());
      for (int k = 0; k < len; k++) tok.push_back(t[size_t(L + k)]), pos.push_back(L + k), seg.push_back(int(next));
      for (int j = std::max(req[next].ctx_len, L + 1); j < int(t.size()); j++) {
        out_rows.push_back(base + (j - 1 - L));
        targets.push_back({{int(next), j}});
      }
      next++;
    }
    const int n = int(tok.size());
    if (n == 0) continue;  // only single-token choices scored from the context row: nothing to run
    mask.assign(size_t(n) * size_t(n), 0);
    for (int a = 0; a < n; a++)
      for (int b = 0; b <= a; b++)
        mask[size_t(a) * size_t(n) + size_t(b)] = seg[size_t(b)] == -1 || seg[size_t(b)] == seg[size_t(a)];
    run_packed(tok, pos, mask, out_rows);
    for (size_t r = 0; r < out_rows.size(); r++) {
      const float* row = logits.data() + r * size_t(n_vocab);
      const int32_t best = best_[r];
      for (auto [i, j] : targets[r]) add_token_logprob(s, size_t(i), req[size_t(i)].tokens[size_t(j)], row, best, n_vocab);
    }
    cache_.truncate(L);  // later batches (and the next item) start from the context
  }
  cache_.truncate(L);
  cached_.assign(ctx.begin(), ctx.begin() + L);
  finish_score(s, item, req);
  return s;
}

std::vector<ItemScore> ItemScorer::score_batch(const std::vector<const TaskItem*>& items) {
  if (!share_forwards_) {
    std::vector<ItemScore> out;
    for (const TaskItem* it : items) out.push_back(score(*it));
    return out;
  }
  const Model& m = *m_;
  const int n_vocab = m.cfg.n_vocab;
  const int64_t max_rows = std::max<int64_t>(16, (int64_t(1) << 24) / n_vocab);
  struct Work {
    std::vector<Request> req;
    int L = 0;
    int reuse = 0;          // common prefix with the cached tokens (when its pack is formed)
    int run = 0, rows = 0;  // choice tokens to run, logit rows needed (without the context row)
    bool prefix_row = false;
  };
  std::vector<Work> w(items.size());
  for (size_t a = 0; a < items.size(); a++) {
    Work& x = w[a];
    x.req = item_requests(m.tok, cache_.n_ctx, *items[a]);
    x.L = int(shared_prefix(x.req));
    for (const Request& r : x.req) {
      x.run += std::max(0, int(r.tokens.size()) - 1 - x.L);
      x.rows += std::max(0, int(r.tokens.size()) - std::max(r.ctx_len, x.L + 1));
      x.prefix_row |= x.L > 0 && r.ctx_len == x.L;
    }
  }
  std::vector<ItemScore> out(items.size());
  size_t a0 = 0;
  while (a0 < items.size()) {
    // Pack items a0 .. a1-1: all share the first P cached tokens.
    size_t a1 = a0;
    int P = 0;
    for (;;) {
      if (a1 == items.size()) break;
      {  // common prefix with what the cache holds now
        Work& x = w[a1];
        const auto& ctx = x.req[0].tokens;
        const int lim = std::min<int>(int(cached_.size()), x.L - 1);
        x.reuse = 0;
        while (x.reuse < lim && cached_[size_t(x.reuse)] == ctx[size_t(x.reuse)]) x.reuse++;
      }
      const int P2 = a1 == a0 ? w[a1].reuse : std::min(P, w[a1].reuse);
      int64_t tokens = 0, rows = 0;
      for (size_t b = a0; b <= a1; b++) {
        tokens += (w[b].L - P2) + w[b].run;
        rows += w[b].rows + (w[b].prefix_row ? 1 : 0);
      }
      if (a1 > a0 && (tokens > std::min(max_batch_, cache_.n_ctx - P2) || rows > max_rows)) break;
      if (a1 == a0 && (tokens > std::min(max_batch_, cache_.n_ctx - P2) || rows > max_rows)) break;  // alone
      P = P2;
      a1++;
    }
    if (a1 <= a0 + 1) {  // one item (or one that does not fit a batch): the single-item path
      out[a0] = score(*items[a0]);
      a0++;
      continue;
    }
    cache_.truncate(P);
    cached_.resize(size_t(P));
    std::vector<int32_t> tok, pos, owner, branch, out_rows;
    std::vector<std::vector<std::tuple<int, int, int>>> targets;  // per output row: (item, choice, token index)
    for (size_t a = a0; a < a1; a++) {
      const Work& x = w[a];
      const auto& ctx = x.req[0].tokens;
      for (int k = P; k < x.L; k++)
        tok.push_back(ctx[size_t(k)]), pos.push_back(k), owner.push_back(int(a)), branch.push_back(-1);
      if (x.prefix_row) {
        out_rows.push_back(int32_t(tok.size()) - 1);
        targets.emplace_back();
        for (size_t i = 0; i < x.req.size(); i++)
          if (x.req[i].ctx_len == x.L) targets.back().push_back({int(a), int(i), x.L});
      }
      for (size_t i = 0; i < x.req.size(); i++) {
        const auto& t = x.req[i].tokens;
        const int base = int(tok.size());
        for (int k = x.L; k < int(t.size()) - 1; k++)
          tok.push_back(t[size_t(k)]), pos.push_back(k), owner.push_back(int(a)), branch.push_back(int(i));
        for (int j = std::max(x.req[i].ctx_len, x.L + 1); j < int(t.size()); j++) {
          out_rows.push_back(base + (j - 1 - x.L));
          targets.push_back({{int(a), int(i), j}});
        }
      }
    }
    const int n = int(tok.size());
    std::vector<unsigned char> mask(size_t(n) * size_t(n), 0);
    for (int r = 0; r < n; r++)
      for (int c = 0; c <= r; c++)
        mask[size_t(r) * size_t(n) + size_t(c)] =
            owner[size_t(c)] == owner[size_t(r)] && (branch[size_t(c)] == -1 || branch[size_t(c)] == branch[size_t(r)]);
    for (size_t a = a0; a < a1; a++) {
      ItemScore& s = out[a];
      const size_t nc = w[a].req.size();
      s.ll.assign(nc, 0.0);
      s.greedy.assign(nc, true);
      s.n_tokens.resize(nc);
      s.n_bytes.resize(nc);
      for (size_t i = 0; i < nc; i++) {
        s.n_tokens[i] = int(w[a].req[i].tokens.size()) - w[a].req[i].ctx_len;
        s.n_bytes[i] = bytes_of_choice(*items[a], i);
      }
    }
    run_packed(tok, pos, mask, out_rows);
    for (size_t r = 0; r < out_rows.size(); r++) {
      const float* row = logits_.data() + r * size_t(n_vocab);
      const int32_t best = best_[r];
      for (auto [a, i, j] : targets[r])
        add_token_logprob(out[size_t(a)], size_t(i), w[size_t(a)].req[size_t(i)].tokens[size_t(j)], row, best,
                          n_vocab);
    }
    for (size_t a = a0; a < a1; a++) finish_score(out[a], *items[a], w[a].req);
    // The first item's context sits at slots [0, L) with matching positions: keep it for the next items.
    cache_.truncate(w[a0].L);
    cached_.assign(w[a0].req[0].tokens.begin(), w[a0].req[0].tokens.begin() + w[a0].L);
    a0 = a1;
  }
  return out;
}

ChunkScore score_chunk(const Model& m, const std::vector<int32_t>& tokens, int n_ctx, int chunk) {
  PplChunkRunner runner(m, n_ctx);
  return score_chunk(runner, m, tokens, chunk);
}

ChunkScore score_chunk(PplChunkRunner& runner, const Model& m, const std::vector<int32_t>& tokens, int chunk) {
  const int n_ctx = runner.n_ctx();
  std::vector<int32_t> part(size_t(std::max(n_ctx, 0)));
  perplexity_chunk(m.tok, tokens, n_ctx, chunk, part.data());
  const int n_vocab = m.cfg.n_vocab;
  const int first = perplexity_first(n_ctx), n_out = perplexity_scored(n_ctx);
  float* logits = runner.run(part.data());
#pragma omp parallel for schedule(static) if (n_out >= 8)
  for (int j = 0; j < n_out; j++) log_softmax(logits + size_t(j) * size_t(n_vocab), n_vocab);
  ChunkScore c;
  for (int j = 0; j < n_out; j++) c.nll_sum -= double(logits[size_t(j) * size_t(n_vocab) + size_t(part[size_t(first + j + 1)])]);
  c.n_scored = n_out;
  return c;
}

}  // namespace ctrust
