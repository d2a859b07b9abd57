// llama.cpp K-quant grids (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) for the quantizers: one super-block of 256 consecutive
// input columns of a row has fp16 d (and dmin) and per-sub-block scales (and mins) quantized as ggml stores them.
// The fitting is a port of ggml's quantize_row_*_ref (no importance) and quantize_row_*_impl (with importance
// weights, llama-quantize --imatrix) from ggml-quants.c (llama.cpp 0c1e570); docs/compression.md, "K-quants".
#pragma once
#include <cstdint>

#include "io/gguf.h"

namespace ctrust {

constexpr int kQK_K = 256;  // values per super-block

bool is_kquant(GgmlType t);
// The parameters of one super-block as ggml stores them. sc/mn per sub-block:
//   Q4_K/Q5_K (8 sub-blocks of 32): 6-bit scale and min;  Q2_K (16 of 16): 4-bit scale and min;
//   Q3_K (16 of 16): 6-bit scale stored biased (+32);      Q6_K (16 of 16): int8 scale (stored as its byte).
// lfit: the levels of ggml's fit (kept by ggml for a sub-block whose scale is 0).
struct KBlock {
  GgmlType type = GgmlType::Q4_K;
  uint16_t d = 0, dmin = 0;  // fp16 bits
  uint8_t sc[16] = {}, mn[16] = {};
  uint8_t lfit[kQK_K] = {};
};

// Fits the super-block params to x[0..256) as ggml does: quant_weights == nullptr gives quantize_row_<t>_ref,
// otherwise quantize_row_<t>_impl with those importance weights (the imatrix of these 256 columns).
KBlock kquant_fit(GgmlType t, const float* x, const float* quant_weights);
// ggml's level (stored form: Q2_K 0..3, Q3_K 0..7, Q4_K 0..15, Q5_K 0..31, Q6_K 0..63) for value x at
// position j (0..255) of the block: nearest_int of x on the sub-block's grid, clamped (ggml's requantization).
int kquant_level(const KBlock& b, int j, float x);
// The value ggml's dequantization gives for level L at position j (bit for bit, same arithmetic).
float kquant_value(const KBlock& b, int j, int L);
// Writes the block (ggml layout, ggml_type_info(t)->type_size bytes) with levels L[256] (stored form).
void kquant_encode(const KBlock& b, const uint8_t* L, uint8_t* out);

// The scale ggml's legacy quantizers choose for one block of 32 values. Symmetric (Q4_0, Q5_0, Q8_0): without
// importance quantize_row_<t>_ref's (max / -8, max / -16 with max the signed extreme; amax / 127 for Q8_0), with
// importance quantize_row_<t>_impl's weighted search make_qx_quants(32, 8|16, x, weights qw * sqrt(sigma2 + x^2))
// (sigma2 = the row's mean x^2; Q8_0 has no weighted variant). Values are (q - 8|16) * d, q * d for Q8_0.
// With a minimum (Q4_1, Q5_1; `min` must then be given and receives ggml's m): without importance the block's
// (max - min) / 15|31 and m = min, with importance quantize_row_q{4,5}_1_impl's make_qkx3_quants(32, 15|31, x,
// weights, ..., -0.9, 0.05, 36) (d and m = -the_min, m <= 0). Values are q * d + m. Both fp32, before ggml
// rounds them to fp16.
float ggml_legacy_scale(GgmlType t, const float* x, const float* quant_weights, float sigma2, float* min = nullptr);

// ggml's quantize_<t>(src, dst, rows, n_per_row, imatrix): rows of n_per_row (a multiple of 256) values;
// imatrix (n_per_row values, may be null) is shared by all rows.
void kquant_quantize_rows(GgmlType t, const float* src, uint8_t* dst, int64_t rows, int64_t n_per_row,
                          const float* imatrix);

}  // namespace ctrust
