#include "ops/attention.h"

#include <cblas.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/ops.h"

namespace ctrust {

namespace {
constexpr int kBlock = 64;  // query rows per task in the sgemm path
}

void attention(const AttentionShape& s, const float* q, const float* k, const float* v, int kv_stride, int pos0,
               int n, float* out) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const int q_stride = s.n_heads * hd;
  const float scale = s.scale > 0 ? s.scale : 1.0f / std::sqrt((float)hd);
  const int window = s.window;
  const int n_blocks = (n + kBlock - 1) / kBlock;
  const int n_tasks = s.n_heads * n_blocks;
  // First key a query at position p sees.
  auto first_key = [window](int p) { return window > 0 ? std::max(0, p - window + 1) : 0; };

  // Threads only pay off when there is enough work (their start-up costs microseconds).
  const int64_t work = (int64_t)s.n_heads * n * (pos0 + n) * hd;
#pragma omp parallel if (work > (1 << 18))
  {
    thread_local std::vector<float> scores;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < n_tasks; ++t) {
      const int h = t / n_blocks, blk = t % n_blocks;
      const int i0 = blk * kBlock, i1 = std::min(n, i0 + kBlock);
      const int rows = i1 - i0;
      const int kb = first_key(pos0 + i0);  // first key any row of the block sees
      const int L = pos0 + i1 - kb;          // keys kb .. pos0+i1-1: those needed by the block's rows
      const float* kh = k + (int64_t)(h / group) * hd + (int64_t)kb * kv_stride;
      const float* vh = v + (int64_t)(h / group) * hd + (int64_t)kb * kv_stride;
      const float* qh = q + (int64_t)i0 * q_stride + (int64_t)h * hd;
      float* oh = out + (int64_t)i0 * q_stride + (int64_t)h * hd;
      if ((int64_t)scores.size() < (int64_t)rows * L) scores.resize((int64_t)rows * L);
      float* S = scores.data();
      if (rows <= 2) {
        for (int r = 0; r < rows; ++r) {
          const int p = pos0 + i0 + r;
          const int lo = first_key(p) - kb, len = p + 1 - kb;  // visible columns [lo, len)
          const float* qr = qh + (int64_t)r * q_stride;
          float* sr = S + (int64_t)r * L;
          for (int j = lo; j < len; ++j) {
            const float* kj = kh + (int64_t)j * kv_stride;
            float d = 0.0f;
            for (int c = 0; c < hd; ++c) d += qr[c] * kj[c];
            sr[j] = d * scale;
          }
          softmax(sr + lo, len - lo);
          float* orow = oh + (int64_t)r * q_stride;
          for (int c = 0; c < hd; ++c) orow[c] = 0.0f;
          for (int j = lo; j < len; ++j) {
            const float pj = sr[j];
            const float* vj = vh + (int64_t)j * kv_stride;
            for (int c = 0; c < hd; ++c) orow[c] += pj * vj[c];
          }
        }
        continue;
      }
      // S = scale * Q_blk K^T : [rows x L]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, L, hd, scale, qh, q_stride, kh, kv_stride, 0.0f,
                  S, L);
      for (int r = 0; r < rows; ++r) {
        const int p = pos0 + i0 + r;
        const int lo = first_key(p) - kb, len = p + 1 - kb;  // causal (and window): keys kb+lo .. p
        float* sr = S + (int64_t)r * L;
        for (int j = 0; j < lo; ++j) sr[j] = 0.0f;
        softmax(sr + lo, len - lo);
        for (int j = len; j < L; ++j) sr[j] = 0.0f;
      }
      // O_blk = S V : [rows x hd]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, L, 1.0f, S, L, vh, kv_stride, 0.0f, oh,
                  q_stride);
    }
  }
}

}  // namespace ctrust

