// Pruning of f32 weight matrices W [out][in]: magnitude, Wanda (Sun et al. 2023) and SparseGPT
// (Frantar & Alistarh 2023), unstructured at a target sparsity or semi-structured N:M along the input
// dimension (N kept of every M consecutive input weights of a row).
#pragma once
#include <cstdint>
#include <vector>

#include "compress/gptq.h"

namespace ctrust {

struct PruneSpec {
  double sparsity = 0.5;  // unstructured: fraction of weights set to zero, in [0, 1)
  int n = 0, m = 0;       // m > 0: N:M semi-structured (keep n of every m); sparsity is then 1 - n/m
};

struct PruneResult {
  int out = 0, in = 0;
  std::vector<float> w;   // [out][in], pruned (and, for SparseGPT, updated) weights
  std::vector<uint8_t> keep;  // [out][in] 1 = kept by the mask (0 = pruned; a kept weight may still be 0)
  int64_t zeros = 0;      // weights that are exactly zero in w
  double sparsity = 0.0;  // zeros / (out * in): the achieved sparsity
};

// Throws Error for sparsity outside [0, 1), N > M, N < 1, or M not dividing `in`.
void check_prune_spec(const PruneSpec& p, int out, int in, const char* what = "prune");

// |W| with one threshold per tensor (floor(sparsity * out * in) weights removed), or N:M by |W|.
PruneResult prune_magnitude(const float* W, int out, int in, const PruneSpec& p);
// Wanda: score |W_ij| * ||X_j||_2 compared within each output row (floor(sparsity * in) removed per row),
// or N:M by that score. col_norm[j] = ||X_j||_2 over the calibration tokens.
PruneResult prune_wanda(const float* W, int out, int in, const float* col_norm, const PruneSpec& p);

struct SparseGptOptions {
  PruneSpec p;
  double damp = 0.01;  // as GPTQ
  int block = 128;     // lazy batch and adaptive mask selection block
};
// SparseGPT: OBS mask selection by w^2 / [U]_ii^2 (U = upper Cholesky factor of H^-1) and weight update.
// Unstructured: the mask of each block of `block` columns is chosen over the whole block (rows x block) when
// the block is reached; N:M: per group of M columns of a row when its first column is reached.
PruneResult sparsegpt_prune(const float* W, int out, int in, const Hessian& H, const SparseGptOptions& o);
PruneResult sparsegpt_prune_h(const float* W, int out, int in, std::vector<double> H, const SparseGptOptions& o);
// SparseGPT's joint mode (the reference's fasterprune with a quantizer, `--wbits`): mask and quantization in the
// same column sweep; the kept weights land on the GPTQ grid of qs (per channel: fitted to the original W, as the
// reference; groups: fitted to the current weights at the group's first column, as GPTQ's dynamic groups), the
// pruned ones are exactly 0 (qs.zero_point is forced: 0 on the grid). Result: w, grids, keep and the N:M pattern.
QuantResult sparsegpt_quantize_h(const float* W, int out, int in, std::vector<double> H, const SparseGptOptions& o,
                                 const QuantSpec& qs);
// Magnitude / Wanda + quantization: RTN of the pruned weights on the GPTQ grid of qs (zero_point forced), the
// mask kept (what llm-compressor does when a sparsity stage is followed by a quantization stage, without GPTQ).
QuantResult prune_then_quantize(const PruneResult& pr, const PruneSpec& p, const QuantSpec& qs);

// Number of weights removed from n at the given sparsity: floor(sparsity * n), robust to the rounding of
// sparsity * n (0.7 * 1920 = 1343.9999...).
int64_t prune_count(double sparsity, int64_t n);

// Counts zeros and fills r.zeros / r.sparsity.
void count_sparsity(PruneResult& r);

}  // namespace ctrust
