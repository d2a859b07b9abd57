// ctrust's own GGUF tensor types: CTRUST_QX (uniform grids of any bit width and group size), CTRUST_SPARSE
// (bit mask + f32 values) and CTRUST_NMQX (N:M mask + grid levels of the kept values). Layouts in ctrust_types.h.
#pragma GCC optimize("fp-contract=off")

#include "io/ctrust_types.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "base/error.h"

namespace ctrust {

namespace {

constexpr uint32_t kKindShift = 28, kKindMask = 0x7u;
constexpr uint32_t kKindQx = 0, kKindSparse = 1, kKindNmqx = 2;
constexpr uint32_t kMaxGroup = (1u << 22) - 1, kMaxSparse = (1u << 14) - 1;

uint32_t kind_of(uint32_t id) { return (id >> kKindShift) & kKindMask; }

size_t qx_levels_bytes(const QxParams& p) { return (size_t(p.group) * p.bits + 7) / 8; }
size_t qx_head_bytes(const QxParams& p) {
  const size_t s = p.f16 ? 2 : 4;
  return s + (p.form == QxForm::Zero ? 1 : p.form == QxForm::Affine ? s : 0);
}

const char* form_name(QxForm f) { return f == QxForm::Sym ? "sym" : f == QxForm::Zero ? "zp" : "affine"; }

float rd_scale(const uint8_t* p, bool f16) {
  if (f16) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return ggml_fp16_to_fp32(h);
  }
  float f;
  std::memcpy(&f, p, 4);
  return f;
}
void wr_scale(uint8_t* p, float v, bool f16) {
  if (f16) {
    uint16_t h = ggml_fp32_to_fp16(v);
    std::memcpy(p, &h, 2);
  } else {
    std::memcpy(p, &v, 4);
  }
}

}  // namespace

GgmlType qx_type(const QxParams& p) {
  if (p.bits < 2 || p.bits > 8) fail("ctrust_qx: bits must be 2..8, got {}", p.bits);
  if (p.group < 1 || uint32_t(p.group) > kMaxGroup) fail("ctrust_qx: group size must be 1..{}, got {}", kMaxGroup, p.group);
  if (uint32_t(p.form) > 2) fail("ctrust_qx: bad form {}", uint32_t(p.form));
  return static_cast<GgmlType>(kCtrustTypeBit | (kKindQx << kKindShift) | (uint32_t(p.bits - 1) << 25) |
                               (uint32_t(p.form) << 23) | (uint32_t(p.f16) << 22) | uint32_t(p.group));
}

GgmlType sparse_type(int cols, int capacity) {
  if (cols < 1 || uint32_t(cols) > kMaxSparse) fail("ctrust_sparse: row length must be 1..{}, got {}", kMaxSparse, cols);
  if (capacity < 0 || capacity > cols) fail("ctrust_sparse: capacity {} outside 0..{}", capacity, cols);
  return static_cast<GgmlType>(kCtrustTypeBit | (kKindSparse << kKindShift) | (uint32_t(capacity) << 14) |
                               uint32_t(cols));
}

std::optional<QxParams> qx_params(GgmlType t) {
  const uint32_t id = uint32_t(t);
  if (!(id & kCtrustTypeBit) || kind_of(id) != kKindQx) return std::nullopt;
  QxParams p;
  p.bits = int((id >> 25) & 7u) + 1;
  p.form = QxForm((id >> 23) & 3u);
  p.f16 = (id >> 22) & 1u;
  p.group = int(id & kMaxGroup);
  if (p.bits < 2 || uint32_t(p.form) > 2 || p.group < 1) return std::nullopt;
  return p;
}

std::optional<SparseParams> sparse_params(GgmlType t) {
  const uint32_t id = uint32_t(t);
  if (!(id & kCtrustTypeBit) || kind_of(id) != kKindSparse) return std::nullopt;
  SparseParams p;
  p.capacity = int((id >> 14) & kMaxSparse);
  p.cols = int(id & kMaxSparse);
  if (p.cols < 1 || p.capacity > p.cols) return std::nullopt;
  return p;
}

