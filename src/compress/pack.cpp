// Packed GGUF storage of compressed matrices: ggml types where the grid is one, else ctrust's own types
// (io/ctrust_types.h). Every result is verified by dequantizing it with the loader's code.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "compress/quant.h"
#include "io/ctrust_types.h"

namespace ctrust {

namespace {

// Dequantizes `bytes` (rows of `in` values in type t, columns in stored order) and compares with w bit for bit.
bool round_trips(GgmlType t, const std::vector<uint8_t>& bytes, const std::vector<int32_t>& perm, const float* w,
                 int out, int in) {
  std::vector<float> y(size_t(out) * in);
  dequantize(t, bytes.data(), y.data(), int64_t(out) * in);
  if (!perm.empty()) {
    std::vector<float> u(y.size());
    unpermute_columns(y.data(), u.data(), out, in, perm);
    y.swap(u);
  }
  return std::memcmp(y.data(), w, y.size() * sizeof(float)) == 0;
}

}  // namespace

PackedTensor pack_quant(const QuantResult& r) {
  PackedTensor p;
  if (r.spec.ktype != GgmlType::F32) {  // K-quant blocks written by the quantizer itself
    if (r.kbytes.size() == ggml_nbytes(r.spec.ktype, int64_t(r.out) * r.in) &&
        round_trips(r.spec.ktype, r.kbytes, {}, r.w.data(), r.out, r.in)) {
      p.type = r.spec.ktype;
      p.bytes = r.kbytes;
    }
    return p;
  }
  const bool nm = !r.keep.empty() && r.prune_m > 0;  // N:M pruned: the mask form below is smaller than a ggml type
  const GgmlType g = nm ? GgmlType::F32 : packable_type(r);
  if (g != GgmlType::F32) {
    p.type = g;
    p.bytes = pack_ggml(r, g);
    return p;
  }
  if (r.out <= 0 || r.in <= 0 || r.grids.empty()) return p;
  QxParams qp;
  qp.bits = r.spec.bits;
  qp.group = r.group;
  const float half = float(1 << (r.spec.bits - 1));
  const QuantGrid& g0 = r.grids[0];
  qp.form = g0.affine ? QxForm::Affine : (g0.zero == half && r.spec.sym) ? QxForm::Sym : QxForm::Zero;
  bool f16 = true;
  for (const QuantGrid& gr : r.grids) {
    if (gr.affine != g0.affine) return p;
    if (qp.form == QxForm::Sym && gr.zero != half) return p;
    if (qp.form == QxForm::Zero && !(gr.zero >= 0.0f && gr.zero <= 255.0f && gr.zero == float(int(gr.zero)))) return p;
    f16 = f16 && round_f16(gr.scale) == gr.scale && (qp.form != QxForm::Affine || round_f16(gr.min) == gr.min);
  }
  qp.f16 = f16;
  // Columns in stored order: by group (g_idx), original order within a group.
  std::vector<int32_t> cols(size_t(r.in));
  std::iota(cols.begin(), cols.end(), 0);
  if (!r.g_idx.empty()) {
    std::stable_sort(cols.begin(), cols.end(), [&](int a, int b) { return r.g_idx[a] < r.g_idx[b]; });
    for (int k = 0; k < r.in; ++k)
      if (r.g_idx[cols[k]] != k / r.group) return p;  // every group must have exactly G columns
    bool identity = true;
    for (int k = 0; k < r.in; ++k) identity = identity && cols[k] == k;
    if (!identity) p.perm = cols;
  }
  if (nm && r.g_idx.empty() && r.group % r.prune_m == 0 && r.group <= 16383 &&
      r.prune_m <= 16) {
    // N:M pruned + quantized: mask and the kept columns' levels (CTRUST_NMQX).
    NmqxParams np;
    np.q = qp;
    np.n = r.prune_n;
    np.m = r.prune_m;
    bool exact_nm = true;  // every group of M keeps exactly N
    for (size_t k = 0; k < r.keep.size() && exact_nm; k += r.prune_m) {
      int c = 0;
      for (int j = 0; j < r.prune_m; ++j) c += r.keep[k + j] != 0;
      exact_nm = c == r.prune_n;
    }
    if (exact_nm) {
      const GgmlType t = nmqx_type(np);
      const size_t bs = nmqx_block_bytes(np);
      std::vector<uint8_t> bytes(size_t(r.out) * r.n_groups * bs);
      const float maxq = float(quant_maxq(qp.bits));
#pragma omp parallel for schedule(static) if (size_t(r.out) * r.in >= (1u << 16))
      for (int o = 0; o < r.out; ++o) {
        std::vector<int> q(size_t(r.group));
        for (int gi = 0; gi < r.n_groups; ++gi) {
          const QuantGrid& gr = r.grids[size_t(o) * r.n_groups + gi];
          const size_t off = size_t(o) * r.in + size_t(gi) * r.group;
          for (int j = 0; j < r.group; ++j) q[j] = int(grid_q(gr, r.w[off + j], maxq));
          nmqx_encode_block(np, gr.scale, qp.form == QxForm::Affine ? gr.min : gr.zero, &r.keep[off], q.data(),
                            bytes.data() + (size_t(o) * r.n_groups + gi) * bs);
        }
      }
      if (round_trips(t, bytes, {}, r.w.data(), r.out, r.in)) {
        p.type = t;
        p.bytes = std::move(bytes);
        return p;
      }
    }
  }
  const GgmlType t = qx_type(qp);
  const size_t bs = qx_block_bytes(qp);
  std::vector<uint8_t> bytes(size_t(r.out) * r.n_groups * bs);
  const float maxq = float(quant_maxq(qp.bits));
#pragma omp parallel for schedule(static) if (size_t(r.out) * r.in >= (1u << 16))
  for (int o = 0; o < r.out; ++o) {
    std::vector<int> q(size_t(r.group));
    for (int gi = 0; gi < r.n_groups; ++gi) {
      const QuantGrid& gr = r.grids[size_t(o) * r.n_groups + gi];
      for (int j = 0; j < r.group; ++j) q[j] = int(grid_q(gr, r.w[size_t(o) * r.in + cols[size_t(gi) * r.group + j]], maxq));
      qx_encode_block(qp, gr.scale, qp.form == QxForm::Affine ? gr.min : gr.zero, q.data(),
                      bytes.data() + (size_t(o) * r.n_groups + gi) * bs);
    }
  }
  if (!round_trips(t, bytes, p.perm, r.w.data(), r.out, r.in)) return PackedTensor{};
  p.type = t;
  p.bytes = std::move(bytes);
  return p;
}

PackedTensor pack_sparse(const float* w, int out, int in) {
  PackedTensor p;
  if (out <= 0 || in <= 0 || in > 16383) return p;
  int64_t cap = 0;
  for (int o = 0; o < out; ++o) cap = std::max(cap, sparse_stored_count(w + size_t(o) * in, in));
  const SparseParams sp{in, int(cap)};
  const size_t row_bytes = size_t(in + 7) / 8 + size_t(cap) * 4;
  if (row_bytes >= size_t(in) * 4) return p;  // not smaller than f32
  std::vector<uint8_t> bytes(size_t(out) * row_bytes);
  for (int o = 0; o < out; ++o)
    if (!sparse_encode_row(sp, w + size_t(o) * in, bytes.data() + size_t(o) * row_bytes)) return p;
  const GgmlType t = sparse_type(in, int(cap));
  if (!round_trips(t, bytes, {}, w, out, in)) return p;
  p.type = t;
  p.bytes = std::move(bytes);
  return p;
}

}  // namespace ctrust
