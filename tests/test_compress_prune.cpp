// Magnitude, Wanda and SparseGPT pruning: masks, exact counts, errors, and SparseGPT's blocked lazy updates
// against a column-by-column OBS sweep written from the paper's equations.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "base/error.h"
#include "compress/prune.h"
#include "test_compress_util.h"

using namespace ctrust;
using namespace ctrust::test;

namespace {

// Column-by-column SparseGPT without lazy batching: every update is applied to all remaining columns at once
// and H_F^-1 is downdated by the OBS formula. The mask selection uses [H_{F_j}^-1]_jj (computed in a first
// pass), which is what U_jj^2 of the Cholesky factor stands for.
std::vector<float> sparsegpt_reference(const std::vector<float>& W, int out, int in, std::vector<double> H,
                                       const SparseGptOptions& o) {
  double mean = 0;
  std::vector<int> dead(in, 0);
  for (int i = 0; i < in; ++i) {
    if (H[size_t(i) * in + i] == 0) { H[size_t(i) * in + i] = 1; dead[i] = 1; }
    mean += H[size_t(i) * in + i];
  }
  mean /= in;
  for (int i = 0; i < in; ++i) H[size_t(i) * in + i] += o.damp * mean;
  const std::vector<double> Hi0 = invert(H, in);
  auto downdate = [&](std::vector<double>& Hi, int i) {
    const double d = Hi[size_t(i) * in + i];
    std::vector<double> col(in);
    for (int a = 0; a < in; ++a) col[a] = Hi[size_t(a) * in + i];
    for (int a = 0; a < in; ++a)
      for (int b = 0; b < in; ++b) Hi[size_t(a) * in + b] -= col[a] * col[b] / d;
  };
  std::vector<double> dj(in);
  {
    std::vector<double> Hi = Hi0;
    for (int i = 0; i < in; ++i) {
      dj[i] = Hi[size_t(i) * in + i];
      downdate(Hi, i);
    }
  }
  std::vector<double> w(W.begin(), W.end());
  for (int r = 0; r < out; ++r)
    for (int i = 0; i < in; ++i) if (dead[i]) w[size_t(r) * in + i] = 0;
  std::vector<double> Hi = Hi0;
  std::vector<uint8_t> mask(size_t(out) * in, 0);
  const int B = o.block;
  for (int i = 0; i < in; ++i) {
    auto score = [&](int r, int j) { return w[size_t(r) * in + j] * w[size_t(r) * in + j] / dj[j]; };
    if (o.p.m == 0 && i % B == 0) {
      const int i2 = std::min(i + B, in);
      std::vector<std::pair<double, int64_t>> s;
      for (int r = 0; r < out; ++r)
        for (int j = i; j < i2; ++j) s.push_back({score(r, j), int64_t(r) * (i2 - i) + (j - i)});
      std::sort(s.begin(), s.end());
      int64_t k = prune_count(o.p.sparsity, int64_t(out) * i2) - prune_count(o.p.sparsity, int64_t(out) * i);
      for (int64_t t = 0; t < k; ++t) {
        int64_t r = s[t].second / (i2 - i), j = s[t].second % (i2 - i);
        mask[size_t(r) * in + i + j] = 1;
      }
    }
    if (o.p.m > 0 && i % o.p.m == 0) {
      for (int r = 0; r < out; ++r) {
        std::vector<std::pair<double, int>> s;
        for (int j = i; j < i + o.p.m; ++j) s.push_back({score(r, j), j});
        std::sort(s.begin(), s.end());
        for (int t = 0; t < o.p.m - o.p.n; ++t) mask[size_t(r) * in + s[t].second] = 1;
      }
    }
    for (int r = 0; r < out; ++r) {
      double wi = w[size_t(r) * in + i];
      double q = mask[size_t(r) * in + i] ? 0.0 : wi;
      double f = (wi - q) / Hi[size_t(i) * in + i];
      for (int j = i; j < in; ++j) w[size_t(r) * in + j] -= f * Hi[size_t(j) * in + i];
      w[size_t(r) * in + i] = q;
    }
    downdate(Hi, i);
  }
  return std::vector<float>(w.begin(), w.end());
}

int64_t zeros_of(const std::vector<float>& w) {
  int64_t z = 0;
  for (float v : w) z += v == 0.0f;
  return z;
}

}  // namespace

TEST(CompressPrune, SparseGptBlockedEqualsUnblocked) {
  const int out = 10, in = 40, n = 200;
  auto W = randn(size_t(out) * in, 50);
  auto X = correlated_inputs(n, in, 51);
  for (int t = 0; t < n; ++t) X[size_t(t) * in + 7] = 0.0f;  // a dead input
  Hessian h = hessian_of(X, in);
  for (PruneSpec p : {PruneSpec{0.5, 0, 0}, PruneSpec{0.3, 0, 0}, PruneSpec{0, 2, 4}, PruneSpec{0, 1, 2},
                      PruneSpec{0, 4, 8}}) {
    SparseGptOptions o;
    o.p = p;
    o.block = 16;
    PruneResult r = sparsegpt_prune(W.data(), out, in, h, o);
    auto ref = sparsegpt_reference(W, out, in, hessian_matrix(h), o);
    EXPECT_LT(max_abs_diff(r.w, ref), 1e-5) << p.sparsity << " " << p.n << ":" << p.m;
    EXPECT_EQ(r.zeros, zeros_of(ref));
  }
}

