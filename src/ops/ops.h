// Elementwise and row kernels of the transformer: RMSNorm, RoPE (both pair layouts), softmax, SiLU, GELU.
// All work on contiguous float rows; accumulations that feed a normalization are done in double,
// as ggml does (rms_norm, soft_max), so results track llama.cpp closely.
#pragma once
#include <cstdint>

#include "io/model_file.h"

namespace ctrust {

// y[r][i] = x[r][i] / sqrt(mean_i(x[r]^2) + eps) * w[i], for `rows` rows of n. y may equal x.
void rmsnorm(const float* x, const float* w, float* y, int rows, int n, float eps);

// Rotation angles of RoPE: theta_i(pos) = pos * freq_scale * base^(-2i/head_dim), i in [0, head_dim/2).
// Fills cos/sin tables [n_pos][head_dim/2] for positions pos0 .. pos0+n_pos-1.
void rope_tables(int pos0, int n_pos, int head_dim, float base, float freq_scale, float* cos_t, float* sin_t);

// Rotates every head of `rows` rows in place; row r uses the tables' row r. Each row holds n_heads heads of
// head_dim values (row stride = n_heads*head_dim). Pair i of a head is (2i, 2i+1) for Interleaved,
// (i, i + head_dim/2) for NeoX: (a, b) -> (a cos - b sin, a sin + b cos).
void rope(float* x, int rows, int n_heads, int head_dim, RopeLayout layout, const float* cos_t,
          const float* sin_t);

// In-place softmax of one row: mx = the max (x[i] > mx ? x[i] : mx from -inf), e = std::exp(x - mx), their sum in
// double in index order, then x *= (float)(1 / sum). Vectorized (ops/vexp.h: exp bit-identical to std::exp),
// equal bit for bit to softmax_ref, the plain loop.
void softmax(float* x, int n);

// x / (1 + exp(-x))
inline float silu(float x) { return x / (1.0f + __builtin_expf(-x)); }
// out[i] = silu(gate[i]) * up[i]  (SwiGLU); out may equal gate. The exponentials by exp_f32 (ops/vexp.h), so
// bit-identical to swiglu_ref, the plain loop (test Ops.SwigluEqualsReference).
void swiglu(const float* gate, const float* up, float* out, int64_t n);
void swiglu_ref(const float* gate, const float* up, float* out, int64_t n);

// GELU (tanh approximation) as ggml's CPU backend computes it (GGML_GELU_FP16, ggml_vec_gelu_f32): x <= -10 -> 0,
// x >= 10 -> x, otherwise x is rounded to f16 and the f16 value of 0.5 x (1 + tanhf(sqrt(2/pi) x (1 + 0.044715 x^2)))
// at that f16 point is looked up (a 65,536-entry table made once). Its error against exact GELU is the f16
// rounding (relative ~5e-4): kept, so that ctrust computes llama.cpp's numbers.
float gelu_ggml(float x);
// out[i] = gelu_ggml(gate[i]) * up[i]  (GeGLU, ggml_vec_geglu_f32); out may equal gate.
void geglu(const float* gate, const float* up, float* out, int64_t n);
// The gated activation of the model's FFN (swiglu or geglu).
void gated_act(Activation a, const float* gate, const float* up, float* out, int64_t n);

}  // namespace ctrust
