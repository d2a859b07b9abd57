// Token-level KL divergence of a model B against a base model on a text, as llama.cpp's
// `perplexity --kl-divergence`: the text is cut into llama.cpp perplexity chunks and every scored token
// (second half of each chunk) contributes KL(P_base || P_B) over the full vocabulary.
//
// Two ways to get the base distributions:
//  * lockstep (default): both models run the same chunk, memory O(ctx x vocab), exact;
//  * a compact saved baseline (KldBase): per scored token the base's top-k log-probabilities, the log of the
//    remaining mass and the log-probability of the correct token. KL is then computed on the coarsened
//    distributions (top-k tokens + one "rest" bucket), a lower bound of the exact KL (data-processing
//    inequality); same-top, Δp and the perplexities are exact. Lockstep with top_k > 0 reports both.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "model/model.h"

namespace ctrust {

// Percentiles reported (fractions: 1 = max, 0.5 = median, 0 = min), as llama.cpp prints them.
inline constexpr double kKldPercentiles[] = {1.0, 0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01, 0.001, 0.0};
inline constexpr double kDpPercentiles[] = {1.0,  0.999, 0.99, 0.95, 0.90, 0.75, 0.5,
                                            0.25, 0.10,  0.05, 0.01, 0.001, 0.0};

struct KldStats {
  int64_t n_tokens = 0;
  int n_chunks = 0;
  int n_ctx = 0;
  double kl_mean = 0, kl_stderr = 0;
  std::vector<double> kl_pct;        // at kKldPercentiles
  double same_top = 0, same_top_stderr = 0;  // fraction of tokens where both argmax agree
  double dp_mean = 0, dp_stderr = 0, dp_rms = 0;  // Δp = p_B(correct) - p_base(correct)
  std::vector<double> dp_pct;        // at kDpPercentiles
  double ppl_base = 0, ppl_b = 0;
  double ppl_base_stderr = 0, ppl_b_stderr = 0;
  double ln_ppl_ratio = 0, ln_ppl_ratio_stderr = 0;  // mean of nll_B - nll_base per token
  double ppl_ratio = 0;              // ppl_b / ppl_base
  double cor_ln_ppl = 0;             // Pearson correlation of per-token NLLs (llama.cpp's Cor(ln PPL))
  // Top-k approximation: kl_mean above is computed from a compact baseline (mode "topk"), or, in lockstep
  // with top_k > 0, the same tokens' top-k KL and its error against the exact value.
  std::string mode = "exact";        // "exact" or "topk"
  int top_k = 0;
  double topk_kl_mean = -1;          // lockstep only: mean top-k KL
  double topk_err_mean = -1;         // mean of (exact - top-k) >= 0
  double topk_err_max = -1;          // max over tokens of (exact - top-k)
  double topk_err_rel = -1;          // topk_err_mean / kl_mean
  std::vector<double> per_token_kl;  // KL of every scored token, in text order
  // The other per-token values (text order), for a paired comparison of two models (KldTokens).
  std::vector<int32_t> per_token_target;
  std::vector<double> per_token_nll_base, per_token_nll_b;
  std::vector<uint8_t> per_token_same;  // 1: both argmax agree
  nlohmann::json to_json() const;    // without the per-token vectors
};

// Accumulates tokens; rows are log-probabilities (log-softmax already applied) over n_vocab.
struct KldAccumulator {
  std::vector<double> kl, kl_topk, dp, nll_base, nll_b;
  std::vector<int32_t> target;
  std::vector<uint8_t> same;
  int64_t same_top = 0;
  void add(const float* logp_base, const float* logp_b, int n_vocab, int32_t target);
  // Compact base: k (id, log-prob) pairs sorted by log-prob descending (ids[0] is the base's top token),
  // log of the base mass outside them, the base log-prob of the target.
  void add_topk(const int32_t* ids, const float* logp, int k, float logp_rest, float logp_target,
                const float* logp_b, int n_vocab, int32_t target);
  KldStats finish() const;
  std::vector<uint8_t> mark;  // add_topk's scratch for kl_topk_token (n_vocab bytes, all zero between calls)
};

// The coarsened KL of one token: sum over the top-k of p (lp - lq) + r_p (log r_p - log r_q), where
// r_q is B's mass outside the k ids. `mark` is scratch of n_vocab bytes, all zero (left zero).
double kl_topk_token(const int32_t* ids, const float* logp, int k, float logp_rest, const float* logp_b,
                     int n_vocab, std::vector<uint8_t>& mark);

struct KldOptions {
  int n_ctx = 512;       // chunk length (llama.cpp -c)
  int max_chunks = -1;   // < 0: all
  int top_k = 0;         // lockstep: > 0 also computes the top-k approximation and its error
  std::function<void(int done, int total)> progress;
};

// Lockstep: throws Error if the tokenizers differ (fingerprint) or the vocabularies have different sizes.
KldStats kl_divergence(const Model& base, const Model& b, const std::string& text, const KldOptions& opt = {});

// Compact saved baseline.
struct KldBase {
  int n_ctx = 0, n_vocab = 0, n_chunks = 0, top_k = 0;
  uint64_t tokenizer_fp = 0;
  std::vector<int32_t> tokens;       // n_chunks x n_ctx, as evaluated (BOS already placed)
  std::vector<float> logp_target;    // per scored token
  std::vector<float> logp_rest;      // per scored token: log of the mass outside the top-k (-inf: none)
  std::vector<int32_t> top_id;       // per scored token: top_k ids, log-prob descending
  std::vector<float> top_logp;
  int64_t n_scored() const { return int64_t(logp_target.size()); }
};

// Runs the base model on the text's chunks and keeps top_k log-probs per scored token.
KldBase make_kld_base(const Model& base, const std::string& text, int top_k, const KldOptions& opt = {});
void save_kld_base(const KldBase& kb, const std::string& path);
// Throws Error("<path>: ...") on a foreign, truncated or inconsistent file.
KldBase load_kld_base(const std::string& path);
// KL of B against a saved baseline (mode "topk"). If text is not empty, its tokens must be the baseline's.
KldStats kl_divergence(const KldBase& kb, const Model& b, const std::string& text, const KldOptions& opt = {});

// ---------------------------------------------------------------------------------------------------
// Paired comparison of two models scored on the same tokens against the same base (`kld --save-tokens`,
// `kld --paired A B`). Differences of two files' KLs are far more certain than their unpaired standard errors
// suggest: per token, d = KL_B - KL_A; tokens of one chunk share a context, so besides the token-level standard
// error (tokens treated as independent, as llama.cpp's ±) the chunk is the unit: the standard error of the chunk
// means of d and a percentile bootstrap over chunks (every chunk has the same number of scored tokens).

// The per-token results of one run.
struct KldTokens {
  int n_ctx = 0, n_chunks = 0, top_k = 0;
  std::string mode;                  // "exact" or "topk" (KldStats::mode)
  std::string base, model;           // for the record
  std::vector<int32_t> target;       // the scored token ids
  std::vector<double> kl, nll_base, nll_b;
  std::vector<uint8_t> same;         // 1: the top tokens agree
  int64_t n() const { return int64_t(kl.size()); }
};
KldTokens kld_tokens(const KldStats& s, const std::string& base, const std::string& model);
// Text file: "# ctrust kld tokens v1" and "# key value" lines (n_ctx, n_chunks, mode, top_k, base, model), a
// header row, then one tab-separated row per scored token: chunk, target, kl, nll_base, nll_b, same_top.
void save_kld_tokens(const KldTokens& t, const std::string& path);
// Throws Error("<path>: ...") on a foreign or malformed file.
KldTokens load_kld_tokens(const std::string& path);

// One paired statistic: means of A and B, their difference B - A, its standard errors and bootstrap interval.
struct PairedStat {
  double a = 0, b = 0, delta = 0;
  double se_tokens = 0;   // SE of the mean of per-token differences (tokens independent)
  double se_chunks = 0;   // SE of the mean of per-chunk mean differences (n_chunks - 1 df)
  Interval ci;            // percentile bootstrap over chunks of delta (ci.se: the bootstrap SE)
  nlohmann::json to_json() const;
};
struct KldPaired {
  int64_t n_tokens = 0;
  int n_chunks = 0, n_ctx = 0;
  std::string mode;
  int top_k = 0;
  std::string model_a, model_b, base;
  PairedStat kl;          // mean token KL to the base
  PairedStat nll;         // mean NLL of the text: delta = ln(PPL_B / PPL_A)
  PairedStat same_top;    // fraction of tokens whose top token is the base's
  double kl_ratio = 0;    // mean KL_B / mean KL_A
  Interval kl_ratio_ci;   // its percentile bootstrap over chunks
  double b_lower = 0;     // fraction of tokens with KL_B < KL_A
  double b_higher = 0;    // fraction with KL_B > KL_A
  BootstrapOptions boot;
  nlohmann::json to_json() const;
};
// Throws Error unless a and b were scored on the same tokens (n_ctx, chunks, targets) against the same base
// (per-token base NLLs equal to 1e-4) in the same mode (exact, or top-k with the same k).
KldPaired kld_paired(const KldTokens& a, const KldTokens& b, const BootstrapOptions& opt = {10000, 42, 0.95});

}  // namespace ctrust
