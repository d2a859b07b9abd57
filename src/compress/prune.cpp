// Magnitude, Wanda and SparseGPT pruning. SparseGPT follows the reference implementation
// (github.com/IST-DASLab/sparsegpt, sparsegpt.py fasterprune) with exact per-block counts.
#include "compress/prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <cblas.h>

#include "base/error.h"
#include "compress/blas_serial.h"

namespace ctrust {

void check_prune_spec(const PruneSpec& p, int out, int in, const char* what) {
  if (out <= 0 || in <= 0) fail("{}: empty weight matrix ({} x {})", what, out, in);
  if (p.m > 0) {
    if (p.n < 1 || p.n > p.m) fail("{}: N:M needs 1 <= N <= M, got {}:{}", what, p.n, p.m);
    if (in % p.m != 0) fail("{}: M = {} does not divide the input dimension {}", what, p.m, in);
  } else {
    if (p.m < 0 || p.n != 0) fail("{}: invalid N:M pattern {}:{}", what, p.n, p.m);
    if (!(p.sparsity >= 0.0 && p.sparsity < 1.0)) fail("{}: sparsity must be in [0, 1), got {}", what, p.sparsity);
  }
}

int64_t prune_count(double sparsity, int64_t n) {
  return int64_t(std::floor(sparsity * double(n) + 1e-7));
}

void count_sparsity(PruneResult& r) {
  r.zeros = 0;
  for (float v : r.w) r.zeros += v == 0.0f;
  r.sparsity = r.w.empty() ? 0.0 : double(r.zeros) / double(r.w.size());
}

namespace {

// Sets mask[idx[i]] = 1 for the k entries of smallest score (ties: lower index first).
void select_smallest(const double* score, int64_t n, int64_t k, uint8_t* mask) {
  if (k <= 0) return;
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto less = [&](int64_t a, int64_t b) { return score[a] < score[b] || (score[a] == score[b] && a < b); };
  if (k < n) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), less);
  for (int64_t i = 0; i < std::min(k, n); ++i) mask[idx[i]] = 1;
}

// Zeroes the k smallest-score entries of each N:M group or of the whole row/tensor; score [out][in].
PruneResult apply_scores(const float* W, int out, int in, const std::vector<double>& score, const PruneSpec& p,
                         bool per_row) {
  PruneResult r;
  r.out = out;
  r.in = in;
  r.w.assign(W, W + size_t(out) * in);
  std::vector<uint8_t> mask(size_t(out) * in, 0);
  if (p.m > 0) {
    for (int o = 0; o < out; ++o)
      for (int c = 0; c < in; c += p.m)
        select_smallest(score.data() + size_t(o) * in + c, p.m, p.m - p.n, mask.data() + size_t(o) * in + c);
  } else if (per_row) {
    const int64_t k = prune_count(p.sparsity, in);
    for (int o = 0; o < out; ++o) select_smallest(score.data() + size_t(o) * in, in, k, mask.data() + size_t(o) * in);
  } else {
    const int64_t n = int64_t(out) * in;
    select_smallest(score.data(), n, prune_count(p.sparsity, n), mask.data());
  }
  r.keep.resize(mask.size());
  for (size_t i = 0; i < mask.size(); ++i) {
    if (mask[i]) r.w[i] = 0.0f;
    r.keep[i] = !mask[i];
  }
  count_sparsity(r);
  return r;
}

}  // namespace

PruneResult prune_magnitude(const float* W, int out, int in, const PruneSpec& p) {
  check_prune_spec(p, out, in, "magnitude");
  std::vector<double> score(size_t(out) * in);
  for (size_t i = 0; i < score.size(); ++i) score[i] = std::fabs(W[i]);
  return apply_scores(W, out, in, score, p, false);
}

PruneResult prune_wanda(const float* W, int out, int in, const float* col_norm, const PruneSpec& p) {
  check_prune_spec(p, out, in, "wanda");
  std::vector<double> score(size_t(out) * in);
  for (int o = 0; o < out; ++o)
    for (int c = 0; c < in; ++c) score[size_t(o) * in + c] = std::fabs(double(W[size_t(o) * in + c])) * col_norm[c];
  return apply_scores(W, out, in, score, p, true);
}

