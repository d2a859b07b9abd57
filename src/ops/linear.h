// Every matrix product of the model goes through ops::linear, so compressed inference modes
// (W8A8 dynamic activation quantization, LLM.int8 outlier decomposition) plug in at one place.
#pragma once
#include <cstdint>

namespace ctrust {

enum class LinearMode {
  F32,          // y = x W^T (+ b), through BLAS (GEMV for one row)
  W8A8,         // SmoothQuant: activations quantized per token to int8 on the fly (simulated in f32)
  Int8Outlier,  // LLM.int8(): input features with |x| > threshold in high precision, the rest int8
};

struct Linear {
  const float* w = nullptr;  // [out][in], row-major
  const float* b = nullptr;  // [out] or null
  int in = 0, out = 0;
  LinearMode mode = LinearMode::F32;
  float threshold = 6.0f;    // Int8Outlier
};

// y[rows][out] = x[rows][in] * W^T (+ b).
void linear(const Linear& L, const float* x, float* y, int rows);

}  // namespace ctrust
