// Activation-aware scaling methods on f32 weight matrices W [out][in] with calibration inputs X [n][in]:
// AWQ (Lin et al. 2023, reference llm-awq auto_scale.py / auto_clip.py) and SmoothQuant (Xiao et al. 2022).
// Both scale input channel j of the Linears by s_j and fold 1/s_j into the operation before them
// (RMSNorm weight, or the rows of the previous Linear), which leaves the full-precision function unchanged.
#pragma once
#include <functional>
#include <vector>

#include "compress/quant.h"
#include "io/model_file.h"

namespace ctrust {

// Per-input-channel statistics of calibration activations, accumulated over tokens.
struct ActStats {
  int n = 0;
  int64_t tokens = 0;
  std::vector<double> sum_abs;  // AWQ: mean |x_j| = sum_abs / tokens
  std::vector<double> sum_sq;   // Wanda: ||X_j||_2 = sqrt(sum_sq)
  std::vector<float> max_abs;   // SmoothQuant: max |X_j|
};
ActStats make_act_stats(int n);
void act_stats_add(ActStats& s, const float* x, int rows);
void act_stats_merge(ActStats& s, const ActStats& part);  // s += part (same width)
std::vector<float> act_mean_abs(const ActStats& s);
std::vector<float> act_col_norm(const ActStats& s);

// ---- AWQ ----
struct AwqOptions {
  QuantSpec q;
  int n_grid = 20;          // alpha in {0, 1/n_grid, ..., (n_grid-1)/n_grid}
  bool clip = true;         // weight clipping search after scaling
  int clip_grid = 20;       // shrink steps of 1/clip_grid ...
  double max_shrink = 0.5;  // ... up to (but excluding) this fraction
  int clip_tokens = 512;    // tokens sampled (every n/clip_tokens-th) for the clipping search
};

// s = mean_abs^alpha (clamped at 1e-4), normalized by sqrt(max(s) * min(s)) (llm-awq).
std::vector<float> awq_scales_for(const std::vector<float>& mean_abs, double alpha);

struct AwqSearch {
  double alpha = 0.0;
  std::vector<float> s;       // the chosen scales [in]
  std::vector<double> losses; // loss of each grid point
};
// Evaluates loss(s) for every alpha of the grid and keeps the smallest (first on ties, as llm-awq).
AwqSearch awq_search(const std::vector<float>& mean_abs, int n_grid,
                     const std::function<double(const std::vector<float>& s)>& loss);

// W' = Q(W * s) / s: the weight the scaled, quantized Linear acts as on unscaled inputs.
std::vector<float> awq_fake_quant(const float* W, int out, int in, const std::vector<float>& s, const QuantSpec& q);
// Mean squared output error of the Linears (sharing input X) after awq_fake_quant with scales s:
// the loss used for the q/k/v group and for down_proj (see docs/compression.md).
double awq_linears_loss(const std::vector<const float*>& Ws, const std::vector<int>& outs, int in, const float* X,
                        int n, const std::vector<float>& s, const QuantSpec& q);
// The same loss from the Gram matrix of the inputs instead of X: gram [in][in] = X^T X (full, symmetric) over
// n tokens; ||D X^T||^2 = sum_r d_r^T (X^T X) d_r costs out x in^2 instead of out x in x n (the driver's
// calibration has n = N x L >> in).
double awq_linears_loss_gram(const std::vector<const float*>& Ws, const std::vector<int>& outs, int in,
                             const std::vector<float>& gram, int64_t n, const std::vector<float>& s,
                             const QuantSpec& q);
// Mean squared output error of the SwiGLU MLP down(silu(gate x) * up x) when gate and up are replaced by
// awq_fake_quant(., s) (down unchanged): the loss of the gate/up group (llm-awq inspects the whole MLP).
double awq_mlp_loss(const float* gate, const float* up, const float* down, int dim, int hidden, const float* X, int n,
                    const std::vector<float>& s, const QuantSpec& q);
// The same with the unquantized MLP output ref [n][dim] computed once (awq_mlp_forward) for all grid points.
std::vector<float> awq_mlp_forward(const float* gate, const float* up, const float* down, int dim, int hidden,
                                   const float* X, int n);
double awq_mlp_loss_ref(const float* gate, const float* up, const float* down, int dim, int hidden, const float* X,
                        int n, const std::vector<float>& ref, const std::vector<float>& s, const QuantSpec& q);

// The attention module of one block, for the q/k/v scale search (llm-awq: module2inspect = self_attn, the loss
// is the mean squared error of the attention module's output, o_proj included and unquantized).
struct AwqAttention {
  int dim = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float rope_theta = 10000.0f, rope_freq_scale = 1.0f;
  RopeLayout rope = RopeLayout::Interleaved;
  const float *wq = nullptr, *wk = nullptr, *wv = nullptr;  // [qdim][dim], [kvdim][dim], [kvdim][dim]
  const float* wo = nullptr;                                // [dim][qdim]
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // biases (Qwen2) or null
};
// o(attention(rope(q X), rope(k X), v X)) for n_seq causal sequences of len rows each, positions 0..len-1
// (X [n_seq * len][dim] = the normalized block input, as the q/k/v Linears read it); the same computation as
// the engine's block (ops rope / attention / linear). Returns [n_seq * len][dim].
std::vector<float> awq_attention_forward(const AwqAttention& a, const float* X, int n_seq, int len);
// Mean squared error of that output when q, k, v (those flagged in quantize[0..2]) are replaced by
// awq_fake_quant(., s, q) and the input stays X: llm-awq's loss for the q/k/v group; ref = the unquantized
// awq_attention_forward on the same X.
double awq_attention_loss(const AwqAttention& a, const bool quantize[3], const float* X, int n_seq, int len,
                          const std::vector<float>& ref, const std::vector<float>& s, const QuantSpec& q);

// Clipping search (llm-awq auto_clip_layer) on the already scaled W, in place: per row and group, the max
// |w| is shrunk by (1 - i / clip_grid) for i < max_shrink * clip_grid, W clamped to +-max, quantized, and
// the shrink with the smallest mean squared group output error on the sampled tokens is applied.
// X must be the inputs of the scaled W (already divided by s). Returns the chosen max per [row][group].
std::vector<float> awq_clip(float* W, int out, int in, const float* X, int n, const AwqOptions& o);

// ---- SmoothQuant ----
// s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), with max|W_j| over the rows of all Linears sharing the input,
// both clamped at 1e-5 as in the reference (smooth.py smooth_ln_fcs).
std::vector<float> smoothquant_scales(const std::vector<float>& act_max, const std::vector<const float*>& Ws,
                                      const std::vector<int>& outs, int in, double alpha);

// Folding: W[:, j] *= s_j; prev[j] /= s_j (an RMSNorm weight); rows of a previous Linear /= s.
void scale_columns(float* W, int out, int in, const std::vector<float>& s);
void divide_vector(float* v, const std::vector<float>& s);
void divide_rows(float* W, int out, int in, const std::vector<float>& s);  // row r /= s[r] (out == s.size())

}  // namespace ctrust