size_t qx_block_bytes(const QxParams& p) { return qx_head_bytes(p) + qx_levels_bytes(p); }

GgmlType nmqx_type(const NmqxParams& p) {
  const QxParams& q = p.q;
  if (q.bits < 2 || q.bits > 8) fail("ctrust_nmqx: bits must be 2..8, got {}", q.bits);
  if (uint32_t(q.form) > 2) fail("ctrust_nmqx: bad form {}", uint32_t(q.form));
  if (p.m < 1 || p.m > 16 || p.n < 1 || p.n > p.m) fail("ctrust_nmqx: invalid N:M {}:{} (1 <= N <= M <= 16)", p.n, p.m);
  if (q.group < 1 || uint32_t(q.group) > kMaxSparse || q.group % p.m != 0)
    fail("ctrust_nmqx: group size must be 1..{} and a multiple of M = {}, got {}", kMaxSparse, p.m, q.group);
  return static_cast<GgmlType>(kCtrustTypeBit | (kKindNmqx << kKindShift) | (uint32_t(q.bits - 1) << 25) |
                               (uint32_t(q.form) << 23) | (uint32_t(q.f16) << 22) | (uint32_t(p.m - 1) << 18) |
                               (uint32_t(p.n - 1) << 14) | uint32_t(q.group));
}

std::optional<NmqxParams> nmqx_params(GgmlType t) {
  const uint32_t id = uint32_t(t);
  if (!(id & kCtrustTypeBit) || kind_of(id) != kKindNmqx) return std::nullopt;
  NmqxParams p;
  p.q.bits = int((id >> 25) & 7u) + 1;
  p.q.form = QxForm((id >> 23) & 3u);
  p.q.f16 = (id >> 22) & 1u;
  p.m = int((id >> 18) & 15u) + 1;
  p.n = int((id >> 14) & 15u) + 1;
  p.q.group = int(id & kMaxSparse);
  if (p.q.bits < 2 || uint32_t(p.q.form) > 2 || p.q.group < 1 || p.n > p.m || p.q.group % p.m != 0)
    return std::nullopt;
  return p;
}

namespace {
int nmqx_kept(const NmqxParams& p) { return p.q.group / p.m * p.n; }
size_t nmqx_mask_bytes(const NmqxParams& p) { return size_t(p.q.group + 7) / 8; }
}  // namespace

size_t nmqx_block_bytes(const NmqxParams& p) {
  return qx_head_bytes(p.q) + nmqx_mask_bytes(p) + (size_t(nmqx_kept(p)) * p.q.bits + 7) / 8;
}

const GgmlTypeInfo* ctrust_type_info(uint32_t id) {
  if (!(id & kCtrustTypeBit)) return nullptr;
  static std::mutex mu;
  static std::map<uint32_t, const GgmlTypeInfo*> known;
  static std::deque<GgmlTypeInfo> infos;
  static std::deque<std::string> names;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = known.find(id); it != known.end()) return it->second;
  const GgmlType t = static_cast<GgmlType>(id);
  const GgmlTypeInfo* info = nullptr;
  if (auto q = qx_params(t)) {
    names.push_back(fmt::format("ctrust_q{}_{}_g{}_{}", q->bits, form_name(q->form), q->group, q->f16 ? "f16" : "f32"));
    infos.push_back(GgmlTypeInfo{names.back().c_str(), q->group, qx_block_bytes(*q), true, false});
    info = &infos.back();
  } else if (auto nq = nmqx_params(t)) {
    names.push_back(fmt::format("ctrust_{}of{}_q{}_{}_g{}_{}", nq->n, nq->m, nq->q.bits, form_name(nq->q.form),
                                nq->q.group, nq->q.f16 ? "f16" : "f32"));
    infos.push_back(GgmlTypeInfo{names.back().c_str(), nq->q.group, nmqx_block_bytes(*nq), true, false});
    info = &infos.back();
  } else if (auto s = sparse_params(t)) {
    names.push_back(fmt::format("ctrust_sparse_c{}_k{}", s->cols, s->capacity));
    infos.push_back(GgmlTypeInfo{names.back().c_str(), s->cols, size_t(s->cols + 7) / 8 + size_t(s->capacity) * 4,
                                 true, false});
    info = &infos.back();
  }
  if (info) known[id] = info;  // only valid ids are kept (one entry per type a file uses)
  return info;
}

