// llama.cpp's perplexity-chunk protocol (tools/perplexity, ppl_stride 0), written once; perplexity() below, the
// eval perplexity task (eval/score.h score_chunk, and its remote twin in eval/remote_score.h) and the KL
// commands (eval/kld.h: lockstep, the saved top-k base, the remote base) all cut and run chunks with it:
//  * the whole text is tokenized once, with BOS (perplexity_tokens);
//  * chunk i covers tokens [i*ctx, (i+1)*ctx) (whole chunks only: perplexity_chunks), and its first token is
//    replaced by BOS when the tokenizer adds BOS (perplexity_chunk);
//  * each chunk runs from an empty cache in two forward passes: its first half (ctx/2 tokens) without logits,
//    then the second half, whose positions ctx/2 .. ctx-2 give the logits that score tokens ctx/2+1 .. ctx-1
//    (ctx - 1 - ctx/2 per chunk) (PplChunkRunner).
// perplexity() then scores as llama.cpp: PPL = exp(mean NLL), stderr as llama.cpp computes it.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"

namespace ctrust {

// The text's tokens, with BOS when the tokenizer adds one.
std::vector<int32_t> perplexity_tokens(const Tokenizer& tok, const std::string& text);
std::vector<int32_t> perplexity_tokens(const Model& m, const std::string& text);
// Whole chunks of n_ctx tokens in n_tokens. Throws Error if n_ctx < 4.
int perplexity_chunks(size_t n_tokens, int n_ctx);
// The first position whose logits score a token, and the number of tokens scored per chunk.
inline int perplexity_first(int n_ctx) { return n_ctx / 2; }
inline int perplexity_scored(int n_ctx) { return n_ctx - 1 - n_ctx / 2; }
// Chunk i (tokens [i*n_ctx, (i+1)*n_ctx)) into out[0..n_ctx), out[0] = BOS when the tokenizer adds BOS.
// Throws Error if the chunk is not inside the tokens.
void perplexity_chunk(const Tokenizer& tok, std::span<const int32_t> tokens, int n_ctx, int i, int32_t* out);

// Runs chunks of one model: its cache and activations are made once and reused for every chunk.
class PplChunkRunner {
 public:
  PplChunkRunner(const Model& m, int n_ctx);
  // chunk: n_ctx tokens as perplexity_chunk gives them. Returns the logits of positions first .. n_ctx-2
  // (perplexity_scored(n_ctx) rows of n_vocab), valid until the next run(); row j scores chunk[first + j + 1].
  float* run(const int32_t* chunk);
  int n_ctx() const { return n_ctx_; }

 private:
  const Model* m_;
  int n_ctx_;
  KVCache cache_;
  ForwardState st_;
  std::vector<float> logits_;
};

struct PerplexityResult {
  double ppl = 0;
  double ppl_stderr = 0;
  int n_chunks = 0;
  int64_t n_scored = 0;
  std::vector<double> chunk_nll;  // mean NLL of each chunk's scored tokens
};

// max_chunks < 0: all chunks. progress(done, total, ppl so far) after each chunk.
PerplexityResult perplexity(const Model& m, const std::vector<int32_t>& tokens, int ctx, int max_chunks,
                            const std::function<void(int, int, double)>& progress = {});

}  // namespace ctrust
