// Shared helpers of the compression tests: random matrices, correlated calibration inputs, a plain
// Gauss-Jordan inverse (independent of LAPACK) and the exact layer Hessian.
#pragma once
#include <cmath>
#include <random>
#include <vector>

#include "compress/gptq.h"

namespace ctrust::test {

inline std::vector<float> randn(size_t n, uint64_t seed, float sd = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// X [n][in] with strongly correlated columns of different magnitudes (like LLM activations).
inline std::vector<float> correlated_inputs(int n, int in, uint64_t seed) {
  auto z = randn(size_t(n) * in, seed);
  auto a = randn(size_t(in) * in, seed + 1, 0.3f);
  std::vector<float> x(size_t(n) * in, 0.0f);
  for (int t = 0; t < n; ++t)
    for (int j = 0; j < in; ++j) {
      double s = z[size_t(t) * in + j];
      for (int k = 0; k < in; ++k) s += double(z[size_t(t) * in + k]) * a[size_t(k) * in + j];
      x[size_t(t) * in + j] = float(s * (1.0 + 3.0 * (j % 7 == 0)));
    }
  return x;
}

inline Hessian hessian_of(const std::vector<float>& x, int in) {
  Hessian h = make_hessian(in);
  int n = int(x.size() / in);
  hessian_add(h, x.data(), n);
  return h;
}

// Inverse of a symmetric positive definite matrix by Gauss-Jordan with partial pivoting.
inline std::vector<double> invert(std::vector<double> a, int n) {
  std::vector<double> inv(size_t(n) * n, 0.0);
  for (int i = 0; i < n; ++i) inv[size_t(i) * n + i] = 1.0;
  for (int c = 0; c < n; ++c) {
    int p = c;
    for (int r = c + 1; r < n; ++r)
      if (std::fabs(a[size_t(r) * n + c]) > std::fabs(a[size_t(p) * n + c])) p = r;
    for (int k = 0; k < n; ++k) {
      std::swap(a[size_t(c) * n + k], a[size_t(p) * n + k]);
      std::swap(inv[size_t(c) * n + k], inv[size_t(p) * n + k]);
    }
    double d = a[size_t(c) * n + c];
    for (int k = 0; k < n; ++k) {
      a[size_t(c) * n + k] /= d;
      inv[size_t(c) * n + k] /= d;
    }
    for (int r = 0; r < n; ++r) {
      if (r == c) continue;
      double f = a[size_t(r) * n + c];
      if (f == 0.0) continue;
      for (int k = 0; k < n; ++k) {
        a[size_t(r) * n + k] -= f * a[size_t(c) * n + k];
        inv[size_t(r) * n + k] -= f * inv[size_t(c) * n + k];
      }
    }
  }
  return inv;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

}  // namespace ctrust::test