void qx_encode_block(const QxParams& p, float d, float zm, const int* q, uint8_t* dst) {
  wr_scale(dst, d, p.f16);
  uint8_t* b = dst + (p.f16 ? 2 : 4);
  if (p.form == QxForm::Zero) *b++ = uint8_t(int(zm));
  if (p.form == QxForm::Affine) {
    wr_scale(b, zm, p.f16);
    b += p.f16 ? 2 : 4;
  }
  std::memset(b, 0, qx_levels_bytes(p));
  uint64_t pos = 0;
  for (int j = 0; j < p.group; ++j, pos += p.bits) {
    const uint32_t v = uint32_t(q[j]) & ((1u << p.bits) - 1);
    const uint64_t byte = pos >> 3, sh = pos & 7;
    b[byte] |= uint8_t(v << sh);
    if (sh + p.bits > 8) b[byte + 1] |= uint8_t(v >> (8 - sh));
  }
}

namespace {
// Writes `count` values of `bits` bits as a little-endian bit stream (b zeroed first).
void put_levels(uint8_t* b, const int* q, int count, int bits, size_t nbytes) {
  std::memset(b, 0, nbytes);
  uint64_t pos = 0;
  for (int j = 0; j < count; ++j, pos += bits) {
    const uint32_t v = uint32_t(q[j]) & ((1u << bits) - 1);
    const uint64_t byte = pos >> 3, sh = pos & 7;
    b[byte] |= uint8_t(v << sh);
    if (sh + bits > 8) b[byte + 1] |= uint8_t(v >> (8 - sh));
  }
}
uint32_t get_level(const uint8_t* b, uint64_t pos, int bits) {
  const uint64_t byte = pos >> 3, sh = pos & 7;
  uint32_t v = uint32_t(b[byte]) >> sh;
  if (sh + bits > 8) v |= uint32_t(b[byte + 1]) << (8 - sh);
  return v & ((1u << bits) - 1);
}
}  // namespace

void nmqx_encode_block(const NmqxParams& p, float d, float zm, const uint8_t* keep, const int* q, uint8_t* dst) {
  const QxParams& qp = p.q;
  wr_scale(dst, d, qp.f16);
  uint8_t* b = dst + (qp.f16 ? 2 : 4);
  if (qp.form == QxForm::Zero) *b++ = uint8_t(int(zm));
  if (qp.form == QxForm::Affine) {
    wr_scale(b, zm, qp.f16);
    b += qp.f16 ? 2 : 4;
  }
  const size_t mb = nmqx_mask_bytes(p);
  std::memset(b, 0, mb);
  std::vector<int> lev;
  lev.reserve(size_t(nmqx_kept(p)));
  for (int j = 0; j < qp.group; ++j)
    if (keep[j]) {
      b[j >> 3] |= uint8_t(1u << (j & 7));
      lev.push_back(q[j]);
    }
  if (int(lev.size()) != nmqx_kept(p))
    fail("ctrust_nmqx: a block keeps {} values, the type {} ({}:{} of {})", lev.size(), nmqx_kept(p), p.n, p.m, qp.group);
  put_levels(b + mb, lev.data(), int(lev.size()), qp.bits, (lev.size() * qp.bits + 7) / 8);
}

