// Matrix products with weights in ctrust's own types (io/ctrust_types.h: CTRUST_QX, CTRUST_SPARSE) in the
// `native` compute mode: the weights stay packed in memory; each weight row is dequantized (to exactly the
// values the loader gives) and multiplied with the f32 activations. There is no llama.cpp counterpart, so the
// activations are not rounded; the sums are plain f32 loops (a reference kernel, not tuned for speed).
#pragma once
#include <cstdint>

#include "io/gguf.h"

namespace ctrust {

// y[rows][out] = x[rows][in] W^T, W = out rows of `in` values in the ctrust type t (row after row).
// OpenMP threads split the output rows; the result does not depend on the thread count.
void ctrust_matmul(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows);

}  // namespace ctrust
