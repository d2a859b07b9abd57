// Every matrix product of the model goes through ops::linear, so compressed inference modes
// (W8A8 dynamic activation quantization, LLM.int8 outlier decomposition) plug in at one place.
#pragma once
#include <cstdint>

#include "io/gguf.h"

namespace ctrust {

enum class LinearMode {
  F32,          // y = x W^T (+ b), through BLAS (GEMV for one row)
  W8A8,         // SmoothQuant: activations quantized per token to int8 on the fly (simulated in f32)
  Int8Outlier,  // LLM.int8(): input features with |x| > threshold in high precision, the rest int8
};

// The weight is held in one of two forms (Model::compute decides which make_model binds):
//  - f32 (`w`): every mode; F32 multiplies with BLAS (today's exact dequantized arithmetic);
//  - its storage type (`wq` in `wtype`, the GGUF file's bytes, e.g. Q4_1 or Q6_K blocks): the `native` compute
//    mode, for LinearMode::F32 only; products run on the typed kernels of ops/qmatmul.h (activations rounded
//    to 8 bits as ggml does). `w` is then null: no f32 copy of the weight exists.
// The storage type (wtype) is separate from the inference mode (mode: W8A8, LLM.int8()), which always works on
// f32 weights (make_model dequantizes the weights of such Linears).
struct Linear {
  const float* w = nullptr;  // [out][in], row-major; null when only wq is held
  const float* b = nullptr;  // [out] or null
  int in = 0, out = 0;
  LinearMode mode = LinearMode::F32;
  float threshold = 6.0f;    // Int8Outlier
  const uint8_t* wq = nullptr;        // [out] rows of `in` values in wtype (ggml blocks), or null
  GgmlType wtype = GgmlType::F32;     // storage type of wq
};

// y[rows][out] = x[rows][in] * W^T (+ b): native kernels when L.wq is set (mode F32), f32 otherwise.
void linear(const Linear& L, const float* x, float* y, int rows);

// The OpenBLAS kernel set the f32 products run on ("Cooperlake", "SkylakeX", "Haswell", ...): chosen by OpenBLAS
// from the CPU, or by the environment variable OPENBLAS_CORETYPE. It changes f32 speed (on the Zen 5 host of
// docs/benchmarks.md a 128-row sgemm runs at ~180 GFLOP/s per core with the AVX-512 sets, ~100 with Haswell's) and the last
// bits of f32 results, so benchmarks and the study print it.
const char* blas_core_name();

}  // namespace ctrust