int64_t sparse_stored_count(const float* w, int64_t n) {
  int64_t c = 0;
  for (int64_t j = 0; j < n; ++j) {
    uint32_t x;
    std::memcpy(&x, &w[j], 4);
    c += x != 0;
  }
  return c;
}

bool sparse_encode_row(const SparseParams& p, const float* w, uint8_t* dst) {
  const size_t mask_bytes = size_t(p.cols + 7) / 8;
  std::memset(dst, 0, mask_bytes + size_t(p.capacity) * 4);
  int k = 0;
  for (int j = 0; j < p.cols; ++j) {
    uint32_t x;
    std::memcpy(&x, &w[j], 4);
    if (x == 0) continue;
    if (k == p.capacity) return false;
    dst[j >> 3] |= uint8_t(1u << (j & 7));
    std::memcpy(dst + mask_bytes + size_t(k) * 4, &x, 4);
    ++k;
  }
  return true;
}

namespace {

// A QX/NMQX block's head: scale d, zero point z (Sym: 2^(bits-1); Zero: the stored byte) or minimum m (Affine),
// and where the block's mask or levels start.
struct QxHead {
  float d = 0, z = 0, m = 0;
  const uint8_t* after = nullptr;
};
QxHead read_qx_head(const QxParams& p, const uint8_t* blk) {
  QxHead h;
  h.d = rd_scale(blk, p.f16);
  const uint8_t* b = blk + (p.f16 ? 2 : 4);
  h.z = float(1 << (p.bits - 1));
  if (p.form == QxForm::Zero) h.z = float(*b++);
  if (p.form == QxForm::Affine) {
    h.m = rd_scale(b, p.f16);
    b += p.f16 ? 2 : 4;
  }
  h.after = b;
  return h;
}

// Columns j0.. of a CTRUST_SPARSE row, from stored value k0 on: a set mask bit takes the next stored value, a
// clear one 0; a mask with more bits than the capacity reads the extra columns as 0 (never past the row).
void sparse_expand(const uint8_t* row, const uint8_t* vals, float* y, int j0, int k0, int cols, int capacity) {
  int k = k0;
  for (int j = j0; j < cols; ++j) {
    if (!((row[j >> 3] >> (j & 7)) & 1u) || k >= capacity) {
      y[j] = 0.0f;
      continue;
    }
    std::memcpy(&y[j], vals + size_t(k++) * 4, 4);
  }
}

}  // namespace

void ctrust_dequantize_blocks_ref(GgmlType t, const uint8_t* src, float* dst, int64_t nb) {
  if (auto p = qx_params(t)) {
    const size_t bs = qx_block_bytes(*p);
    const uint32_t mask = (1u << p->bits) - 1;
    for (int64_t i = 0; i < nb; ++i) {
      const uint8_t* blk = src + size_t(i) * bs;
      const QxHead h = read_qx_head(*p, blk);
      const float d = h.d, z = h.z, m = h.m;
      const uint8_t* b = h.after;
      float* y = dst + i * p->group;
      uint64_t pos = 0;
      for (int j = 0; j < p->group; ++j, pos += p->bits) {
        const uint64_t byte = pos >> 3, sh = pos & 7;
        uint32_t v = uint32_t(b[byte]) >> sh;
        if (sh + p->bits > 8) v |= uint32_t(b[byte + 1]) << (8 - sh);
        const float q = float(v & mask);
        y[j] = p->form == QxForm::Affine ? std::fma(q, d, m) : (q - z) * d;  // as compress/quant.h grid_value
      }
    }
    return;
  }
  if (auto p = nmqx_params(t)) {
    const QxParams& qp = p->q;
    const size_t bs = nmqx_block_bytes(*p), mb = nmqx_mask_bytes(*p);
    const int K = nmqx_kept(*p);
    for (int64_t i = 0; i < nb; ++i) {
      const uint8_t* blk = src + size_t(i) * bs;
      const QxHead h = read_qx_head(qp, blk);
      const float d = h.d, z = h.z, m = h.m;
      const uint8_t* b = h.after;
      const uint8_t* lev = b + mb;
      float* y = dst + i * qp.group;
      int k = 0;
      for (int j = 0; j < qp.group; ++j) {
        if (!((b[j >> 3] >> (j & 7)) & 1u) || k >= K) {  // a corrupt mask never reads past the block
          y[j] = 0.0f;
          continue;
        }
        const float q = float(get_level(lev, uint64_t(k++) * qp.bits, qp.bits));
        y[j] = qp.form == QxForm::Affine ? std::fma(q, d, m) : (q - z) * d;
      }
    }
    return;
  }
  if (auto p = sparse_params(t)) {
    const size_t mask_bytes = size_t(p->cols + 7) / 8, bs = mask_bytes + size_t(p->capacity) * 4;
    for (int64_t i = 0; i < nb; ++i) {
      const uint8_t* row = src + size_t(i) * bs;
      const uint8_t* vals = row + mask_bytes;
      float* y = dst + i * p->cols;
      sparse_expand(row, vals, y, 0, 0, p->cols, p->capacity);
    }
    return;
  }
  fail("cannot dequantize tensor type id {:#x}", uint32_t(t));
}

