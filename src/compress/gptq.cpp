// GPTQ: blocked OBS quantization with lazy batch updates and a Cholesky-factored inverse Hessian,
// following the reference implementation (github.com/IST-DASLab/gptq, gptq.py fasterquant).
#include "compress/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <cblas.h>
#include <lapacke.h>

#include "base/error.h"
#include "compress/blas_serial.h"
#include "compress/kquant.h"

namespace ctrust {

Hessian make_hessian(int n) {
  if (n <= 0) fail("hessian: input width must be positive, got {}", n);
  Hessian h;
  h.n = n;
  h.sum.assign(size_t(n) * n, 0.0);
  return h;
}

void hessian_rows_f32(const float* x, int rows, int n, float* c) {
  BlasSerial serial(double(n) * n * rows < kBlasSmall);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, rows, 1.0f, x, n, 0.0f, c, n);
}

void hessian_add(Hessian& h, const float* x, int rows) {
  if (rows <= 0) return;
  const int n = h.n;
  // f32 syrk per call (one sequence at a time keeps the f32 sum short), accumulated in double.
  std::vector<float> c(size_t(n) * n, 0.0f);
  hessian_rows_f32(x, rows, n, c.data());
  for (int i = 0; i < n; ++i)
    for (int j = i; j < n; ++j) h.sum[size_t(i) * n + j] += c[size_t(i) * n + j];
  h.tokens += rows;
}

std::vector<double> hessian_matrix(const Hessian& h) {
  if (h.tokens <= 0) fail("hessian: no calibration tokens were added");
  const int n = h.n;
  std::vector<double> H(size_t(n) * n);
  const double f = 2.0 / double(h.tokens);
  for (int i = 0; i < n; ++i)
    for (int j = i; j < n; ++j) H[size_t(i) * n + j] = H[size_t(j) * n + i] = f * h.sum[size_t(i) * n + j];
  return H;
}

void inverse_cholesky_upper(std::vector<double>& H, int n, double damp, std::vector<uint8_t>& dead,
                            const char* what) {
  if (H.size() != size_t(n) * n) fail("{}: Hessian has {} values, expected {}", what, H.size(), size_t(n) * n);
  if (!(damp >= 0.0)) fail("{}: dampening must be >= 0, got {}", what, damp);
  dead.assign(n, 0);
  double mean = 0;
  for (int i = 0; i < n; ++i) {
    double& d = H[size_t(i) * n + i];
    if (d == 0.0) {
      d = 1.0;
      dead[i] = 1;
    }
    mean += d;
  }
  mean /= n;
  for (int i = 0; i < n; ++i) H[size_t(i) * n + i] += damp * mean;
  // Single-threaded: OpenBLAS's parallel potrf/potri recurse into thousands of tiny parallel GEMMs whose
  // OpenMP barriers dominated the whole GPTQ run on a shared 2-core machine (perf: >80% in libgomp spin-waits).
  // Serial, the three factorizations of a 1536 x 1536 Hessian take ~0.2 s.
  BlasSerial serial(true);
  if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, H.data(), n) != 0)
    fail("{}: Hessian + dampening is not positive definite (damp {}); use a larger dampening", what, damp);
  if (LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', n, H.data(), n) != 0)
    fail("{}: Hessian is singular (damp {}); use a larger dampening", what, damp);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) H[size_t(j) * n + i] = H[size_t(i) * n + j];
  if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', n, H.data(), n) != 0)
    fail("{}: inverse Hessian is not positive definite (damp {}); use a larger dampening", what, damp);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) H[size_t(i) * n + j] = 0.0;
}

QuantResult gptq_quantize(const float* W, int out, int in, const Hessian& H, const GptqOptions& o) {
  if (H.n != in) fail("gptq: Hessian width {} does not match the input dimension {}", H.n, in);
  return gptq_quantize_h(W, out, in, hessian_matrix(H), o);
}

