// `ctrust perplexity` as a library call: a text file's perplexity under llama.cpp's chunk protocol
// (model/perplexity.h), with the file's token count and the time it took. Text: report/eval_text.h.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/perplexity.h"

namespace ctrust {

struct PerplexityRunResult {
  std::string model, compute, file;
  int ctx = 0;
  size_t n_tokens = 0;  // the file's tokens (with BOS)
  PerplexityResult ppl;
  double seconds = 0;   // tokenization and every chunk
  double tokens_per_s() const { return ppl.n_chunks * double(ctx) / seconds; }
  nlohmann::json to_json() const;  // model, compute, file, ctx, n_chunks, n_scored, ppl, ppl_stderr, seconds, tokens_per_s
};

// max_chunks < 0: all. progress(done, total, ppl so far, seconds so far) after each chunk.
PerplexityRunResult perplexity_run(const Model& m, const std::string& model_path, const std::string& file, int ctx,
                                   int max_chunks,
                                   const std::function<void(int, int, double, double)>& progress = {});

}  // namespace ctrust
