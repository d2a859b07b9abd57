// Matrix products with weights in ctrust's own types (io/ctrust_types.h: CTRUST_QX, CTRUST_SPARSE, CTRUST_NMQX) in
// the `native` compute mode: the weights stay packed in memory. There is no llama.cpp counterpart, so the
// activations are not rounded. ctrust_matmul dequantizes kCtrustTile weight rows at a time (to exactly the values
// the loader gives) and multiplies them with the f32 activations in one BLAS call (sgemv for one row, sgemm
// otherwise): the f32 mode's arithmetic up to the order of the sums. ctrust_matmul_ref is the plain loop (one row
// at a time, sums in index order), its reference twin (test Ops.CtrustMatmulKernelEqualsReference). Before
// 2026-12-04 the plain loop was the kernel: a trust run of a GPTQ file in this mode was ~10x slower than f32.
#pragma once
#include <cstdint>

#include "io/gguf.h"

namespace ctrust {

// y[rows][out] = x[rows][in] W^T, W = out rows of `in` values in the ctrust type t (row after row).
// OpenMP threads split the tiles of output rows; the result does not depend on the thread count.
void ctrust_matmul(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows);
void ctrust_matmul_ref(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows);
inline constexpr int kCtrustTile = 64;  // weight rows dequantized per BLAS call

}  // namespace ctrust
