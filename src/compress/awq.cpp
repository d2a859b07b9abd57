// AWQ scale and clipping search, SmoothQuant scales, activation statistics and scale folding.
#include "compress/awq.h"

#include <algorithm>
#include <cmath>

#include <cblas.h>
#include <exception>

#include "base/error.h"
#include "compress/blas_serial.h"
#include "ops/attention.h"
#include "ops/linear.h"
#include "ops/ops.h"

namespace ctrust {

ActStats make_act_stats(int n) {
  if (n <= 0) fail("activation statistics: width must be positive, got {}", n);
  ActStats s;
  s.n = n;
  s.sum_abs.assign(n, 0.0);
  s.sum_sq.assign(n, 0.0);
  s.max_abs.assign(n, 0.0f);
  return s;
}

void act_stats_add(ActStats& s, const float* x, int rows) {
  for (int t = 0; t < rows; ++t) {
    const float* r = x + size_t(t) * s.n;
    for (int j = 0; j < s.n; ++j) {
      const float a = std::fabs(r[j]);
      s.sum_abs[j] += a;
      s.sum_sq[j] += double(a) * a;
      s.max_abs[j] = std::max(s.max_abs[j], a);
    }
  }
  s.tokens += rows;
}

void act_stats_merge(ActStats& s, const ActStats& part) {
  if (part.n != s.n) fail("activation statistics: cannot merge width {} into width {}", part.n, s.n);
  for (int j = 0; j < s.n; ++j) {
    s.sum_abs[j] += part.sum_abs[j];
    s.sum_sq[j] += part.sum_sq[j];
    s.max_abs[j] = std::max(s.max_abs[j], part.max_abs[j]);
  }
  s.tokens += part.tokens;
}

std::vector<float> act_mean_abs(const ActStats& s) {
  if (s.tokens <= 0) fail("activation statistics: no calibration tokens were added");
  std::vector<float> m(s.n);
  for (int j = 0; j < s.n; ++j) m[j] = float(s.sum_abs[j] / double(s.tokens));
  return m;
}

std::vector<float> act_col_norm(const ActStats& s) {
  std::vector<float> m(s.n);
  for (int j = 0; j < s.n; ++j) m[j] = float(std::sqrt(s.sum_sq[j]));
  return m;
}

std::vector<float> awq_scales_for(const std::vector<float>& mean_abs, double alpha) {
  std::vector<float> s(mean_abs.size());
  float mx = 0.0f, mn = INFINITY;
  for (size_t j = 0; j < s.size(); ++j) {
    s[j] = std::max(std::pow(mean_abs[j], float(alpha)), 1e-4f);
    mx = std::max(mx, s[j]);
    mn = std::min(mn, s[j]);
  }
  const float norm = std::sqrt(mx * mn);
  for (float& v : s) v /= norm;
  return s;
}

AwqSearch awq_search(const std::vector<float>& mean_abs, int n_grid,
                     const std::function<double(const std::vector<float>& s)>& loss) {
  if (n_grid <= 0) fail("awq: the scale grid needs at least one point, got {}", n_grid);
  // The grid points are independent: one OpenMP thread each, so the BLAS calls inside a loss run single-threaded
  // (OpenBLAS does inside a parallel region) and every loss is computed by the same serial code whatever the
  // thread count. (Multi-threaded OpenBLAS sgemm does not give the same bits as single-threaded with its
  // Haswell/Zen kernels: CompressModel.ResultIndependentOfThreadCount.) The choice is made in grid order.
  std::vector<std::vector<float>> cand(n_grid);
  std::vector<double> losses(n_grid);
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) if (n_grid > 1)
  for (int i = 0; i < n_grid; ++i) {
    try {
      cand[i] = awq_scales_for(mean_abs, double(i) / n_grid);
      losses[i] = loss(cand[i]);
    } catch (...) {
#pragma omp critical(awq_search_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  AwqSearch best;
  double best_loss = INFINITY;
  for (int i = 0; i < n_grid; ++i) {
    best.losses.push_back(losses[i]);
    if (losses[i] < best_loss) {
      best_loss = losses[i];
      best.alpha = double(i) / n_grid;
      best.s = std::move(cand[i]);
    }
  }
  if (best.s.empty()) fail("awq: every scale candidate gave a non-finite loss");
  return best;
}

void scale_columns(float* W, int out, int in, const std::vector<float>& s) {
  for (int o = 0; o < out; ++o)
    for (int j = 0; j < in; ++j) W[size_t(o) * in + j] *= s[j];
}

void divide_vector(float* v, const std::vector<float>& s) {
  for (size_t j = 0; j < s.size(); ++j) v[j] /= s[j];
}

void divide_rows(float* W, int out, int in, const std::vector<float>& s) {
  if (int(s.size()) != out) fail("scale folding: {} scales for {} rows", s.size(), out);
  for (int o = 0; o < out; ++o)
    for (int j = 0; j < in; ++j) W[size_t(o) * in + j] /= s[o];
}

std::vector<float> awq_fake_quant(const float* W, int out, int in, const std::vector<float>& s, const QuantSpec& q) {
  std::vector<float> ws(W, W + size_t(out) * in);
  scale_columns(ws.data(), out, in, s);
  QuantResult r = rtn_quantize(ws.data(), out, in, q);
  for (int o = 0; o < out; ++o)
    for (int j = 0; j < in; ++j) r.w[size_t(o) * in + j] /= s[j];
  return std::move(r.w);
}

double awq_linears_loss(const std::vector<const float*>& Ws, const std::vector<int>& outs, int in, const float* X,
                        int n, const std::vector<float>& s, const QuantSpec& q) {
  double err = 0, count = 0;
  for (size_t k = 0; k < Ws.size(); ++k) {
    std::vector<float> wq = awq_fake_quant(Ws[k], outs[k], in, s, q);
    err += output_error(Ws[k], wq.data(), outs[k], in, X, n);
    count += double(outs[k]) * n;
  }
  return err / count;
}

double awq_linears_loss_gram(const std::vector<const float*>& Ws, const std::vector<int>& outs, int in,
                             const std::vector<float>& gram, int64_t n, const std::vector<float>& s,
                             const QuantSpec& q) {
  if (gram.size() != size_t(in) * in) fail("awq: Gram matrix has {} values, expected {}", gram.size(), size_t(in) * in);
  double err = 0, count = 0;
  for (size_t k = 0; k < Ws.size(); ++k) {
    const int out = outs[k];
    std::vector<float> D = awq_fake_quant(Ws[k], out, in, s, q), E(size_t(out) * in);
    for (size_t i = 0; i < D.size(); ++i) D[i] = Ws[k][i] - D[i];
    BlasSerial serial(double(out) * in * in < kBlasSmall);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, in, 1.0f, D.data(), in, gram.data(), in, 0.0f,
                E.data(), in);
    for (size_t i = 0; i < D.size(); ++i) err += double(D[i]) * E[i];
    count += double(out) * double(n);
  }
  return err / count;
}

namespace {

// y[n][out] = x[n][in] W^T
void matmul_t(const float* x, const float* W, float* y, int n, int in, int out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}

std::vector<float> mlp_forward(const float* gate, const float* up, const float* down, int dim, int hidden,
                               const float* X, int n) {
  BlasSerial serial(double(n) * dim * hidden < kBlasSmall);
  std::vector<float> g(size_t(n) * hidden), u(size_t(n) * hidden), y(size_t(n) * dim);
  matmul_t(X, gate, g.data(), n, dim, hidden);
  matmul_t(X, up, u.data(), n, dim, hidden);
  for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  matmul_t(g.data(), down, y.data(), n, hidden, dim);
  return y;
}

}  // namespace

std::vector<float> awq_mlp_forward(const float* gate, const float* up, const float* down, int dim, int hidden,
                                   const float* X, int n) {
  return mlp_forward(gate, up, down, dim, hidden, X, n);
}

double awq_mlp_loss(const float* gate, const float* up, const float* down, int dim, int hidden, const float* X, int n,
                    const std::vector<float>& s, const QuantSpec& q) {
  return awq_mlp_loss_ref(gate, up, down, dim, hidden, X, n, mlp_forward(gate, up, down, dim, hidden, X, n), s, q);
}

double awq_mlp_loss_ref(const float* gate, const float* up, const float* down, int dim, int hidden, const float* X,
                        int n, const std::vector<float>& ref, const std::vector<float>& s, const QuantSpec& q) {
  if (ref.size() != size_t(n) * dim) fail("awq: reference MLP output has {} values, expected {}", ref.size(), size_t(n) * dim);
  std::vector<float> gq = awq_fake_quant(gate, hidden, dim, s, q), uq = awq_fake_quant(up, hidden, dim, s, q);
  std::vector<float> y = mlp_forward(gq.data(), uq.data(), down, dim, hidden, X, n);
  double e = 0;
  for (size_t i = 0; i < y.size(); ++i) e += double(y[i] - ref[i]) * (y[i] - ref[i]);
  return e / double(y.size());
}

std::vector<float> awq_attention_forward(const AwqAttention& a, const float* X, int n_seq, int len) {
  const int dim = a.dim, hd = a.head_dim, qdim = a.n_heads * hd, kvdim = a.n_kv_heads * hd;
  if (n_seq < 1 || len < 1 || dim <= 0 || hd <= 0 || a.n_heads <= 0 || a.n_kv_heads <= 0 ||
      a.n_heads % a.n_kv_heads != 0)
    fail("awq: bad attention shape ({} sequences of {}, dim {}, heads {}/{} of {})", n_seq, len, dim, a.n_heads,
         a.n_kv_heads, hd);
  const int64_t rows = int64_t(n_seq) * len;
  std::vector<float> q(size_t(rows) * qdim), k(size_t(rows) * kvdim), v(size_t(rows) * kvdim),
      att(size_t(rows) * qdim), out(size_t(rows) * dim), cos_t(size_t(len) * hd / 2), sin_t(size_t(len) * hd / 2);
  auto lin = [&](const float* w, const float* b, int in, int o, const float* x, float* y) {
    Linear L;
    L.w = w;
    L.b = b;
    L.in = in;
    L.out = o;
    linear(L, x, y, int(rows));
  };
  lin(a.wq, a.bq, dim, qdim, X, q.data());
  lin(a.wk, a.bk, dim, kvdim, X, k.data());
  lin(a.wv, a.bv, dim, kvdim, X, v.data());
  rope_tables(0, len, hd, a.rope_theta, a.rope_freq_scale, cos_t.data(), sin_t.data());
  for (int s = 0; s < n_seq; ++s) {
    float* qs = q.data() + size_t(s) * len * qdim;
    float* ks = k.data() + size_t(s) * len * kvdim;
    rope(qs, len, a.n_heads, hd, a.rope, cos_t.data(), sin_t.data());
    rope(ks, len, a.n_kv_heads, hd, a.rope, cos_t.data(), sin_t.data());
    attention(AttentionShape{a.n_heads, a.n_kv_heads, hd}, qs, ks, v.data() + size_t(s) * len * kvdim, kvdim, 0,
              len, att.data() + size_t(s) * len * qdim);
  }
  lin(a.wo, nullptr, qdim, dim, att.data(), out.data());
  return out;
}

double awq_attention_loss(const AwqAttention& a, const bool quantize[3], const float* X, int n_seq, int len,
                          const std::vector<float>& ref, const std::vector<float>& s, const QuantSpec& q) {
  const int qdim = a.n_heads * a.head_dim, kvdim = a.n_kv_heads * a.head_dim;
  if (ref.size() != size_t(n_seq) * len * a.dim)
    fail("awq: reference attention output has {} values, expected {}", ref.size(), size_t(n_seq) * len * a.dim);
  AwqAttention aq = a;
  std::vector<float> wq, wk, wv;
  if (quantize[0]) aq.wq = (wq = awq_fake_quant(a.wq, qdim, a.dim, s, q)).data();
  if (quantize[1]) aq.wk = (wk = awq_fake_quant(a.wk, kvdim, a.dim, s, q)).data();
  if (quantize[2]) aq.wv = (wv = awq_fake_quant(a.wv, kvdim, a.dim, s, q)).data();
  std::vector<float> y = awq_attention_forward(aq, X, n_seq, len);
  double e = 0;
  for (size_t i = 0; i < y.size(); ++i) e += double(y[i] - ref[i]) * (y[i] - ref[i]);
  return e / double(y.size());
}

std::vector<float> awq_clip(float* W, int out, int in, const float* X, int n, const AwqOptions& o) {
  check_quant_spec(o.q, out, in, "awq clip");
  const int G = o.q.group > 0 ? o.q.group : in, ng = in / G;
  // Token sample: every (n / clip_tokens)-th row, as input_feat[:, 0::n // n_sample_token].
  const int step = std::max(1, n / std::max(1, o.clip_tokens));
  std::vector<const float*> xs;
  for (int t = 0; t < n; t += step) xs.push_back(X + size_t(t) * in);
  const int nt = int(xs.size());
  const int n_shrink = int(o.max_shrink * o.clip_grid);
  const float maxq = float(quant_maxq(o.q.bits));
  // The sampled inputs transposed, XT [in][nt], so that the output change of a group over all sampled tokens,
  // sum_j (cur_j - w_j) XT[j][:], is a run of contiguous f32 axpys (vectorized).
  std::vector<float> XT(size_t(in) * nt);
  for (int t = 0; t < nt; ++t)
    for (int j = 0; j < in; ++j) XT[size_t(j) * nt + t] = xs[t][j];
  std::vector<float> best_max(size_t(out) * ng);
#pragma omp parallel for schedule(dynamic, 4) if (size_t(out) * in >= (1u << 14))
  for (int r = 0; r < out; ++r) {
    std::vector<float> cur(G), delta(nt);
    for (int g = 0; g < ng; ++g) {
      float* w = W + size_t(r) * in + size_t(g) * G;
      const float* xg = XT.data() + size_t(g) * G * nt;
      float org_max = 0.0f;
      for (int j = 0; j < G; ++j) org_max = std::max(org_max, std::fabs(w[j]));
      double best_err = 1e9;  // llm-awq's initial min_errs
      float best = org_max;
      for (int i = 0; i < n_shrink; ++i) {
        const float mx = org_max * (1.0f - float(i) / float(o.clip_grid));
        for (int j = 0; j < G; ++j) cur[j] = std::clamp(w[j], -mx, mx);
        QuantGrid grid = fit_grid(cur.data(), G, o.q);
        std::fill(delta.begin(), delta.end(), 0.0f);
        for (int j = 0; j < G; ++j) {
          const float d = grid_value(grid, grid_q(grid, cur[j], maxq)) - w[j];
          if (d == 0.0f) continue;
          const float* x = xg + size_t(j) * nt;
#pragma omp simd
          for (int t = 0; t < nt; ++t) delta[t] += d * x[t];
        }
        double err = 0;
        for (int t = 0; t < nt; ++t) err += double(delta[t]) * delta[t];
        err /= std::max(1, nt);
        if (err < best_err) {
          best_err = err;
          best = mx;
        }
      }
      best_max[size_t(r) * ng + g] = best;
      for (int j = 0; j < G; ++j) w[j] = std::clamp(w[j], -best, best);
    }
  }
  return best_max;
}

std::vector<float> smoothquant_scales(const std::vector<float>& act_max, const std::vector<const float*>& Ws,
                                      const std::vector<int>& outs, int in, double alpha) {
  if (!(alpha >= 0.0 && alpha <= 1.0)) fail("smoothquant: alpha must be in [0, 1], got {}", alpha);
  if (int(act_max.size()) != in) fail("smoothquant: {} activation maxima for {} inputs", act_max.size(), in);
  std::vector<float> wmax(in, 0.0f);
  for (size_t k = 0; k < Ws.size(); ++k)
    for (int o = 0; o < outs[k]; ++o)
      for (int j = 0; j < in; ++j) wmax[j] = std::max(wmax[j], std::fabs(Ws[k][size_t(o) * in + j]));
  std::vector<float> s(in);
  for (int j = 0; j < in; ++j) {
    const double w = std::max(wmax[j], 1e-5f);
    s[j] = float(std::max(std::pow(double(act_max[j]), alpha) / std::pow(w, 1.0 - alpha), 1e-5));
  }
  return s;
}

}  // namespace ctrust
