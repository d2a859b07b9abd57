#include "eval/remote_score.h"

#include <cmath>
#include <atomic>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "base/error.h"
#include "model/perplexity.h"

namespace ctrust {

RemoteScorer::RemoteScorer(const OpenAIBackend& backend, const Tokenizer& tok, int n_ctx)
    : b_(&backend), tok_(&tok), n_ctx_(std::max(4, n_ctx - 2)) {
  // A server evaluates every token it is sent, the last one included, and needs a slot for the one token it
  // generates (max_tokens 1): requests are cut to n_ctx - 2 inputs, two fewer than the engine's (only items longer
  // than the context are affected).
  if (b_->mode() == "echo-text" && !tok_->adds_bos() && b_->server_kind() == "llama-cpp-python")
    fail("openai backend: llama-cpp-python's echo log-probabilities are shifted by one token for a model that adds "
         "no BOS (its _create_completion pairs each echoed token with the previous position's distribution), so "
         "they cannot score this model; serve it with vLLM, or score it with ctrust's own engine");
}

PromptLogprobs RemoteScorer::logprobs(const std::vector<int32_t>& tokens) const {
  const bool bos = tok_->adds_bos() && !tokens.empty() && tokens[0] == tok_->bos();
  std::string text;
  if (b_->mode() == "echo-text") {
    // The server tokenizes text: send the text of the tokens after BOS (the server adds BOS as its model does).
    text = tok_->decode(std::span<const int32_t>(tokens).subspan(bos ? 1 : 0));
    if (!bos && b_->server_kind() == "llama-cpp-python")
      fail("openai backend: llama-cpp-python's echo log-probabilities are shifted by one token for a model that "
           "adds no BOS (its _create_completion pairs each echoed token with the previous position's "
           "distribution); serve this model with vLLM or llama.cpp's server, or score it locally");
  }
  return b_->prompt_logprobs(tokens, text, bos, 0, [this](int32_t id) { return tok_->piece(id); });
}

ItemScore RemoteScorer::score(const TaskItem& item) { return score_batch({&item})[0]; }

std::vector<ItemScore> RemoteScorer::score_batch(const std::vector<const TaskItem*>& items) {
  struct Job {
    size_t item, choice;
  };
  std::vector<std::vector<Request>> reqs(items.size());
  std::vector<Job> jobs;
  for (size_t a = 0; a < items.size(); a++) {
    reqs[a] = item_requests(*tok_, n_ctx_, *items[a]);
    for (size_t i = 0; i < reqs[a].size(); i++) jobs.push_back({a, i});
  }
  // Per-job results first (ItemScore::greedy is a vector<bool>: its bits must not be written from two threads).
  struct Res {
    double ll = 0;
    bool greedy = true;
  };
  std::vector<Res> res(jobs.size());
  parallel_for(jobs.size(), b_->options().max_inflight, [&](size_t j) {
    const Job& jb = jobs[j];
    const Request& r = reqs[jb.item][jb.choice];
    const TaskItem& item = *items[jb.item];
    PromptLogprobs lp = logprobs(r.tokens);
    for (size_t t = size_t(r.ctx_len); t < r.tokens.size(); t++) {
      if (!std::isfinite(lp.logp[t]))
        fail("openai backend: item {}/{}: the server gave no log-probability for token {} of the prompt (the first "
             "token after BOS has none in the echo APIs: an empty context cannot be scored this way)",
             item.task, item.id, t);
      res[j].ll += lp.logp[t];
      if (lp.logp[t] < lp.top_logp[t]) res[j].greedy = false;
    }
  });
  std::vector<ItemScore> out(items.size());
  for (size_t a = 0; a < items.size(); a++) {
    const size_t nc = reqs[a].size();
    out[a].ll.assign(nc, 0.0);
    out[a].n_tokens.assign(nc, 0);
    out[a].n_bytes.assign(nc, 0);
    out[a].greedy.assign(nc, true);
  }
  for (size_t j = 0; j < jobs.size(); j++) {
    const Job& jb = jobs[j];
    const Request& r = reqs[jb.item][jb.choice];
    ItemScore& s = out[jb.item];
    s.ll[jb.choice] = res[j].ll;
    s.n_tokens[jb.choice] = int(r.tokens.size()) - r.ctx_len;
    s.n_bytes[jb.choice] = bytes_of_choice(*items[jb.item], jb.choice);
    s.greedy[jb.choice] = res[j].greedy;
  }
  requests_ += int64_t(jobs.size());
  for (size_t a = 0; a < items.size(); a++) finish_score(out[a], *items[a], reqs[a]);
  return out;
}

ChunkScore RemoteScorer::score_chunk(const std::vector<int32_t>& tokens, int n_ctx, int chunk) {
  if (b_->mode() == "echo-text")
    fail("openai backend: perplexity chunks start inside the text and cannot be sent as text (mode echo-text); this "
         "server needs token-id prompts (vLLM) for perplexity tasks");
  std::vector<int32_t> part(size_t(std::max(n_ctx, 0)));
  perplexity_chunk(*tok_, tokens, n_ctx, chunk, part.data());
  PromptLogprobs lp = logprobs(part);
  requests_++;
  ChunkScore cs;
  for (int j = perplexity_first(n_ctx) + 1; j < n_ctx; j++) {
    if (!std::isfinite(lp.logp[size_t(j)])) fail("openai backend: no log-probability for chunk token {}", j);
    cs.nll_sum -= lp.logp[size_t(j)];
    cs.n_scored++;
  }
  return cs;
}

KldBase make_kld_base_remote(const OpenAIBackend& backend, const Tokenizer& tok, int n_vocab, const std::string& text,
                             int top_k, const KldOptions& opt) {
  const int n_ctx = opt.n_ctx;
  if (backend.mode() != "prompt_logprobs" && backend.mode() != "echo-tokens")
    fail("kld: the server at {} ({}) takes prompts only as text (mode {}): perplexity chunks start inside the text, "
         "so they cannot be sent as text; kld against a served model needs token-id prompts (vLLM)",
         backend.options().base_url, backend.server_kind(), backend.mode());
  if (top_k < 1 || top_k > n_vocab) fail("kld: top-k {} outside 1..{}", top_k, n_vocab);
  if (n_ctx < 4) fail("kl: context {} is too small", n_ctx);
  const std::vector<int32_t> all = perplexity_tokens(tok, text);
  KldBase kb;
  kb.n_chunks = perplexity_chunks(all.size(), n_ctx);
  if (opt.max_chunks >= 0) kb.n_chunks = std::min(kb.n_chunks, opt.max_chunks);
  if (kb.n_chunks == 0) fail("kl: text has {} tokens, fewer than one chunk of {}", all.size(), n_ctx);
  kb.n_ctx = n_ctx;
  kb.n_vocab = n_vocab;
  kb.top_k = top_k;
  kb.tokenizer_fp = tok.fingerprint();
  kb.tokens.resize(size_t(kb.n_chunks) * size_t(n_ctx));
  for (int i = 0; i < kb.n_chunks; i++) perplexity_chunk(tok, all, n_ctx, i, kb.tokens.data() + size_t(i) * size_t(n_ctx));
  const int first = perplexity_first(n_ctx), n_out = perplexity_scored(n_ctx);
  const size_t n_scored = size_t(kb.n_chunks) * size_t(n_out), k = size_t(top_k);
  kb.logp_target.resize(n_scored);
  kb.logp_rest.resize(n_scored);
  kb.top_id.resize(n_scored * k);
  kb.top_logp.resize(n_scored * k);
  // The echo APIs key alternatives by text: a text naming exactly one id maps back to it.
  std::unordered_map<std::string, int32_t> by_text;
  std::unordered_map<std::string, int> count;
  for (int32_t id = 0; id < tok.n_vocab(); id++) {
    const std::string p = tok.piece(id);
    by_text[p] = id;
    count[p]++;
  }
  auto id_of = [&](const std::string& s) -> std::optional<int32_t> {
    auto c = count.find(s);
    if (c == count.end() || c->second != 1) return std::nullopt;
    return by_text.at(s);
  };
  std::atomic<int> done{0};
  std::mutex mu;
  parallel_for(size_t(kb.n_chunks), backend.options().max_inflight, [&](size_t c) {
    std::vector<int32_t> chunk(kb.tokens.begin() + std::ptrdiff_t(c * size_t(n_ctx)),
                               kb.tokens.begin() + std::ptrdiff_t((c + 1) * size_t(n_ctx)));
    PromptLogprobs lp = backend.prompt_logprobs(chunk, "", false, top_k, {}, id_of);
    for (int j = 0; j < n_out; j++) {
      const size_t pos = size_t(first + j + 1);
      const size_t t = c * size_t(n_out) + size_t(j);
      const auto& top = lp.top[pos];
      if (top.size() < k)
        fail("kld: the server returned {} usable alternatives of {} asked at token {} of chunk {} (its top "
             "log-probabilities are capped, e.g. vLLM's --max-logprobs, or keyed by text that names no single id); "
             "use a smaller --top-k", top.size(), k, pos, c);
      double mass = 0;
      for (size_t q = 0; q < k; q++) {
        kb.top_id[t * k + q] = top[q].first;
        kb.top_logp[t * k + q] = float(top[q].second);
        mass += std::exp(top[q].second);
      }
      kb.logp_target[t] = float(lp.logp[pos]);
      kb.logp_rest[t] = mass < 1 ? float(std::log1p(-std::min(mass, 1.0))) : -INFINITY;
    }
    std::lock_guard<std::mutex> lk(mu);
    if (opt.progress) opt.progress(++done, kb.n_chunks);
  });
  return kb;
}

bool check_tokenizers_agree(const OpenAIBackend& backend, const Tokenizer& tok,
                            const std::vector<std::string>& extra_samples) {
  std::vector<std::string> samples = {
      "The quick brown fox jumps over the lazy dog.",
      "  Leading spaces,\ttabs and\n\nnewlines   ",
      "Numbers 1234567 and 3.14159, dates 2024-01-31.",
      "Accents: café, naïve, Übermaß; CJK: 中文分词; emoji: 🙂👍",
      "Question: What is the capital of France?\nAnswer: Paris",
  };
  samples.insert(samples.end(), extra_samples.begin(), extra_samples.end());
  for (const std::string& s : samples) {
    std::optional<std::vector<int32_t>> theirs = backend.tokenize(s, tok.adds_bos());
    if (!theirs) return false;
    std::vector<int32_t> ours = tok.encode(s, tok.adds_bos(), /*parse_special=*/true);
    // llama-cpp-python's endpoint always adds the model's BOS; vLLM and llama-server follow add_special.
    if (theirs->size() == ours.size() + 1 && tok.bos() >= 0 && (*theirs)[0] == tok.bos() && !tok.adds_bos())
      theirs->erase(theirs->begin());
    if (*theirs != ours) {
      size_t k = 0;
      while (k < ours.size() && k < theirs->size() && ours[k] == (*theirs)[k]) k++;
      fail("openai backend: the server's tokenizer and the local one (--tokenizer) disagree on \"{}\": {} vs {} "
           "tokens, first difference at token {} (server {}, local {}); give the served model's own tokenizer",
           s, theirs->size(), ours.size(), k, k < theirs->size() ? std::to_string((*theirs)[k]) : "-",
           k < ours.size() ? std::to_string(ours[k]) : "-");
    }
  }
  return true;
}

}  // namespace ctrust