namespace {

#ifdef __AVX2__
// kExpand[m][lane]: for a mask byte m, lane l (bit l set) takes the stored value numbered popcount(m & ((1<<l)-1)).
constexpr std::array<std::array<int32_t, 8>, 256> make_expand() {
  std::array<std::array<int32_t, 8>, 256> t{};
  for (int m = 0; m < 256; ++m) {
    int k = 0;
    for (int l = 0; l < 8; ++l) t[size_t(m)][size_t(l)] = (m >> l) & 1 ? k++ : 0;
  }
  return t;
}
alignas(32) constexpr std::array<std::array<int32_t, 8>, 256> kExpand = make_expand();
#endif

// The levels of `count` values packed LSB-first at B bits each (put_levels), as floats. Eight levels fill exactly
// B bytes, read as one little-endian word (GGUF and every target here are little-endian), so the shifts are
// constants the compiler unrolls.
template <int B>
void unpack_levels(const uint8_t* b, int count, float* q) {
  constexpr uint64_t mask = (1u << B) - 1;
  int j = 0;
#ifdef __AVX2__
  // Level k of eight starts at bit k*B: in byte (k*B)/8, at shift (k*B)%8, and spans at most two bytes. A byte
  // shuffle puts each level's two bytes in its 32-bit lane, a variable shift and a mask isolate it.
  constexpr auto idx = [](int k, int hi) { const int o = k * B / 8 + hi; return char(o < 8 ? o : -1); };
  const __m256i shuf = _mm256_setr_epi8(idx(0, 0), idx(0, 1), -1, -1, idx(1, 0), idx(1, 1), -1, -1, idx(2, 0),
                                        idx(2, 1), -1, -1, idx(3, 0), idx(3, 1), -1, -1, idx(4, 0), idx(4, 1), -1,
                                        -1, idx(5, 0), idx(5, 1), -1, -1, idx(6, 0), idx(6, 1), -1, -1, idx(7, 0),
                                        idx(7, 1), -1, -1);
  const __m256i shifts = _mm256_setr_epi32(0, B % 8, 2 * B % 8, 3 * B % 8, 4 * B % 8, 5 * B % 8, 6 * B % 8, 7 * B % 8);
  const __m256i m = _mm256_set1_epi32(int(mask));
  // Eight bytes are read at once wherever the levels have eight (a B-byte copy into a word, B other than 4 or 8,
  // stalls store forwarding); the bytes past the B are shuffled away or masked.
  const size_t nbytes = (size_t(count) * B + 7) / 8;
  for (; j + 8 <= count; j += 8) {
    const size_t at = size_t(j / 8) * B;
    uint64_t u = 0;
    if (at + 8 <= nbytes) {
      std::memcpy(&u, b + at, 8);
    } else if (nbytes >= 8) {  // the last eight bytes of the levels, shifted down to `at` (at + B <= nbytes)
      std::memcpy(&u, b + nbytes - 8, 8);
      u >>= 8 * (at + 8 - nbytes);
    } else {
      std::memcpy(&u, b + at, B);
    }
    __m256i w = _mm256_broadcastsi128_si256(_mm_cvtsi64_si128(static_cast<long long>(u)));
    w = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(w, shuf), shifts), m);
    _mm256_storeu_ps(q + j, _mm256_cvtepi32_ps(w));
  }
