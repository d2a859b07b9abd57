#include "ops/ops.h"

#include <algorithm>

#include <vector>

#include <cmath>

#include "ops/vexp.h"

namespace ctrust {

void rmsnorm(const float* x, const float* w, float* y, int rows, int n, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + (int64_t)r * n;
    float* yr = y + (int64_t)r * n;
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += (double)(xr[i] * xr[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * w[i];
  }
}

void rope_tables(int pos0, int n_pos, int head_dim, float base, float freq_scale, float* cos_t, float* sin_t) {
  // Same recurrence as ggml's rope cache: theta starts at pos and is multiplied by base^(-2/head_dim) per pair,
  // so theta_i = pos * base^(-2i/head_dim) up to float rounding; the angle is freq_scale * theta_i.
  const int half = head_dim / 2;
  const float theta_scale = std::pow(base, -2.0f / (float)head_dim);
  for (int p = 0; p < n_pos; ++p) {
    float theta = (float)(pos0 + p);
    for (int i = 0; i < half; ++i) {
      const float a = freq_scale * theta;
      cos_t[(int64_t)p * half + i] = std::cos(a);
      sin_t[(int64_t)p * half + i] = std::sin(a);
      theta *= theta_scale;
    }
  }
}

void rope(float* x, int rows, int n_heads, int head_dim, RopeLayout layout, const float* cos_t,
          const float* sin_t) {
  const int half = head_dim / 2;
  for (int r = 0; r < rows; ++r) {
    const float* c = cos_t + (int64_t)r * half;
    const float* s = sin_t + (int64_t)r * half;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + ((int64_t)r * n_heads + h) * head_dim;
      if (layout == RopeLayout::Interleaved) {
        for (int i = 0; i < half; ++i) {
          const float a = v[2 * i], b = v[2 * i + 1];
          v[2 * i] = a * c[i] - b * s[i];
          v[2 * i + 1] = a * s[i] + b * c[i];
        }
      } else {
        for (int i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * c[i] - b * s[i];
          v[i + half] = a * s[i] + b * c[i];
        }
      }
    }
  }
}

// softmax: ops/vexp.cpp (vectorized exp, bit-identical to std::exp).

void swiglu_ref(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = silu(gate[i]) * up[i];
}

// The exponentials of a chunk by exp_f32 (bit-identical to the expf silu calls), then the same float operations.
void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  if (!exp_f32_matches_libm()) return swiglu_ref(gate, up, out, n);
  constexpr int kChunk = 256;
  float e[kChunk];
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int m = (int)std::min<int64_t>(kChunk, n - i0);
    const float* g = gate + i0;
    for (int k = 0; k < m; ++k) e[k] = -g[k];
    exp_f32(e, e, m);
    const float* u = up + i0;
    float* o = out + i0;
    for (int k = 0; k < m; ++k) o[k] = g[k] / (1.0f + e[k]) * u[k];  // silu(g) * u; o may be g
  }
}

namespace {
const uint16_t* gelu_f16_table() {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(65536);
    const float kSqrt2OverPi = 0.79788456080286535587989211986876f, kCoefA = 0.044715f;  // ggml's constants
    for (uint32_t i = 0; i < 65536; ++i) {
      const float x = ggml_fp16_to_fp32((uint16_t)i);
      t[i] = ggml_fp32_to_fp16(0.5f * x * (1.0f + tanhf(kSqrt2OverPi * x * (1.0f + kCoefA * x * x))));
    }
    return t;
  }();
  return table.data();
}
}  // namespace

float gelu_ggml(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  return ggml_fp16_to_fp32(gelu_f16_table()[ggml_fp32_to_fp16(x)]);
}

void geglu(const float* gate, const float* up, float* out, int64_t n) {
  const uint16_t* t = gelu_f16_table();
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    const float g = x <= -10.0f ? 0.0f : x >= 10.0f ? x : ggml_fp16_to_fp32(t[ggml_fp32_to_fp16(x)]);
    out[i] = x <= -10.0f ? 0.0f : g * up[i];
  }
}

void gated_act(Activation a, const float* gate, const float* up, float* out, int64_t n) {
  if (a == Activation::GeluTanh) geglu(gate, up, out, n);
  else swiglu(gate, up, out, n);
}

}  // namespace ctrust