TEST(CompressPrune, NMKeepsExactlyNPerGroup) {
  const int out = 16, in = 64, n = 128;
  auto W = randn(size_t(out) * in, 60);
  auto X = correlated_inputs(n, in, 61);
  Hessian h = hessian_of(X, in);
  std::vector<float> norm(in);
  for (int j = 0; j < in; ++j) {
    double s = 0;
    for (int t = 0; t < n; ++t) s += double(X[size_t(t) * in + j]) * X[size_t(t) * in + j];
    norm[j] = float(std::sqrt(s));
  }
  for (auto [N, M] : {std::pair{2, 4}, std::pair{4, 8}, std::pair{1, 2}}) {
    PruneSpec p{0, N, M};
    SparseGptOptions o;
    o.p = p;
    for (const PruneResult& r : {prune_magnitude(W.data(), out, in, p), prune_wanda(W.data(), out, in, norm.data(), p),
                                 sparsegpt_prune(W.data(), out, in, h, o)}) {
      for (int row = 0; row < out; ++row)
        for (int c = 0; c < in; c += M) {
          int nz = 0;
          for (int j = 0; j < M; ++j) nz += r.w[size_t(row) * in + c + j] != 0.0f;
          ASSERT_EQ(nz, N) << N << ":" << M << " row " << row << " col " << c;
        }
      EXPECT_DOUBLE_EQ(r.sparsity, 1.0 - double(N) / M);
    }
  }
}

TEST(CompressPrune, ExactTargetSparsity) {
  const int out = 24, in = 80, n = 160;
  auto W = randn(size_t(out) * in, 70);
  auto X = correlated_inputs(n, in, 71);
  Hessian h = hessian_of(X, in);
  std::vector<float> norm(in, 1.0f);
  for (double sp : {0.0, 0.25, 0.5, 0.7, 0.9}) {
    PruneSpec p{sp, 0, 0};
    const int64_t k = int64_t(std::floor(sp * out * in + 1e-7));
    PruneResult m = prune_magnitude(W.data(), out, in, p);
    EXPECT_EQ(m.zeros, k) << sp;
    PruneResult wa = prune_wanda(W.data(), out, in, norm.data(), p);
    EXPECT_EQ(wa.zeros, int64_t(out) * int64_t(std::floor(sp * in + 1e-7))) << sp;
    SparseGptOptions o;
    o.p = p;
    o.block = 32;  // 80 = 32 + 32 + 16: a partial last block
    PruneResult s = sparsegpt_prune(W.data(), out, in, h, o);
    EXPECT_EQ(s.zeros, k) << sp;
    EXPECT_NEAR(s.sparsity, double(k) / (out * in), 1e-12);
  }
  // Magnitude keeps the largest: every kept |w| >= every removed |w|.
  PruneResult m = prune_magnitude(W.data(), out, in, PruneSpec{0.5, 0, 0});
  float kept_min = 1e30f, removed_max = 0;
  for (size_t i = 0; i < W.size(); ++i)
    (m.w[i] == 0.0f ? removed_max : kept_min) =
        m.w[i] == 0.0f ? std::max(removed_max, std::fabs(W[i])) : std::min(kept_min, std::fabs(W[i]));
  EXPECT_LE(removed_max, kept_min);
}

TEST(CompressPrune, SparseGptBeatsMagnitudeOnCorrelatedInputs) {
  const int out = 32, in = 128, n = 512;
  auto W = randn(size_t(out) * in, 80, 0.1f);
  auto X = correlated_inputs(n, in, 81);
  Hessian h = hessian_of(X, in);
  std::vector<float> norm(in);
  for (int j = 0; j < in; ++j) norm[j] = float(std::sqrt(h.sum[size_t(j) * in + j]));
  for (PruneSpec p : {PruneSpec{0.5, 0, 0}, PruneSpec{0, 2, 4}, PruneSpec{0.7, 0, 0}}) {
    SparseGptOptions o;
    o.p = p;
    double e_mag = output_error(W.data(), prune_magnitude(W.data(), out, in, p).w.data(), out, in, X.data(), n);
    double e_wanda = output_error(W.data(), prune_wanda(W.data(), out, in, norm.data(), p).w.data(), out, in, X.data(), n);
    double e_sgpt = output_error(W.data(), sparsegpt_prune(W.data(), out, in, h, o).w.data(), out, in, X.data(), n);
    EXPECT_LT(e_sgpt, e_mag) << p.sparsity << " " << p.n << ":" << p.m;
    EXPECT_LT(e_sgpt, e_wanda) << p.sparsity << " " << p.n << ":" << p.m;
    EXPECT_LT(e_wanda, e_mag) << p.sparsity << " " << p.n << ":" << p.m;
  }
}

TEST(CompressPrune, Validation) {
  auto W = randn(4 * 8, 90);
  EXPECT_THROW(prune_magnitude(W.data(), 4, 8, PruneSpec{1.0, 0, 0}), Error);
  EXPECT_THROW(prune_magnitude(W.data(), 4, 8, PruneSpec{-0.1, 0, 0}), Error);
  EXPECT_THROW(prune_magnitude(W.data(), 4, 8, PruneSpec{0, 5, 4}), Error);   // N > M
  EXPECT_THROW(prune_magnitude(W.data(), 4, 8, PruneSpec{0, 2, 3}), Error);   // 3 does not divide 8
  EXPECT_THROW(prune_magnitude(W.data(), 4, 8, PruneSpec{0, 0, 4}), Error);
}