#endif
  for (; j + 8 <= count; j += 8) {
    uint64_t u = 0;
    std::memcpy(&u, b + size_t(j / 8) * B, B);
    for (int k = 0; k < 8; ++k) q[j + k] = float((u >> (k * B)) & mask);
  }
  for (uint64_t pos = uint64_t(j) * B; j < count; ++j, pos += B) q[j] = float(get_level(b, pos, B));
}

void unpack_levels(int bits, const uint8_t* b, int count, float* q) {
  switch (bits) {
    case 2: return unpack_levels<2>(b, count, q);
    case 3: return unpack_levels<3>(b, count, q);
    case 4: return unpack_levels<4>(b, count, q);
    case 5: return unpack_levels<5>(b, count, q);
    case 6: return unpack_levels<6>(b, count, q);
    case 7: return unpack_levels<7>(b, count, q);
    case 8: return unpack_levels<8>(b, count, q);
    default: fail("ctrust_qx: bits must be 2..8, got {}", bits);
  }
}

// Levels q[0..n) to values in place, as compress/quant.h grid_value: q * d + m (one fused multiply-add) for the
// affine form, (q - z) * d otherwise. The form's branch is outside the loops so that they vectorize.
void levels_to_values(QxForm form, float* y, int n, const QxHead& h) {
  const float d = h.d, z = h.z, m = h.m;
  if (form == QxForm::Affine) {
    for (int j = 0; j < n; ++j) y[j] = std::fma(y[j], d, m);
  } else {
    for (int j = 0; j < n; ++j) y[j] = (y[j] - z) * d;
  }
}

}  // namespace

