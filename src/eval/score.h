// Log-likelihood scoring of task items with the model: each choice's continuation given its context,
// the shared context evaluated once per item (KV cache truncated back to it for every choice).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/task.h"
#include "model/model.h"
#include "model/perplexity.h"

namespace ctrust {

// The token sequences of one request, as lm-evaluation-harness builds them: trailing spaces of the
// context move to the continuation, whole = encode(context + continuation) (with BOS if the tokenizer
// adds one), and the continuation is whole[len(encode(context)):]. If the boundary merges so that no
// continuation token is left, the two parts are encoded separately. An empty context becomes BOS
// (or EOS if there is no BOS), as lm-eval does with its end-of-text token.
struct Request {
  std::vector<int32_t> tokens;  // context + continuation
  int ctx_len = 0;              // tokens[ctx_len..) are scored
  int truncated = 0;            // tokens cut from the left to fit the context (item_requests)
  int cont_dropped = 0;         // of those, continuation tokens (left unscored: the continuation alone is too long)
};
Request make_request(const Tokenizer& tok, const std::string& context, const std::string& continuation);

struct ItemScore {
  std::vector<double> ll;        // sum of log p over each choice's continuation tokens
  std::vector<int> n_tokens;     // continuation tokens per choice
  std::vector<int> n_bytes;      // bytes of each bare choice text (acc_norm divisor)
  std::vector<bool> greedy;      // every continuation token is the argmax
  int pred = 0;                  // argmax ll                      (acc)
  int pred_norm = 0;             // argmax ll / n_bytes            (acc_norm, lm-evaluation-harness)
  int pred_mean = 0;             // argmax ll / n_tokens           (token-mean, llama.cpp hellaswag)
  bool correct = false, correct_norm = false, correct_mean = false;
  double mc2 = -1;               // n_true > 0: probability mass on the true choices
  int truncated = 0;             // most tokens cut from the left of any choice's request (0: the item fits)
  int cont_dropped = 0;          // most continuation tokens left unscored (continuation longer than the context)
  nlohmann::json extra() const;  // everything but ll/pred/correct, for the results store
};

// The requests of an item's choices, cut from the left to fit a cache of n_ctx slots (see score_item).
std::vector<Request> item_requests(const Tokenizer& tok, int n_ctx, const TaskItem& item);
// acc / acc_norm / token-mean predictions, correctness and mc2 of an item from the per-choice sums in s.ll
// (s.n_tokens, s.n_bytes, s.greedy filled), and the truncation counts of its requests.
void finish_score(ItemScore& s, const TaskItem& item, const std::vector<Request>& req);
// Bytes of choice i's bare text (the acc_norm divisor).
int bytes_of_choice(const TaskItem& item, size_t i);

// Scores one item. `cache` must have been made for `m`; it is reset (truncate(0)) first.
// Requests longer than the cache are cut from the left like lm-evaluation-harness's _loglikelihood_tokens:
// the model sees the last n_ctx tokens of (context + continuation)[:-1], i.e. (context + continuation) keeps
// its last n_ctx + 1 tokens, and every continuation token is scored. Where lm-eval asserts (a continuation
// longer than n_ctx), ctrust scores the continuation's last n_ctx tokens and records cont_dropped.
ItemScore score_item(const Model& m, KVCache& cache, const TaskItem& item);

// The same scores, computed faster: for each item ONE batched forward (forward_masked) runs the part of the
// context not yet in the cache and every choice's continuation tokens, each continuation attending to the
// context and only to its own earlier tokens; logits are computed only for the rows that predict continuation
// tokens. After an item the cache keeps its context, so the next item reuses the longest common prefix (an
// MMLU subject's few-shot header is computed once per subject). Equal to score_item up to float rounding
// (tested to 1e-4 per choice). Choices that do not fit one batch go in further batches after the context.
// score_batch also packs several items into one forward (block-diagonal mask), so the matrix products get
// a few hundred rows even for short items.
class ItemScorer {
 public:
  // n_ctx: cache slots (requests are cut from the left to fit, as in score_item);
  // max_batch: new tokens per forward (a longer context runs ahead in chunks).
  ItemScorer(const Model& m, int n_ctx, int max_batch = 512);
  ItemScore score(const TaskItem& item);
  // Several items: as many as fit in one forward of max_batch new tokens are packed together (each item's
  // context and choices see only that item; the context they all share with the cache is reused). An item
  // that does not fit with others is scored alone as by score(). Results in the order of `items`.
  std::vector<ItemScore> score_batch(const std::vector<const TaskItem*>& items);
  void reset();                                   // forget the cached context
  int64_t tokens_run() const { return tokens_run_; }  // tokens run by the engine so far
  int64_t forwards() const { return forwards_; }      // forward passes so far
  int64_t rows_out() const { return rows_out_; }      // logit rows (output head + log-softmax) computed so far
  int n_ctx() const { return cache_.n_ctx; }

 private:
  // forward_masked of the packed rows (tokens, positions, mask, output rows) into logits_, each output row
  // turned into log-probabilities; counts tokens_run_ / forwards_.
  void run_packed(const std::vector<int32_t>& tok, const std::vector<int32_t>& pos,
                  const std::vector<unsigned char>& mask, const std::vector<int32_t>& out_rows);

  const Model* m_;
  KVCache cache_;
  ForwardState st_;              // the activations of every forward pass of this scorer (freed with it)
  std::vector<int32_t> cached_;  // the tokens in cache slots [0, cached_.size())
  std::vector<float> logits_;    // output rows of the last forward (kept to avoid re-allocating)
  std::vector<int32_t> best_;    // the argmax of each of those rows
  int max_batch_;
  // False when some Linear runs in LLM.int8() outlier mode: its outlier columns depend on every row of a
  // forward, so items are then scored alone and from a fresh cache (results independent of their neighbours).
  bool share_forwards_ = true;
  int64_t tokens_run_ = 0, forwards_ = 0, rows_out_ = 0;
};

// Chunk `chunk` of llama.cpp's perplexity protocol (model/perplexity.h): the negative log-likelihood of its
// scored tokens (log_softmax rows).
struct ChunkScore {
  double nll_sum = 0;  // -sum log p of the scored tokens (second half of the chunk)
  int64_t n_scored = 0;
};
ChunkScore score_chunk(const Model& m, const std::vector<int32_t>& tokens, int n_ctx, int chunk);
// The same with a runner kept across chunks (its KV cache and logits allocated once): the same numbers.
ChunkScore score_chunk(PplChunkRunner& runner, const Model& m, const std::vector<int32_t>& tokens, int chunk);

}  // namespace ctrust
