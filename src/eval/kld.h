// Token-level KL divergence of a model B against a base model on a text, as llama.cpp's
// `perplexity --kl-divergence`: both models run the same llama.cpp perplexity chunks in lockstep and
// every scored token contributes KL(P_base || P_B) over the full vocabulary.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace ctrust {

// Percentiles reported for KL and for Δp (fractions: 1 = max, 0.5 = median, 0 = min).
inline constexpr double kKldPercentiles[] = {1.0, 0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01, 0.001, 0.0};

struct KldStats {
  int64_t n_tokens = 0;
  int n_chunks = 0;
  double kl_mean = 0, kl_stderr = 0;
  std::vector<double> kl_pct;        // at kKldPercentiles
  double same_top = 0, same_top_stderr = 0;  // fraction of tokens where both argmax agree
  double dp_mean = 0, dp_stderr = 0, dp_rms = 0;  // Δp = p_B(correct) - p_base(correct)
  std::vector<double> dp_pct;
  double ppl_base = 0, ppl_b = 0;
  double ln_ppl_ratio = 0, ln_ppl_ratio_stderr = 0;  // mean of nll_B - nll_base per token
  double ppl_ratio = 0;              // ppl_b / ppl_base
  double cor_ln_ppl = 0;             // Pearson correlation of per-token NLLs (llama.cpp's Cor(ln PPL))
  nlohmann::json to_json() const;
};

// Accumulates tokens; rows are log-probabilities (log-softmax already applied) over n_vocab.
struct KldAccumulator {
  std::vector<double> kl, dp, nll_base, nll_b;
  int64_t same_top = 0;
  void add(const float* logp_base, const float* logp_b, int n_vocab, int32_t target);
  KldStats finish() const;
};

struct KldOptions {
  int n_ctx = 512;       // chunk length (llama.cpp -c)
  int max_chunks = -1;   // < 0: all
  std::function<void(int done, int total)> progress;
};

// Throws Error if the tokenizers differ (fingerprint) or the vocabularies have different sizes.
KldStats kl_divergence(const Model& base, const Model& b, const std::string& text, const KldOptions& opt = {});

}  // namespace ctrust