QuantResult gptq_quantize_h(const float* W, int out, int in, std::vector<double> H, const GptqOptions& o) {
  const QuantSpec& s = o.q;
  check_quant_spec(s, out, in, "gptq");
  BlasSerial serial(double(out) * in * in < 8 * kBlasSmall);
  if (o.block <= 0) fail("gptq: block size must be positive, got {}", o.block);
  // K-quant target: the super-block of 256 columns plays the dynamic group (its scales/mins are fitted when the
  // column loop reaches it, from the error-compensated weights); docs/compression.md, "K-quants".
  const GgmlType kt = s.ktype;
  const bool kq = kt != GgmlType::F32;
  if (kq && (o.act_order || o.static_groups))
    fail("gptq: {} output does not support act-order or static groups", ggml_type_name(kt));
  const int G = kq ? kQK_K : s.group > 0 ? s.group : in;
  const bool grouped = kq || s.group > 0;
  const float maxq = float(quant_maxq(s.bits));

  QuantResult r;
  r.out = out;
  r.in = in;
  r.spec = s;
  r.group = G;
  r.n_groups = in / G;
  if (!kq) r.grids.resize(size_t(out) * r.n_groups);
  std::vector<KBlock> kblocks(kq ? size_t(out) * r.n_groups : 0);
  std::vector<uint8_t> klev(kq ? size_t(out) * in : 0);

  // Per-channel grids come from the original W (the reference calls find_params before zeroing dead inputs).
  if (!grouped) {
    for (int i = 0; i < out; ++i) r.grids[i] = fit_grid(W + size_t(i) * in, in, s);
  }

  std::vector<double> Wd(W, W + size_t(out) * in);
  std::vector<uint8_t> dead(in, 0);
  for (int i = 0; i < in; ++i)
    if (H[size_t(i) * in + i] == 0.0) dead[i] = 1;
  for (int c = 0; c < in; ++c)
    if (dead[c])
      for (int i = 0; i < out; ++i) Wd[size_t(i) * in + c] = 0.0;

  // Static groups: grids of the original (dead-zeroed) W, indexed by original group.
  if (grouped && o.static_groups) {
    std::vector<float> tmp(G);
    for (int i = 0; i < out; ++i)
      for (int g = 0; g < r.n_groups; ++g) {
        for (int j = 0; j < G; ++j) tmp[j] = float(Wd[size_t(i) * in + size_t(g) * G + j]);
        r.grids[size_t(i) * r.n_groups + g] = fit_grid(tmp.data(), G, s);
      }
  }

  // Act-order: permute by decreasing diag H (dead entries count as 1, as in the reference).
  std::vector<int> perm(in);
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order) {
    std::vector<double> diag(in);
    for (int i = 0; i < in; ++i) diag[i] = dead[i] ? 1.0 : H[size_t(i) * in + i];
    std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return diag[a] > diag[b]; });
    std::vector<double> Wp(Wd.size()), Hp(H.size());
    for (int i = 0; i < out; ++i)
      for (int k = 0; k < in; ++k) Wp[size_t(i) * in + k] = Wd[size_t(i) * in + perm[k]];
    for (int a = 0; a < in; ++a)
      for (int b = 0; b < in; ++b) Hp[size_t(a) * in + b] = H[size_t(perm[a]) * in + perm[b]];
    Wd.swap(Wp);
    H.swap(Hp);
  }
  std::vector<uint8_t> dead_p;
  inverse_cholesky_upper(H, in, o.damp, dead_p, "gptq");
  const std::vector<double>& U = H;

  // Lazy batches; with dynamic groups the block is aligned to the groups so that a group's grid is always
  // fitted on fully updated weights (see docs/compression.md).
  int B = std::min(o.block, in);
  if (grouped && !o.static_groups) B = G <= B ? (B / G) * G : G;

  // ggml's legacy fits weight by the row's mean x^2 (of the original row, as ggml sees it).
  std::vector<float> sigma2(out, 0.0f);
  if (s.ggml_fit)
    for (int i = 0; i < out; ++i) {
      for (int k = 0; k < in; ++k) sigma2[i] += W[size_t(i) * in + k] * W[size_t(i) * in + k];
      sigma2[i] /= float(in);
    }
  std::vector<double> Qp(size_t(out) * in);
  std::vector<double> Err;
  for (int i1 = 0; i1 < in; i1 += B) {
    const int i2 = std::min(i1 + B, in), cnt = i2 - i1;
    Err.assign(size_t(out) * cnt, 0.0);
#pragma omp parallel for schedule(static) if (size_t(out) * in >= (1u << 16))
    for (int row = 0; row < out; ++row) {
      double* w = Wd.data() + size_t(row) * in;
      std::vector<float> tmp;
      QuantGrid grid = grouped ? QuantGrid{} : r.grids[row];
      for (int i = i1; i < i2; ++i) {
        if (kq) {
          KBlock& kb = kblocks[size_t(row) * r.n_groups + i / G];
          if (i % G == 0) {
            tmp.resize(G);
            for (int j = 0; j < G; ++j) tmp[j] = float(w[i + j]);
            kb = kquant_fit(kt, tmp.data(), s.kweights ? s.kweights + i : nullptr);
          }
          const int L = kquant_level(kb, i % G, float(w[i]));
          klev[size_t(row) * in + i] = uint8_t(L);
          const double q = kquant_value(kb, i % G, L);
          Qp[size_t(row) * in + i] = q;
          const double err = (w[i] - q) / U[size_t(i) * in + i];
          Err[size_t(row) * cnt + (i - i1)] = err;
          const double* u = U.data() + size_t(i) * in;
          for (int j = i + 1; j < i2; ++j) w[j] -= err * u[j];
          continue;
        }
        if (grouped) {
          if (o.static_groups) {
            grid = r.grids[size_t(row) * r.n_groups + perm[i] / G];
          } else if (i % G == 0) {
            tmp.resize(G);
            for (int j = 0; j < G; ++j) tmp[j] = float(w[i + j]);
            grid = fit_grid_for(tmp.data(), G, s, s.kweights ? s.kweights + i : nullptr, sigma2[row]);
            r.grids[size_t(row) * r.n_groups + i / G] = grid;
          }
        }
        const double q = grid_value(grid, grid_q(grid, float(w[i]), maxq));
        Qp[size_t(row) * in + i] = q;
        const double err = (w[i] - q) / U[size_t(i) * in + i];
        Err[size_t(row) * cnt + (i - i1)] = err;
        const double* u = U.data() + size_t(i) * in;
        for (int j = i + 1; j < i2; ++j) w[j] -= err * u[j];
      }
    }
    if (i2 < in)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in - i2, cnt, -1.0, Err.data(), cnt,
                  U.data() + size_t(i1) * in + i2, in, 1.0, Wd.data() + i2, in);
  }

  r.w.resize(size_t(out) * in);
  for (int i = 0; i < out; ++i)
    for (int k = 0; k < in; ++k) r.w[size_t(i) * in + perm[k]] = float(Qp[size_t(i) * in + k]);
  if (kq) {  // the ggml blocks (no permutation: act-order is rejected above)
    const size_t bs = ggml_type_info(uint32_t(kt))->type_size;
    r.kbytes.resize(size_t(out) * r.n_groups * bs);
    for (int i = 0; i < out; ++i)
      for (int b = 0; b < r.n_groups; ++b)
        kquant_encode(kblocks[size_t(i) * r.n_groups + b], &klev[size_t(i) * in + size_t(b) * G],
                      r.kbytes.data() + (size_t(i) * r.n_groups + b) * bs);
  }
  if (o.act_order && grouped && !o.static_groups) {
    r.g_idx.resize(in);
    for (int k = 0; k < in; ++k) r.g_idx[perm[k]] = k / G;
  }
  return r;
}

}  // namespace ctrust