PruneResult sparsegpt_prune(const float* W, int out, int in, const Hessian& H, const SparseGptOptions& o) {
  if (H.n != in) fail("sparsegpt: Hessian width {} does not match the input dimension {}", H.n, in);
  return sparsegpt_prune_h(W, out, in, hessian_matrix(H), o);
}

namespace {

// SparseGPT's column sweep (the reference's fasterprune). With qs (its `wbits < 16` path) every column is
// quantized after the mask is applied — q = quantize(mask ? 0 : w) — and the OBS error of the pruned *and*
// quantized column is what is propagated, so mask and quantization are decided in the same sweep. Grids: per
// output channel fitted to the original W (the reference's find_params(W) before the sweep), or, with groups
// (ctrust's addition, as GPTQ's dynamic groups), fitted to the current weights of the group's G columns when its
// first column is reached; the lazy block is then a multiple of G (and of M) so those weights are fully updated.
void sparsegpt_sweep(const float* W, int out, int in, std::vector<double> H, const SparseGptOptions& o,
                     const QuantSpec* qs, PruneResult& pr, QuantResult* qr) {
  const PruneSpec& p = o.p;
  check_prune_spec(p, out, in, "sparsegpt");
  BlasSerial serial(double(out) * in * in < 8 * kBlasSmall);
  if (o.block <= 0) fail("sparsegpt: block size must be positive, got {}", o.block);
  const bool grouped = qs && qs->group > 0;
  const int G = qs ? (grouped ? qs->group : in) : 0;
  if (qs) {
    check_quant_spec(*qs, out, in, "sparsegpt");
    if (qs->ktype != GgmlType::F32 || qs->minmax || qs->ggml_fit)
      fail("sparsegpt: pruning + quantization uses the GPTQ grid (no K-quant / minmax / ggml fit)");
    qr->out = out;
    qr->in = in;
    qr->spec = *qs;
    qr->group = G;
    qr->n_groups = in / G;
    qr->grids.resize(size_t(out) * qr->n_groups);
    qr->prune_n = p.n;
    qr->prune_m = p.m;
    if (!grouped)
      for (int i = 0; i < out; ++i) qr->grids[i] = fit_grid(W + size_t(i) * in, in, *qs);
  }
  const float maxq = qs ? float(quant_maxq(qs->bits)) : 0.0f;
  std::vector<double> Wd(W, W + size_t(out) * in);
  std::vector<uint8_t> dead;
  inverse_cholesky_upper(H, in, o.damp, dead, "sparsegpt");
  for (int c = 0; c < in; ++c)
    if (dead[c])
      for (int i = 0; i < out; ++i) Wd[size_t(i) * in + c] = 0.0;
  const std::vector<double>& U = H;

  int B = std::min(o.block, in);
  if (p.m > 0) B = std::max(p.m, (B / p.m) * p.m);  // N:M groups never straddle a block
  if (grouped) {  // and quantization groups neither (a multiple of lcm(G, M))
    const int L = std::lcm(G, std::max(p.m, 1));
    B = L <= B ? (B / L) * L : L;
  }
  const bool nm = p.m > 0;
  std::vector<uint8_t> keep(size_t(out) * in, 1);

  std::vector<double> Err, score;
  std::vector<uint8_t> mask;
  for (int i1 = 0; i1 < in; i1 += B) {
    const int i2 = std::min(i1 + B, in), cnt = i2 - i1;
    Err.assign(size_t(out) * cnt, 0.0);
    mask.assign(size_t(out) * cnt, 0);
    if (!nm) {  // adaptive mask of the whole block: w^2 / U_jj^2 with the weights updated so far
      score.resize(size_t(out) * cnt);
      for (int r = 0; r < out; ++r)
        for (int j = 0; j < cnt; ++j) {
          const double w = Wd[size_t(r) * in + i1 + j], d = U[size_t(i1 + j) * in + i1 + j];
          score[size_t(r) * cnt + j] = w * w / (d * d);
        }
      const int64_t k = prune_count(p.sparsity, int64_t(out) * i2) - prune_count(p.sparsity, int64_t(out) * i1);
      select_smallest(score.data(), int64_t(out) * cnt, k, mask.data());
    }
#pragma omp parallel for schedule(static) if (size_t(out) * in >= (1u << 16))
    for (int r = 0; r < out; ++r) {
      double* w = Wd.data() + size_t(r) * in;
      uint8_t* m = mask.data() + size_t(r) * cnt;
      double s[256];
      std::vector<double> sv;
      std::vector<float> tmp;
      QuantGrid grid = qs && !grouped ? qr->grids[r] : QuantGrid{};
      for (int i = i1; i < i2; ++i) {
        if (nm && (i - i1) % p.m == 0) {
          double* sc = s;
          if (p.m > 256) { sv.resize(p.m); sc = sv.data(); }
          for (int j = 0; j < p.m; ++j) {
            const double d = U[size_t(i + j) * in + i + j];
            sc[j] = w[i + j] * w[i + j] / (d * d);
          }
          select_smallest(sc, p.m, p.m - p.n, m + (i - i1));
        }
        double q = m[i - i1] ? 0.0 : w[i];
        if (qs) {
          if (grouped && i % G == 0) {
            tmp.resize(G);
            for (int j = 0; j < G; ++j) tmp[j] = float(w[i + j]);
            grid = fit_grid(tmp.data(), G, *qs);
            qr->grids[size_t(r) * qr->n_groups + i / G] = grid;
          }
          q = grid_value(grid, grid_q(grid, float(q), maxq));  // a pruned weight: quantize(0) = 0 on this grid
        }
        keep[size_t(r) * in + i] = !m[i - i1];
        const double err = (w[i] - q) / U[size_t(i) * in + i];
        w[i] = q;
        Err[size_t(r) * cnt + (i - i1)] = err;
        const double* u = U.data() + size_t(i) * in;
        for (int j = i + 1; j < i2; ++j) w[j] -= err * u[j];
      }
    }
    if (i2 < in)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in - i2, cnt, -1.0, Err.data(), cnt,
                  U.data() + size_t(i1) * in + i2, in, 1.0, Wd.data() + i2, in);
  }
  pr.out = out;
  pr.in = in;
  pr.w.resize(Wd.size());
  for (size_t i = 0; i < Wd.size(); ++i) pr.w[i] = float(Wd[i]);
  count_sparsity(pr);
  pr.keep = std::move(keep);
  if (qr) {
    qr->w = pr.w;
    qr->keep = pr.keep;
  }
}

}  // namespace

