// Perplexity of a token sequence with llama.cpp's protocol (tools/perplexity): the whole text is tokenized
// once with BOS, cut into chunks of ctx tokens, the first token of each chunk is replaced by BOS, and only
// the second half of each chunk is scored. PPL = exp(mean NLL); stderr as llama.cpp computes it.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace ctrust {

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
