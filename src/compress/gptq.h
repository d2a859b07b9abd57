// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers") and the layer Hessian it shares with SparseGPT.
#pragma once
#include <cstdint>
#include <vector>

#include "compress/quant.h"

namespace ctrust {

// Running sum of x x^T over calibration tokens for one Linear input of width n (double, [n][n]).
struct Hessian {
  int n = 0;
  int64_t tokens = 0;
  std::vector<double> sum;
};
Hessian make_hessian(int n);
// Adds rows x [rows][n] (f32) to the sum (BLAS syrk; parallel through OpenBLAS).
void hessian_add(Hessian& h, const float* x, int rows);
// c [n][n] = upper triangle of x^T x for x [rows][n] in f32 (the per-call product hessian_add accumulates).
void hessian_rows_f32(const float* x, int rows, int n, float* c);
// H = 2 X^T X / n_tokens, full symmetric [n][n]. Throws Error if no token was added.
std::vector<double> hessian_matrix(const Hessian& h);

// The preparation GPTQ and SparseGPT share, in place on the symmetric H [n][n]: dead inputs (H_ii == 0)
// get H_ii = 1 (dead[i] = 1; the caller zeroes W[:, i]), lambda = damp * mean(diag H) is added to the
// diagonal, and H is replaced by the upper Cholesky factor U of H^-1 (H^-1 = U^T U; lower part zero).
// Throws Error naming `what` if H + lambda I is not positive definite.
void inverse_cholesky_upper(std::vector<double>& H, int n, double damp, std::vector<uint8_t>& dead,
                            const char* what);

struct GptqOptions {
  QuantSpec q;
  double damp = 0.01;          // lambda = damp * mean(diag H)
  int block = 128;             // lazy batch size B
  bool act_order = false;      // columns in order of decreasing diag H
  bool static_groups = false;  // group grids from the original W before any update
};

// Quantizes W [out][in] with GPTQ given the Hessian of its inputs. r.w holds the dequantized result in the
// original column order; with act_order and dynamic groups, r.g_idx maps columns to their (permuted) group.
QuantResult gptq_quantize(const float* W, int out, int in, const Hessian& H, const GptqOptions& o);
// Same with H = 2 X^T X / n given explicitly ([in][in], symmetric).
QuantResult gptq_quantize_h(const float* W, int out, int in, std::vector<double> H, const GptqOptions& o);

}  // namespace ctrust
