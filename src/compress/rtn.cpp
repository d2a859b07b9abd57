// RTN quantization, the shared grid, fp16 helpers and GGUF packing of quantized matrices.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <cblas.h>

#include "base/error.h"
#include "compress/blas_serial.h"
#include "compress/kquant.h"
#include "compress/quant.h"

namespace ctrust {

int quant_maxq(int bits) { return (1 << bits) - 1; }

void check_quant_spec(const QuantSpec& s, int out, int in, const char* what) {
  if (s.ktype != GgmlType::F32) {
    if (!is_kquant(s.ktype)) fail("{}: {} is not a K-quant type", what, ggml_type_name(s.ktype));
    if (out <= 0 || in <= 0) fail("{}: empty weight matrix ({} x {})", what, out, in);
    if (in % kQK_K != 0)
      fail("{}: {} needs the input dimension to be a multiple of {}, got {}", what, ggml_type_name(s.ktype), kQK_K,
           in);
    return;
  }
  if (s.bits < 2 || s.bits > 8) fail("{}: quantization bits must be 2..8, got {}", what, s.bits);
  if (s.group < 0) fail("{}: group size must be >= 0 (0 = per output channel), got {}", what, s.group);
  if (out <= 0 || in <= 0) fail("{}: empty weight matrix ({} x {})", what, out, in);
  if (s.group > 0 && in % s.group != 0)
    fail("{}: group size {} does not divide the input dimension {}", what, s.group, in);
}

QuantGrid fit_grid(const float* x, int64_t n, const QuantSpec& s) {
  const float maxq = float(quant_maxq(s.bits));
  if (s.minmax && !s.sym && n > 0) {
    // ggml's Q4_1 grid: levels min + q * (max - min) / maxq. A group already on such a grid (a dequantized
    // Q4_1 block with fp16 d and m) is reproduced exactly.
    float xmin = x[0], xmax = x[0];
    for (int64_t i = 1; i < n; ++i) {
      xmin = std::min(xmin, x[i]);
      xmax = std::max(xmax, x[i]);
    }
    QuantGrid g;
    g.affine = true;
    g.scale = (xmax - xmin) / maxq;
    g.min = xmin;
    if (s.fp16_scales) {
      g.scale = round_f16(g.scale);
      g.min = round_f16(xmin);
    }
    if (!(g.scale > 0.0f)) g.scale = s.fp16_scales ? f16_to_f32(1) : 1.0f;  // constant group: every q is 0
    return g;
  }
  float xmin = 0.0f, xmax = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  if (s.sym) {
    xmax = std::max(std::fabs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  QuantGrid g;
  g.scale = (xmax - xmin) / maxq;
  if (s.fp16_scales) {
    g.scale = round_f16(g.scale);
    if (g.scale == 0.0f) g.scale = f16_to_f32(1);  // smallest subnormal: the group is ~0 anyway
  }
  if (s.sym) {
    g.zero = (maxq + 1.0f) / 2.0f;
  } else {
    g.zero = std::nearbyint(-xmin / g.scale);
    if (s.fp16_scales && !s.zero_point) {
      g.affine = true;
      g.min = round_f16(-g.zero * g.scale);
    }
  }
  return g;
}

QuantGrid fit_grid_for(const float* x, int64_t n, const QuantSpec& s, const float* qw, float sigma2) {
  if (s.ggml_fit && !s.sym && n == 32 && (s.bits == 4 || s.bits == 5)) {  // Q4_1 / Q5_1: q * d + m
    const GgmlType t = s.bits == 4 ? GgmlType::Q4_1 : GgmlType::Q5_1;
    float m = 0.0f;
    const float d = ggml_legacy_scale(t, x, qw, sigma2, &m);
    QuantGrid g;
    g.affine = true;
    g.scale = round_f16(d);
    g.min = round_f16(m);
    if (!(g.scale > 0.0f) || !std::isfinite(g.scale)) g.scale = f16_to_f32(1);  // constant block: every q is 0
    return g;
  }
  if (!s.ggml_fit || !s.sym || n != 32 || (s.bits != 4 && s.bits != 5 && s.bits != 8)) return fit_grid(x, n, s);
  const GgmlType t = s.bits == 4 ? GgmlType::Q4_0 : s.bits == 5 ? GgmlType::Q5_0 : GgmlType::Q8_0;
  QuantGrid g;
  g.scale = round_f16(ggml_legacy_scale(t, x, qw, sigma2));
  if (g.scale == 0.0f || !std::isfinite(g.scale)) g.scale = f16_to_f32(1);  // all-zero group: every value 0
  g.zero = float(1 << (s.bits - 1));
  return g;
}

float quantize_value(const QuantGrid& g, float x, int bits) {
  return grid_value(g, grid_q(g, x, float(quant_maxq(bits))));
}

QuantResult rtn_quantize(const float* W, int out, int in, const QuantSpec& s) {
  check_quant_spec(s, out, in, "rtn");
  QuantResult r;
  r.out = out;
  r.in = in;
  r.spec = s;
  if (s.ktype != GgmlType::F32) {  // ggml's own quantizer for the K type (what llama-quantize does)
    r.group = kQK_K;
    r.n_groups = in / kQK_K;
    r.kbytes.resize(ggml_nbytes(s.ktype, int64_t(out) * in));
    kquant_quantize_rows(s.ktype, W, r.kbytes.data(), out, in, s.kweights);
    r.w.resize(size_t(out) * in);
    dequantize(s.ktype, r.kbytes.data(), r.w.data(), int64_t(out) * in);
    return r;
  }
  r.group = s.group > 0 ? s.group : in;
  r.n_groups = in / r.group;
  r.w.resize(size_t(out) * in);
  r.grids.resize(size_t(out) * r.n_groups);
  const float maxq = float(quant_maxq(s.bits));
#pragma omp parallel for schedule(static) if (size_t(out) * in >= (1u << 16))
  for (int o = 0; o < out; ++o) {
    float sigma2 = 0.0f;
    if (s.ggml_fit) {
      for (int j = 0; j < in; ++j) sigma2 += W[size_t(o) * in + j] * W[size_t(o) * in + j];
      sigma2 /= float(in);
    }
    for (int g = 0; g < r.n_groups; ++g) {
      const float* src = W + size_t(o) * in + size_t(g) * r.group;
      float* dst = r.w.data() + size_t(o) * in + size_t(g) * r.group;
      QuantGrid grid = fit_grid_for(src, r.group, s, s.kweights ? s.kweights + size_t(g) * r.group : nullptr, sigma2);
      r.grids[size_t(o) * r.n_groups + g] = grid;
      for (int j = 0; j < r.group; ++j) dst[j] = grid_value(grid, grid_q(grid, src[j], maxq));
    }
  }
  return r;
}

QuantResult quantize_rows_absmax_int8(const float* W, int out, int in, Int8Round round) {
  if (out <= 0 || in <= 0) fail("int8: empty weight matrix ({} x {})", out, in);
  QuantResult r;
  r.out = out;
  r.in = in;
  r.spec = QuantSpec{8, true, 0, false};
  r.group = in;
  r.n_groups = 1;
  r.w.resize(size_t(out) * in);
  r.grids.resize(out);
#pragma omp parallel for schedule(static) if (size_t(out) * in >= (1u << 16))
  for (int o = 0; o < out; ++o) {
    const float* src = W + size_t(o) * in;
    float amax = 0.0f;
    for (int j = 0; j < in; ++j) amax = std::max(amax, std::fabs(src[j]));
    QuantGrid g;
    g.scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    g.zero = 128.0f;  // q + 128 lies in [1, 255]
    r.grids[o] = g;
    float* dst = &r.w[size_t(o) * in];
    if (round == Int8Round::Divide) {
      for (int j = 0; j < in; ++j) dst[j] = grid_value(g, grid_q(g, src[j], 255.0f));
    } else {  // |w| <= absmax: |q| <= 127
      const float mul = amax > 0.0f ? 127.0f / amax : 0.0f;
      for (int j = 0; j < in; ++j) dst[j] = grid_value(g, __builtin_nearbyintf(src[j] * mul) + 128.0f);
    }
  }
  return r;
}

namespace {

const char* type_label(GgmlType t) { return ggml_type_name(t); }

bool has_min(GgmlType t) { return t == GgmlType::Q4_1 || t == GgmlType::Q5_1; }

// The ggml type r's grids have the shape of (without checking values), or F32.
GgmlType candidate_type(const QuantResult& r) {
  if (r.spec.ktype != GgmlType::F32) return GgmlType::F32;
  if (r.group != 32 || !r.g_idx.empty()) return GgmlType::F32;
  if (r.spec.bits == 4 && r.spec.sym) return GgmlType::Q4_0;
  if (r.spec.bits == 4 && !r.spec.sym) return GgmlType::Q4_1;
  if (r.spec.bits == 5 && r.spec.sym) return GgmlType::Q5_0;
  if (r.spec.bits == 5 && !r.spec.sym) return GgmlType::Q5_1;
  if (r.spec.bits == 8 && r.spec.sym) return GgmlType::Q8_0;
  return GgmlType::F32;
}

// Fills the integer levels of one 32-value group; false if some value is not reproduced exactly by
// ggml's dequantization formula of type t.
bool group_levels(const QuantResult& r, GgmlType t, int o, int g, int* q) {
  const QuantGrid& grid = r.grids[size_t(o) * r.n_groups + g];
  if (round_f16(grid.scale) != grid.scale) return false;
  const float* w = r.w.data() + size_t(o) * r.in + size_t(g) * 32;
  const float d = grid.scale;
  for (int j = 0; j < 32; ++j) {
    float y;
    if (has_min(t)) {
      if (!grid.affine || round_f16(grid.min) != grid.min) return false;
      q[j] = int(grid_q(grid, w[j], t == GgmlType::Q4_1 ? 15.0f : 31.0f));
      y = float(q[j]) * d + grid.min;
    } else if (t == GgmlType::Q4_0 || t == GgmlType::Q5_0) {
      const int half = t == GgmlType::Q4_0 ? 8 : 16;
      if (grid.affine || grid.zero != float(half)) return false;
      q[j] = int(grid_q(grid, w[j], float(2 * half - 1)));
      y = float(q[j] - half) * d;
    } else {
      if (grid.affine || grid.zero != 128.0f) return false;
      q[j] = int(grid_q(grid, w[j], 255.0f)) - 128;  // int8
      y = float(q[j]) * d;
    }
    if (std::memcmp(&y, &w[j], 4) != 0 && !(y == 0.0f && w[j] == 0.0f)) return false;
  }
  return true;
}

}  // namespace

GgmlType packable_type(const QuantResult& r) {
  GgmlType t = candidate_type(r);
  if (t == GgmlType::F32) return t;
  int q[32];
  for (int o = 0; o < r.out; ++o)
    for (int g = 0; g < r.n_groups; ++g)
      if (!group_levels(r, t, o, g, q)) return GgmlType::F32;
  return t;
}

std::vector<uint8_t> pack_ggml(const QuantResult& r, GgmlType t) {
  if (t == GgmlType::F32 || candidate_type(r) != t)
    fail("pack: a {}-bit {} group-{} matrix cannot be stored as {}", r.spec.bits, r.spec.sym ? "sym" : "asym",
         r.group, type_label(t));
  const size_t block_bytes = ggml_type_info(uint32_t(t))->type_size;
  std::vector<uint8_t> bytes(size_t(r.out) * r.n_groups * block_bytes);
  int q[32];
  for (int o = 0; o < r.out; ++o)
    for (int g = 0; g < r.n_groups; ++g) {
      if (!group_levels(r, t, o, g, q))
        fail("pack: row {} group {} is not exactly representable as {}", o, g, type_label(t));
      const QuantGrid& grid = r.grids[size_t(o) * r.n_groups + g];
      uint8_t* b = bytes.data() + (size_t(o) * r.n_groups + g) * block_bytes;
      uint16_t d = f32_to_f16(grid.scale);
      std::memcpy(b, &d, 2);
      b += 2;
      if (has_min(t)) {
        uint16_t m = f32_to_f16(grid.min);
        std::memcpy(b, &m, 2);
        b += 2;
      }
      if (t == GgmlType::Q5_0 || t == GgmlType::Q5_1) {  // high bits: bit j of qh is bit 4 of value j
        uint32_t qh = 0;
        for (int j = 0; j < 32; ++j) qh |= uint32_t((q[j] >> 4) & 1) << j;
        std::memcpy(b, &qh, 4);
        b += 4;
        for (int j = 0; j < 16; ++j) b[j] = uint8_t((q[j] & 15) | ((q[j + 16] & 15) << 4));
      } else if (t == GgmlType::Q8_0) {
        for (int j = 0; j < 32; ++j) b[j] = uint8_t(int8_t(q[j]));
      } else {
        for (int j = 0; j < 16; ++j) b[j] = uint8_t(q[j] | (q[j + 16] << 4));
      }
    }
  return bytes;
}

double output_error(const float* W, const float* Q, int out, int in, const float* X, int n) {
  BlasSerial serial(double(out) * in * n < kBlasSmall);
  std::vector<float> D(size_t(out) * in);
  for (size_t i = 0; i < D.size(); ++i) D[i] = W[i] - Q[i];
  std::vector<float> E(size_t(n) * out);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, X, in, D.data(), in, 0.0f, E.data(), out);
  double s = 0;
  for (float e : E) s += double(e) * e;
  return s;
}

}  // namespace ctrust