PruneResult sparsegpt_prune_h(const float* W, int out, int in, std::vector<double> H, const SparseGptOptions& o) {
  PruneResult r;
  sparsegpt_sweep(W, out, in, std::move(H), o, nullptr, r, nullptr);
  return r;
}

QuantResult sparsegpt_quantize_h(const float* W, int out, int in, std::vector<double> H, const SparseGptOptions& o,
                                 const QuantSpec& qs) {
  QuantSpec s = qs;
  s.zero_point = true;  // 0 on the grid: pruned weights stay exactly 0 (the reference's grid)
  PruneResult pr;
  QuantResult q;
  sparsegpt_sweep(W, out, in, std::move(H), o, &s, pr, &q);
  return q;
}

QuantResult prune_then_quantize(const PruneResult& pr, const PruneSpec& p, const QuantSpec& qs) {
  QuantSpec s = qs;
  s.zero_point = true;
  if (s.ktype != GgmlType::F32 || s.minmax || s.ggml_fit)
    fail("prune + quantize: the kept weights use the GPTQ grid (no K-quant / minmax / ggml fit)");
  QuantResult q = rtn_quantize(pr.w.data(), pr.out, pr.in, s);
  q.keep = pr.keep;
  q.prune_n = p.n;
  q.prune_m = p.m;
  return q;
}

}  // namespace ctrust
