// Uniform weight quantization grids and round-to-nearest (RTN) quantization of f32 weight matrices.
// Convention for every matrix in src/compress: W is [out][in] row-major (ggml ne = {in, out}); groups run
// along the input dimension (G consecutive input columns of one output row share a grid).
// The grid is the one of the GPTQ reference code (Quantizer.find_params), see docs/compression.md.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "io/gguf.h"

namespace ctrust {

struct QuantSpec {
  int bits = 4;             // 2..8
  bool sym = false;         // symmetric: zero point fixed at 2^(bits-1)
  int group = 0;            // 0 = one grid per output row; else G consecutive input columns (must divide in)
  bool fp16_scales = false; // round scale (and the asymmetric minimum) to fp16 as GGUF stores them
  bool minmax = false;      // asymmetric only: the grid spans the group's [min, max] exactly (ggml's Q4_1 form:
                            // a real-valued minimum, 0 not forced onto the grid) instead of the GPTQ grid
  // A llama.cpp K-quant type (Q2_K..Q6_K, compress/kquant.h): the grid is that type's super-block of 256 input
  // columns (bits/sym/group/fp16_scales/minmax are then ignored); F32 = the grid above.
  GgmlType ktype = GgmlType::F32;
  // Group-32 grids of the legacy types: symmetric Q4_0/Q5_0/Q8_0 (bits 4/5/8) and asymmetric Q4_1/Q5_1 (bits
  // 4/5): the scale (and minimum) chosen by ggml's own quantizer for that type (ggml_legacy_scale, weighted by
  // kweights when set) instead of the GPTQ reference's grid.
  bool ggml_fit = false;
  // Asymmetric with fp16 scales: keep the GPTQ form (q - zero) * scale with an integer zero point (0 exactly on the
  // grid; CTRUST_QX "zp" with an f16 scale) instead of ggml's affine q * d + m (m = fp16(-zero * d), where 0 is
  // not exactly a level). Pruning + quantization uses it: a pruned weight is quantize(0) = 0 as in SparseGPT's
  // reference.
  bool zero_point = false;
  const float* kweights = nullptr;  // [in] importance of each input column for the K-quant fit (an imatrix:
                                    // ggml's quantize_row_*_impl); null = ggml's quantize_row_*_ref
};

// The grid of one group. q is an integer in [0, 2^bits - 1].
//   affine == false:  value = (q - zero) * scale          (GPTQ / Q4_0 / Q8_0 form)
//   affine == true:   value = q * scale + min             (ggml Q4_1 form; asymmetric, with fp16_scales or minmax)
struct QuantGrid {
  float scale = 1.0f;
  float zero = 0.0f;
  float min = 0.0f;
  bool affine = false;
};

int quant_maxq(int bits);
// The grid fitted to values x[0..n): min/max including 0 with an integer zero point, as the GPTQ reference
// does; with s.minmax (asymmetric) min/max of the values themselves, as ggml's Q4_1 quantizer does.
QuantGrid fit_grid(const float* x, int64_t n, const QuantSpec& s);
// With s.ggml_fit (group 32; symmetric 4/5/8 bits or asymmetric 4/5 bits): the grid of ggml's legacy quantizer for
// x[0..32), fp16 scale (and minimum); qw = the importance of these 32 columns (or null), sigma2 = the row's mean
// x^2. Else fit_grid.
QuantGrid fit_grid_for(const float* x, int64_t n, const QuantSpec& s, const float* qw, float sigma2);
inline float grid_q(const QuantGrid& g, float x, float maxq);  // integer level (as float)
// The affine form is one fused multiply-add, explicitly: a compiler may or may not contract `q * scale + min`
// (g++ does for C++ with FMA hardware), and the stored-type decoder (CTRUST_QX) must give the same bits. With
// fp16 scales and <= 8 bits the product is exact, so this equals ggml's Q4_1/Q5_1 `q * d + m` as well.
inline float grid_value(const QuantGrid& g, float q) {
  return g.affine ? std::fma(q, g.scale, g.min) : (q - g.zero) * g.scale;
}
float quantize_value(const QuantGrid& g, float x, int bits);   // nearest grid value

struct QuantResult {
  int out = 0, in = 0;
  QuantSpec spec;
  int group = 0;                 // effective group size (in for per-channel)
  int n_groups = 0;              // grids per row
  std::vector<float> w;          // [out][in] dequantized values, exactly on the grids
  std::vector<QuantGrid> grids;  // [out][n_groups]
  std::vector<int32_t> g_idx;    // [in] group of each input column; empty = column / group (contiguous)
  std::vector<uint8_t> kbytes;   // K-quant results (spec.ktype): the ggml blocks (grids is empty)
  // Pruning + quantization: keep[out][in] = 1 for the kept weights (the others are exactly 0) and the N:M pattern
  // (prune_m = 0: unstructured). An N:M result is stored as CTRUST_NMQX (mask + levels of the kept weights).
  std::vector<uint8_t> keep;
  int prune_n = 0, prune_m = 0;
  int group_of(int col) const { return g_idx.empty() ? col / group : g_idx[col]; }
};

// Throws Error if bits are outside 2..8 or the group size does not divide `in` (group 0 is always valid), or,
// for a K-quant type, if 256 does not divide `in`.
void check_quant_spec(const QuantSpec& s, int out, int in, const char* what = "weight");
QuantResult rtn_quantize(const float* W, int out, int in, const QuantSpec& s);

// The int8 weight grid of SmoothQuant and LLM.int8(): per output row, scale = absmax / 127, q in [-127, 127]
// (returned as a QuantResult with bits 8, sym, zero 0 and per-row grids). The two references round differently:
// SmoothQuant's fake_quant.py quantize_weight_per_channel_absmax q = round(w / scale) (Int8Round::Divide),
// bitsandbytes' int8_vectorwise_quant q = round(w * (127 / absmax)) (Int8Round::Multiply). They differ at half-way
// points, which weights on a coarser grid (a Q4_1 file's) do reach (test CompressQuant.Int8RoundingsDifferAtHalfWays).
enum class Int8Round { Divide, Multiply };
QuantResult quantize_rows_absmax_int8(const float* W, int out, int in, Int8Round round = Int8Round::Divide);

// GGUF packing. The ggml type whose dequantization reproduces r.w bit for bit (Q4_0: 4-bit sym group 32,
// Q4_1: 4-bit asym group 32 with affine fp16 grids, Q8_0: 8-bit sym group 32), or F32 if none does.
// Every element is checked; a grid whose scale/min is not exactly an fp16 number never packs.
GgmlType packable_type(const QuantResult& r);
// Bytes of r.w in type t (t must be packable_type(r)); throws Error otherwise.
std::vector<uint8_t> pack_ggml(const QuantResult& r, GgmlType t);

// The storage of one compressed matrix in a GGUF file (docs/compression.md, "Packed storage").
struct PackedTensor {
  GgmlType type = GgmlType::F32;  // F32: no exact packed form (the f32 values are written)
  std::vector<uint8_t> bytes;     // the tensor's data in `type`
  std::vector<int32_t> perm;      // ctrust act-order storage: stored column k is column perm[k]; else empty
};
// A quantized matrix: the ggml type (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0) when packable_type says it is exact, otherwise
// CTRUST_QX (io/ctrust_types.h) with f16 scales when every scale/minimum is an f16 number, else f32, and
// act-order results with their column permutation. The bytes are dequantized with the loader's own code and
// compared with r.w bit for bit; a mismatch gives F32.
PackedTensor pack_quant(const QuantResult& r);
// (A result with an N:M keep mask: CTRUST_NMQX when the group is a multiple of M, verified the same way; else as
// above: the pruned zeros are then grid levels.)
// A pruned matrix w [out][in]: CTRUST_SPARSE (bit mask + the f32 values that are not +0.0) when that is smaller
// than f32 and exact (checked by dequantizing), else F32.
PackedTensor pack_sparse(const float* w, int out, int in);

// IEEE half precision conversion (round to nearest even), used for fp16 scales: ggml's (io/gguf.h), the one
// implementation (the same bits for every non-NaN input; checked over all 2^32 floats when the copy that
// compression had was removed).
inline uint16_t f32_to_f16(float f) { return ggml_fp32_to_fp16(f); }
inline float f16_to_f32(uint16_t h) { return ggml_fp16_to_fp32(h); }
inline float round_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

// ||W X^T - Q X^T||^2 summed over rows and tokens (X is [n][in]): the layer reconstruction error.
double output_error(const float* W, const float* Q, int out, int in, const float* X, int n);

inline float grid_q(const QuantGrid& g, float x, float maxq) {
  float q = g.affine ? __builtin_nearbyintf((x - g.min) / g.scale) : __builtin_nearbyintf(x / g.scale) + g.zero;
  return q <= 0.0f ? 0.0f : (q > maxq ? maxq : q);  // <=: level -0.0 (nearbyint of a small negative) becomes +0,
                                                    // so a value q * scale + (-0.0) is +0.0 as its stored form decodes
}

}  // namespace ctrust
