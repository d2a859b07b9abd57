// Matrix products with weights kept in their ggml storage type (the `native` compute mode).
//
// As ggml's CPU backend does, the activations are first rounded to the type ggml pairs with the weight type
// (its vec_dot_type): Q8_0 for Q4_0 / Q5_0 / Q8_0 weights, Q8_1 for Q4_1 / Q5_1, Q8_K for the k-quants
// (Q2_K ... Q6_K), F16 for F16 and BF16 for BF16; then every output is one dot product of a weight row with an
// activation row, with exact integer sums inside each block and f32 arithmetic across blocks. The numbers are
// those llama.cpp computes, up to the order of the f32 additions (docs/correctness.md).
//
// Every dot product exists three times: a plain reference loop (KernelIsa::Ref), an AVX2 version and an
// AVX-512 version (AVX-512 F/BW/VL + VNNI, compiled with a target attribute); the best one the CPU has is
// chosen at run time (__builtin_cpu_supports). Tests run all three against each other and against the
// dequantized f32 product. The k-quant versions (ggml's scheme: VPMADDUBSW of the unsigned quants with the
// activation bytes, VPMADDWD / VPDPWSSD with the int16 sub-block scales, the min or offset term from the
// activations' per-16 sums) keep the reference's exact integer sum per block and add it to the f32 sum with the
// same two FMAs, so all three give the same bits.
#pragma once
#include <cstddef>
#include <cstdint>

#include "io/gguf.h"

namespace ctrust {

enum class KernelIsa { Ref, Avx2, Avx512 };

const char* kernel_isa_name(KernelIsa isa);
bool cpu_has_isa(KernelIsa isa);
// The ISA the kernels use: the best the CPU supports, unless set_kernel_isa chose another (tests, benchmarks).
KernelIsa kernel_isa();
// Throws Error if the CPU lacks it.
void set_kernel_isa(KernelIsa isa);

// Whether the native kernels handle weights of type t (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K).
bool native_supported(GgmlType t);
// The activation type ggml pairs with weight type t (Q8_0, Q8_1, Q8_K, F16 or BF16).
GgmlType native_act_type(GgmlType t);
// Bytes of one row of n activations rounded for weights of type t.
size_t native_act_bytes(GgmlType t, int64_t n);
// Rounds one row of n activations for weights of type t, as ggml's x86 quantize_row_* does (Q8_0 / Q8_1: scale
// max|x|/127 stored as f16, x * (127/max|x|) rounded to nearest even; Q8_K: quantize_row_q8_K_ref; F16 / BF16:
// round to nearest even).
void native_quantize_row(GgmlType t, const float* x, uint8_t* dst, int64_t n);
// The same with the AVX2 / AVX-512 versions (Q8_0, Q8_1, Q8_K; the others as native_quantize_row): the same
// bytes (the matrix drivers use it with their ISA; reference twin: native_quantize_row).
void native_quantize_row_isa(GgmlType t, const float* x, uint8_t* dst, int64_t n, KernelIsa isa);
// One dot product: a weight row of n values in type t with an activation row from native_quantize_row.
float native_vec_dot(GgmlType t, const uint8_t* w, const uint8_t* xq, int64_t n, KernelIsa isa);

// y[rows][out] = x[rows][in] W^T, W = out rows of `in` values in type t, stored row after row (ggml layout).
// Rows of x are rounded (native_quantize_row), then each output is native_vec_dot with kernel_isa(); OpenMP
// threads split the output rows (decode, rows == 1) or blocks of output rows (several rows). Each weight block
// is unpacked once for 4 activation rows; with AVX-512 the legacy block types (Q4_0 ... Q8_0) take full groups
// of 16 rows through a packed kernel (two rows per 512-bit register, the same per-lane operations) and the
// k-quants groups of 16 or 8 rows (512-bit registers, 64 quants each; the rows' bsums and scales transposed
// once per product, their integer block sums reduced together, a weight row's blocks taken in chunks of 4).
// From 8 rows on, the k-quants on AVX-512 take a tile kernel instead: 16 weight rows x up to 8 activation rows
// per pass, the 16 rows' blocks unpacked once per chunk of 4 blocks into a transposed scratch (one int32 lane per
// weight row, VPDPBUSD with the activation's 4 bytes broadcast; 23 KB per thread, nothing kept between products).
// k-quant decode multiplies four weight rows per pass (Q4_K on AVX-512: with the activation row in the
// weight's nibble order); so does legacy-type decode on AVX-512 (two weight rows per 512-bit register). The
// result does not depend on the thread count or on how many rows are multiplied together.
void native_matmul(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows);
// The same with a given ISA, single-threaded (reference twin for tests).
void native_matmul_isa(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows,
                       KernelIsa isa);

}  // namespace ctrust
