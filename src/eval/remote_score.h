// Scoring task items with a served model (backend/openai.h) instead of ctrust's own engine: each choice's request
// is built exactly as for the local scorer (make_request / item_requests with the local tokenizer, lm-eval's
// rules), sent as one prompt, and its continuation tokens' log-probabilities summed. The ItemScore is the local
// scorer's (acc, acc_norm, token-mean, greedy, mc2), so stored runs compare item by item. docs/remote.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend/openai.h"
#include "eval/kld.h"
#include "eval/score.h"
#include "io/tokenizer.h"

namespace ctrust {

class RemoteScorer {
 public:
  // n_ctx: the context the requests are cut to (as ItemScorer's cache).
  RemoteScorer(const OpenAIBackend& backend, const Tokenizer& tok, int n_ctx);
  ItemScore score(const TaskItem& item);
  // Every choice of every item is one request; at most backend.options().max_inflight run at once.
  std::vector<ItemScore> score_batch(const std::vector<const TaskItem*>& items);
  // A perplexity chunk (llama.cpp's protocol, as score_chunk): the log-probabilities of the chunk's second half.
  ChunkScore score_chunk(const std::vector<int32_t>& tokens, int n_ctx, int chunk);
  int64_t requests() const { return requests_; }

 private:
  PromptLogprobs logprobs(const std::vector<int32_t>& tokens) const;
  const OpenAIBackend* b_;
  const Tokenizer* tok_;
  int n_ctx_;
  int64_t requests_ = 0;
};

// Checks that the server's tokenizer (its tokenize endpoint) and the local one agree on a fixed sample of texts
// (ASCII, digits, accents, CJK, emoji, runs of spaces and newlines, the chat template's special tokens); throws
// Error naming the first text where they differ. Returns false (nothing checked) when the server has no tokenize
// endpoint.
// A compact KL baseline (eval/kld.h, KldBase) of the served model on a text: llama.cpp's perplexity chunks sent as
// token ids, the server's top-k log-probabilities of every scored token. KL against it is the top-k lower bound
// (the server returns no full distributions). Needs a token-id mode (prompt_logprobs or echo-tokens) whose
// alternatives name ids (all k of them, at every position); throws Error otherwise. n_vocab: the local vocabulary.
KldBase make_kld_base_remote(const OpenAIBackend& backend, const Tokenizer& tok, int n_vocab, const std::string& text,
                             int top_k, const KldOptions& opt);

bool check_tokenizers_agree(const OpenAIBackend& backend, const Tokenizer& tok,
                            const std::vector<std::string>& extra_samples = {});

}  // namespace ctrust
