// ctrust's own GGUF tensor types, for compressed weights that no ggml type stores exactly (docs/compression.md,
// "Packed storage"). llama.cpp does not load them; ctrust's loader dequantizes them bit for bit.
//
// The parameters live in the type id itself (bit 31 set, so they never collide with ggml's ids), which makes
// every tensor self-describing and keeps GGUF's rule "bytes = numel / block_size * type_size":
//   bit 31 = 1, bits 28..30 = kind
//   kind 0, CTRUST_QX (uniform quantization grid, one block per group of G consecutive inputs of a row):
//     bits 25..27 = bits - 1 (2..8 bits), bits 23..24 = form, bit 22 = scales f16 (1) or f32 (0),
//     bits 0..21 = G (per output channel: G = the row length).
//     Block: scale d (f16/f32); form Zero: zero point z (u8); form Affine: minimum m (f16/f32); then the G
//     levels q (0 .. 2^bits - 1) as one little-endian bit stream, ceil(G * bits / 8) bytes.
//     Value (f32): Sym (q - 2^(bits-1)) * d;  Zero (q - z) * d;  Affine fma(q, d, m) (one rounding, as the
//     quantizer's grid_value; with f16 d and <= 8 bits q * d is exact, so it equals q * d + m).
//   kind 1, CTRUST_SPARSE (pruned f32 weights, one block per row): bits 14..27 = capacity K, bits 0..13 = the
//     row length C (both <= 16383). Block: a bit mask of ceil(C / 8) bytes (bit j of byte j / 8, LSB first:
//     value j is stored), then K f32 values, the stored values in column order, unused slots 0.
//     K is the largest number of stored values of any row of the tensor.
//   kind 2, CTRUST_NMQX (N:M-pruned weights whose kept values lie on a uniform grid: SparseGPT's joint
//     sparsity + quantization), one block per group of G consecutive inputs of a row (G a multiple of M):
//     bits 25..27 = bits - 1, bits 23..24 = form, bit 22 = scales f16 (as CTRUST_QX), bits 18..21 = M - 1,
//     bits 14..17 = N - 1 (1 <= N <= M <= 16), bits 0..13 = G (<= 16383).
//     Block: the CTRUST_QX head (scale d; zero point or minimum by form), a bit mask of ceil(G / 8) bytes (bit j
//     of byte j / 8, LSB first: column j is kept; exactly N bits in each of the G / M groups of M columns), then
//     the K = G * N / M levels of the kept columns in column order, one little-endian bit stream of
//     ceil(K * bits / 8) bytes. Value: a kept column as CTRUST_QX, a pruned one +0.0.
// A GPTQ act-order result (groups over permuted columns) is stored with its columns reordered so that each
// group is contiguous, plus an I32 tensor "<name>.perm": stored column k is column perm[k] of the matrix.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/gguf.h"

namespace ctrust {

enum class QxForm : uint32_t { Sym = 0, Zero = 1, Affine = 2 };

struct QxParams {
  int bits = 4;      // 2..8
  int group = 32;    // G >= 1, < 2^22
  QxForm form = QxForm::Sym;
  bool f16 = true;   // scale (and minimum) stored as f16, else f32
};

inline constexpr uint32_t kCtrustTypeBit = 0x80000000u;
inline bool is_ctrust_type(GgmlType t) { return (uint32_t(t) & kCtrustTypeBit) != 0; }

struct NmqxParams {
  QxParams q;       // bits, form, f16, group G
  int n = 2, m = 4; // N kept of every M consecutive columns
};

// Type ids; each throws Error for parameters outside the ranges above.
GgmlType qx_type(const QxParams& p);
GgmlType sparse_type(int cols, int capacity);
GgmlType nmqx_type(const NmqxParams& p);
std::optional<NmqxParams> nmqx_params(GgmlType t);
size_t nmqx_block_bytes(const NmqxParams& p);
// Writes one block: scale d, zero point or minimum zm, keep[0..G) (exactly N of every M set), and the levels
// q[0..G) of which only the kept columns' are written.
void nmqx_encode_block(const NmqxParams& p, float d, float zm, const uint8_t* keep, const int* q, uint8_t* dst);
// Decoded parameters (nullopt if t is not a valid type of that kind).
std::optional<QxParams> qx_params(GgmlType t);
struct SparseParams {
  int cols = 0, capacity = 0;
};
std::optional<SparseParams> sparse_params(GgmlType t);

// Name, block size and bytes of a valid ctrust type id; nullptr otherwise (used by ggml_type_info).
const GgmlTypeInfo* ctrust_type_info(uint32_t id);

size_t qx_block_bytes(const QxParams& p);
// Writes one block: scale d, zero point or minimum zm (ignored for Sym), levels q[0..G).
void qx_encode_block(const QxParams& p, float d, float zm, const int* q, uint8_t* dst);
// Writes one row of C values (every value whose bits are not all zero is stored, so -0.0 survives).
// Returns false if the row has more than K such values.
bool sparse_encode_row(const SparseParams& p, const float* w, uint8_t* dst);
// Number of values whose bits are not all zero (what a sparse row stores).
int64_t sparse_stored_count(const float* w, int64_t n);

// Dequantizes nb blocks of a valid ctrust type (called by dequantize()). A sparse row whose mask has more
// bits than K reads the extra values as 0 (never out of bounds; check_ctrust_tensor reports such files).
void ctrust_dequantize_blocks(GgmlType t, const uint8_t* src, float* dst, int64_t nb);
// Its reference twin: one level at a time, read bit by bit (the same values, bit for bit).
void ctrust_dequantize_blocks_ref(GgmlType t, const uint8_t* src, float* dst, int64_t nb);
// Throws Error("<what>: ...") if the bytes of a sparse tensor are inconsistent (a mask with more than K bits; an
// N:M mask without exactly N bits in a group of M).
void check_ctrust_tensor(GgmlType t, const uint8_t* data, size_t nbytes, const std::string& what);

// Undoes the act-order storage: dst[r][perm[k]] = src[r][k] for rows of `cols` values; perm must be a
// permutation of 0..cols-1 (check_permutation).
void unpermute_columns(const float* src, float* dst, int64_t rows, int64_t cols, const std::vector<int32_t>& perm);
void check_permutation(const std::vector<int32_t>& perm, int64_t cols, const std::string& what);

}  // namespace ctrust