// The kernel: each block's levels unpacked with constant shifts, then scaled in a separate vectorizable loop; the
// values are bit for bit those of ctrust_dequantize_blocks_ref (test CompressPacked.FastDequantizeEqualsReference).
void ctrust_dequantize_blocks(GgmlType t, const uint8_t* src, float* dst, int64_t nb) {
  if (auto p = qx_params(t)) {
    const size_t bs = qx_block_bytes(*p);
    for (int64_t i = 0; i < nb; ++i) {
      const QxHead h = read_qx_head(*p, src + size_t(i) * bs);
      float* y = dst + i * p->group;
      unpack_levels(p->bits, h.after, p->group, y);
      levels_to_values(p->form, y, p->group, h);
    }
    return;
  }
  if (auto p = nmqx_params(t)) {
    const QxParams& qp = p->q;
    const size_t bs = nmqx_block_bytes(*p), mb = nmqx_mask_bytes(*p);
    const int K = nmqx_kept(*p);
    thread_local std::vector<float> kept;
    kept.resize(size_t(K) + 1);
    for (int64_t i = 0; i < nb; ++i) {
      const QxHead h = read_qx_head(qp, src + size_t(i) * bs);
      const uint8_t* b = h.after;  // the mask, then the kept values' levels
      unpack_levels(qp.bits, b + mb, K, kept.data());
      levels_to_values(qp.form, kept.data(), K, h);
      float* y = dst + i * qp.group;
      int k = 0;
      for (int j = 0; j < qp.group; ++j) {
        const bool set = (b[j >> 3] >> (j & 7)) & 1u;
        y[j] = set && k < K ? kept[size_t(k++)] : 0.0f;  // a corrupt mask never reads past the block
      }
    }
    return;
  }
  if (auto p = sparse_params(t)) {
    const size_t mask_bytes = size_t(p->cols + 7) / 8, bs = mask_bytes + size_t(p->capacity) * 4;
    for (int64_t i = 0; i < nb; ++i) {
      const uint8_t* row = src + size_t(i) * bs;
      const uint8_t* vals = row + mask_bytes;
      float* y = dst + i * p->cols;
      int k = 0, j = 0;
#ifdef __AVX2__
      // Eight columns per mask byte: the next popcount(byte) stored values, moved to the set bits' lanes by one
      // permutation, zero elsewhere. Only while eight values can be read within the row's capacity.
      for (; j + 8 <= p->cols && k + 8 <= p->capacity; j += 8) {
        const unsigned bits = row[j >> 3];
        const __m256 v = _mm256_loadu_ps(reinterpret_cast<const float*>(vals + size_t(k) * 4));
        const __m256i perm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kExpand[bits].data()));
        const __m256i keep = _mm256_cmpgt_epi32(
            _mm256_and_si256(_mm256_set1_epi32(int(bits)), _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)),
            _mm256_setzero_si256());
        _mm256_storeu_ps(y + j, _mm256_and_ps(_mm256_permutevar8x32_ps(v, perm), _mm256_castsi256_ps(keep)));
        k += std::popcount(bits);
      }
#endif
      sparse_expand(row, vals, y, j, k, p->cols, p->capacity);
    }
    return;
  }
  fail("cannot dequantize tensor type id {:#x}", uint32_t(t));
}

void check_ctrust_tensor(GgmlType t, const uint8_t* data, size_t nbytes, const std::string& what) {
  if (auto q = nmqx_params(t)) {
    const size_t bs = nmqx_block_bytes(*q), head = qx_head_bytes(q->q);
    for (size_t r = 0; r + bs <= nbytes; r += bs) {
      const uint8_t* mask = data + r + head;
      for (int g = 0; g < q->q.group; g += q->m) {
        int c = 0;
        for (int j = g; j < g + q->m; ++j) c += (mask[j >> 3] >> (j & 7)) & 1;
        if (c != q->n)
          fail("{}: N:M block {} keeps {} of the {} columns from {}, the type {}: corrupt file", what, r / bs, c,
               q->m, g, q->n);
      }
    }
    return;
  }
  auto p = sparse_params(t);
  if (!p) return;
  const size_t mask_bytes = size_t(p->cols + 7) / 8, bs = mask_bytes + size_t(p->capacity) * 4;
  for (size_t r = 0; r + bs <= nbytes; r += bs) {
    int64_t c = 0;
    for (size_t j = 0; j < mask_bytes; ++j) c += std::popcount(data[r + j]);
    if (c > p->capacity)
      fail("{}: sparse row {} marks {} stored values but the type holds at most {}: corrupt file", what, r / bs, c,
           p->capacity);
  }
}

void check_permutation(const std::vector<int32_t>& perm, int64_t cols, const std::string& what) {
  if (int64_t(perm.size()) != cols) fail("{}: column permutation has {} entries, the matrix {} columns", what, perm.size(), cols);
  std::vector<uint8_t> seen(size_t(cols), 0);
  for (int32_t k : perm) {
    if (k < 0 || k >= cols || seen[size_t(k)]) fail("{}: column permutation is not a permutation of 0..{}", what, cols - 1);
    seen[size_t(k)] = 1;
  }
}

void unpermute_columns(const float* src, float* dst, int64_t rows, int64_t cols, const std::vector<int32_t>& perm) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) dst[r * cols + perm[size_t(k)]] = src[r * cols + k];
}

}  // namespace ctrust