namespace ctrust {

void attention_masked(const AttentionShape& s, const float* q, const float* k, const float* v, int kv_stride,
                      int n_past, int n, const unsigned char* mask, float* out, const int* pos) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const int q_stride = s.n_heads * hd;
  const float scale = s.scale > 0 ? s.scale : 1.0f / std::sqrt((float)hd);
  const int window = pos ? s.window : 0;
  // Within the window: key position kp is visible from a query at position qp (0 = no window).
  auto near = [window](int qp, int kp) { return window <= 0 || qp - kp < window; };
  const int n_blocks = (n + kBlock - 1) / kBlock;
  const int n_tasks = s.n_heads * n_blocks;
  const int64_t work = (int64_t)s.n_heads * n * (n_past + n) * hd;
#pragma omp parallel if (work > (1 << 18))
  {
    thread_local std::vector<float> scores;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < n_tasks; ++t) {
      const int h = t / n_blocks, blk = t % n_blocks;
      const int i0 = blk * kBlock, i1 = std::min(n, i0 + kBlock);
      const int rows = i1 - i0;
      const float* kh = k + (int64_t)(h / group) * hd;
      const float* vh = v + (int64_t)(h / group) * hd;
      const float* qh = q + (int64_t)i0 * q_stride + (int64_t)h * hd;
      float* oh = out + (int64_t)i0 * q_stride + (int64_t)h * hd;
      // New keys before jmin are hidden from every row of the block (other items / other branches of a
      // block-diagonal mask): the scores skip them. Columns: [0, n_past) cached, then new keys jmin .. i1-1.
      int jmin = i1;
      for (int i = i0; i < i1; ++i) {
        const unsigned char* mr = mask + (int64_t)i * n;
        for (int j = 0; j < jmin && j <= i; ++j)
          if (mr[j]) {
            jmin = j;
            break;
          }
      }
      const int n_new = i1 - jmin;  // >= 1: the diagonal is visible
      const int W = n_past + n_new;
      if ((int64_t)scores.size() < (int64_t)rows * W) scores.resize((int64_t)rows * W);
      float* S = scores.data();
      const float* k_new = kh + (int64_t)(n_past + jmin) * kv_stride;
      const float* v_new = vh + (int64_t)(n_past + jmin) * kv_stride;
      if (n_past > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_past, hd, scale, qh, q_stride, kh, kv_stride,
                    0.0f, S, W);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_new, hd, scale, qh, q_stride, k_new, kv_stride,
                  0.0f, S + n_past, W);
      for (int r = 0; r < rows; ++r) {
        const int i = i0 + r;
        const unsigned char* mr = mask + (int64_t)i * n;
        float* sr = S + (int64_t)r * W;
        // softmax over the visible keys (sum in double, as softmax() does); hidden keys get weight 0
        const int qp = window > 0 ? pos[i] : 0;
        float mx = -INFINITY;
        for (int j = 0; j < n_past; ++j)
          if (near(qp, j)) mx = std::max(mx, sr[j]);
        for (int j = jmin; j <= i; ++j)
          if (mr[j] && (window <= 0 || near(qp, pos[j]))) mx = std::max(mx, sr[n_past + j - jmin]);
        double sum = 0.0;
        for (int j = 0; j < n_past; ++j) {
          sr[j] = near(qp, j) ? std::exp(sr[j] - mx) : 0.0f;
          sum += sr[j];
        }
        for (int j = jmin; j < i1; ++j) {
          float& x = sr[n_past + j - jmin];
          x = (j <= i && mr[j] && (window <= 0 || near(qp, pos[j]))) ? std::exp(x - mx) : 0.0f;
          sum += x;
        }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < W; ++j) sr[j] *= inv;
      }
      if (n_past > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_past, 1.0f, S, W, vh, kv_stride, 0.0f, oh,
                    q_stride);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_new, 1.0f, S + n_past, W, v_new, kv_stride,
                  n_past > 0 ? 1.0f : 0.0f, oh, q_stride);
    }
  }
}

}  // namespace ctrust
