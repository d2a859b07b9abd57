// K-quant super-block fitting, levels, values and encoding: a port of ggml-quants.c (llama.cpp 0c1e570,
// quantize_row_q{2..6}_K_ref and quantize_row_q{2..6}_K_impl with their helpers make_qx_quants, make_q3_quants,
// make_qkx2_quants, make_qkx3_quants, make_qp_quants). The arithmetic follows ggml line by line so that
// ctrust's RTN into a K type writes the bytes llama-quantize writes (test CompressKQuant.*MatchesLlamaQuantize).
#include "compress/kquant.h"

// ggml-quants.c is part of ggml-base, compiled without -march (no FMA instructions), so nothing is contracted
// there; ctrust is compiled for x86-64-v3 where g++ contracts a * b + c into FMA by default for C++. Contraction
// off makes the fits round as ggml's (measured: with g++'s default, 86 of 103,680 Q4_K blocks of SmolLM2's
// ffn_down got a sub-block scale or min code one off from llama-quantize's).
#pragma GCC optimize("fp-contract=off")

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "compress/quant.h"

namespace ctrust {

namespace {

constexpr float kGroupMaxEps = 1e-15f;

inline int nearest_int(float fval) {
  // ggml's magic-number rounding (valid for |fval| <= 4194303; larger values are clamped first, which only
  // matters for GPTQ's error-compensated columns far outside the grid: they clamp to the end level anyway).
  fval = std::min(4194303.0f, std::max(-4194303.0f, fval));
  float val = fval + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

inline float h2f(uint16_t h) { return f16_to_f32(h); }
inline uint16_t f2h(float f) { return f32_to_f16(f); }

// The value of largest magnitude in x[0..n) (the first one on ties), with its sign, as ggml's make_q*_quants find it.
inline float signed_absmax(int n, const float* x) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  return max;
}

float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  const float max = signed_absmax(n, x);  // the value of largest magnitude, with its sign
  if (std::fabs(max) < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, l)));
    }
    return 1 / iscale;
  }
  bool return_early = false;
  if (rmse_type < 0) {
    rmse_type = -rmse_type;
    return_early = true;
  }
  auto wt = [&](int i) {
    return qw ? qw[i]
              : rmse_type == 1 ? x[i] * x[i]
              : rmse_type == 2 ? 1.0f
              : rmse_type == 3 ? std::fabs(x[i])
                               : std::sqrt(std::fabs(x[i]));
  };
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = int8_t(l + nmax);
    float w = wt(i);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      float w = wt(i);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse) {
  const float max = signed_absmax(n, x);  // the value of largest magnitude, with its sign
  if (std::fabs(max) < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  if (do_rmse) {
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      L[i] = int8_t(l);
      float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
      int n_changed = 0;
      for (int i = 0; i < n; ++i) {
        float w = x[i] * x[i];
        float slx = sumlx - w * x[i] * L[i];
        if (slx > 0) {
          float sl2 = suml2 - w * L[i] * L[i];
          int new_l = nearest_int(x[i] * sl2 / slx);
          new_l = std::max(-nmax, std::min(nmax - 1, new_l));
          if (new_l != L[i]) {
            slx += w * x[i] * new_l;
            sl2 += w * new_l * new_l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
              L[i] = int8_t(new_l);
              sumlx = slx;
              suml2 = sl2;
              ++n_changed;
            }
          }
        }
      }
      if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
  }
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = int8_t(l + nmax);
  }
  return 1 / iscale;
}

// make_qkx2_quants (weights required) and make_qkx3_quants (weights may be null: x^2) differ only there and in
// the degenerate test (max == min vs max <= min, equivalent here since min <= 0 <= ... see ggml).
float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                      uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad, bool v3) {
  auto wt = [&](int i) { return weights ? weights[i] : x[i] * x[i]; };
  float min = x[0];
  float max = x[0];
  float sum_w = wt(0);
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    float w = wt(i);
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (v3 ? max <= min : max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * (x[i] - min));
    L[i] = uint8_t(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    float w = wt(i);
    best_error += w * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = uint8_t(l);
      float w = wt(i);
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        float w = wt(i);
        cur_error += w * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = uint8_t(nearest_int(iscale * x[i]));
  float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    float diff = x[i] - scale * L[i];
    float w = quant_weights[i];
    best_mse += w * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    float iscale_is = (0.1f * is + nmax) / max;
    float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale_is * x[i]);
      l = std::min(nmax, l);
      float diff = x[i] - scale_is * l;
      float w = quant_weights[i];
      mse += w * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::min(nmax, l);
    L[i] = uint8_t(l);
    float w = quant_weights[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = quant_weights[i];
      float slx = sumlx - w * x[i] * L[i];
      float sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = std::min(nmax, new_l);
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = uint8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- per-type fits (the parameter part of quantize_row_*; the requantization is kquant_level) ----

void fit_q2_k(const float* x, const float* qw, KBlock& b) {
  uint8_t Laux[16];
  float mins[16], scales[16], weight[16];
  if (!qw) {
    const float q4scale = 15.f;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weight[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx_quants(16, 3, x + 16 * j, weight, b.lfit + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15,
                                  true, false);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      float iscale = q4scale / max_scale;
      for (int j = 0; j < 16; ++j) b.sc[j] = uint8_t(nearest_int(iscale * scales[j]));
      b.d = f2h(max_scale / q4scale);
    } else {
      for (int j = 0; j < 16; ++j) b.sc[j] = 0;
      b.d = f2h(0.f);
    }
    if (max_min > 0) {
      float iscale = q4scale / max_min;
      for (int j = 0; j < 16; ++j) b.mn[j] = uint8_t(nearest_int(iscale * mins[j]));
      b.dmin = f2h(max_min / q4scale);
    } else {
      for (int j = 0; j < 16; ++j) b.mn[j] = 0;
      b.dmin = f2h(0.f);
    }
    // ggml ORs the min code into the high nibble (a scale code of 16 would spill; make both 4-bit as stored)
    for (int j = 0; j < 16; ++j) {
      uint8_t byte = uint8_t(b.sc[j] | (b.mn[j] << 4));
      b.sc[j] = byte & 0xF;
      b.mn[j] = byte >> 4;
    }
    return;
  }
  float sw[16] = {};
  float sumx2 = 0;
  for (int j = 0; j < kQK_K; ++j) sumx2 += x[j] * x[j];
  float sigma2 = sumx2 / kQK_K;
  for (int j = 0; j < 16; ++j) {
    const float* w = qw + 16 * j;
    for (int l = 0; l < 16; ++l) weight[l] = w[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    for (int l = 0; l < 16; ++l) sw[j] += weight[l];
    scales[j] = make_qkx_quants(16, 3, x + 16 * j, weight, b.lfit + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36,
                                false, true);
  }
  uint8_t Ls[16], Lm[16];
  float dm = make_qp_quants(16, 15, scales, Ls, sw);
  float mm = make_qp_quants(16, 15, mins, Lm, sw);
  b.d = f2h(dm);
  b.dmin = f2h(mm);
  for (int j = 0; j < 16; ++j) {
    uint8_t byte = uint8_t(Ls[j] | (Lm[j] << 4));
    b.sc[j] = byte & 0xF;
    b.mn[j] = byte >> 4;
  }
}

// Q3_K's 12-byte scale packing and its decoding (the stored 6-bit value, 0..63).
void pack_q3_scales(const int* l6, uint8_t* s) {
  std::memset(s, 0, 12);
  for (int j = 0; j < 16; ++j) {
    int l = l6[j];
    if (j < 8) {
      s[j] = uint8_t(l & 0xF);
    } else {
      s[j - 8] |= uint8_t((l & 0xF) << 4);
    }
    l >>= 4;
    s[j % 4 + 8] |= uint8_t(l << (2 * (j / 4)));
  }
}

void fit_q3_k(const float* x, const float* qw, KBlock& b) {
  int8_t L[kQK_K];
  float scales[16];
  int l6[16] = {};
  if (!qw) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
      float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    if (max_scale) {
      float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) {
        int8_t l = int8_t(nearest_int(iscale * scales[j]));
        l = int8_t(std::max<int>(-32, std::min<int>(31, l)) + 32);
        l6[j] = l;
      }
      b.d = f2h(1 / iscale);
    } else {
      b.d = f2h(0.f);
    }
  } else {
    float weight[16], sw[16];
    float sumx2 = 0;
    for (int j = 0; j < kQK_K; ++j) sumx2 += x[j] * x[j];
    float sigma2 = 2 * sumx2 / kQK_K;
    for (int j = 0; j < 16; ++j) {
      const float* w = qw + 16 * j;
      for (int l = 0; l < 16; ++l) weight[l] = w[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    int8_t Ls[16];
    float d_block = make_qx_quants(16, 32, scales, Ls, 1, sw);
    for (int j = 0; j < 16; ++j) l6[j] = Ls[j];
    b.d = f2h(d_block);
  }
  // The stored 6-bit values (what the 12-byte packing keeps).
  uint8_t s[12];
  pack_q3_scales(l6, s);
  for (int j = 0; j < 16; ++j) {
    int sc = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    b.sc[j] = uint8_t(sc | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4));
  }
  for (int i = 0; i < kQK_K; ++i) b.lfit[i] = uint8_t(L[i]);
}

void pack_k4_scales(const uint8_t* ls, const uint8_t* lm, uint8_t* s) {
  std::memset(s, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] = ls[j];
      s[j + 4] = lm[j];
    } else {
      s[j + 4] = uint8_t((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      s[j - 4] |= uint8_t((ls[j] >> 4) << 6);
      s[j - 0] |= uint8_t((lm[j] >> 4) << 6);
    }
  }
}

void fit_q45_k(const float* x, const float* qw, KBlock& b, int nmax) {
  const bool q4 = nmax == 15;
  uint8_t Laux[32];
  float weights[32], mins[8], scales[8];
  uint8_t ls[8], lm[8];
  if (!qw) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = make_qkx_quants(32, nmax, x + 32 * j, weights, b.lfit + 32 * j, &mins[j], Laux,
                                  q4 ? -1.f : -0.5f, 0.1f, q4 ? 20 : 15, false, false);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
      uint8_t a = uint8_t(nearest_int(inv_scale * scales[j]));
      uint8_t m = uint8_t(nearest_int(inv_min * mins[j]));
      ls[j] = std::min<uint8_t>(63, a);
      lm[j] = std::min<uint8_t>(63, m);
    }
    b.d = f2h(max_scale / 63.f);
    b.dmin = f2h(max_min / 63.f);
  } else {
    float sw[8];
    float sum_x2 = 0;
    for (int l = 0; l < kQK_K; ++l) sum_x2 += x[l] * x[l];
    float sigma2 = 2 * sum_x2 / kQK_K;
    for (int j = 0; j < 8; ++j) {
      const float* w = qw + 32 * j;
      for (int l = 0; l < 32; ++l) weights[l] = w[l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 32; ++l) sumw += weights[l];
      sw[j] = sumw;
      scales[j] = make_qkx_quants(32, nmax, x + 32 * j, weights, b.lfit + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36,
                                  false, true);
    }
    uint8_t Ls[8], Lm[8];
    float d_block = make_qp_quants(8, 63, scales, Ls, sw);
    float m_block = make_qp_quants(8, 63, mins, Lm, sw);
    for (int j = 0; j < 8; ++j) {
      ls[j] = std::min<uint8_t>(63, Ls[j]);
      lm[j] = std::min<uint8_t>(63, Lm[j]);
    }
    b.d = f2h(d_block);
    b.dmin = f2h(m_block);
  }
  // What the 12-byte packing keeps (6 bits each).
  for (int j = 0; j < 8; ++j) {
    b.sc[j] = ls[j] & 63;
    b.mn[j] = lm[j] & 63;
  }
}

void fit_q6_k(const float* x, const float* qw, KBlock& b) {
  int8_t L[kQK_K];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw ? qw + 16 * ib : nullptr);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  if (max_abs_scale < kGroupMaxEps) {  // ggml zeroes the whole block
    b.d = f2h(0.f);
    std::memset(b.sc, 0, sizeof b.sc);
    std::memset(b.lfit, 0, sizeof b.lfit);
    return;
  }
  float iscale = -128.f / max_scale;
  b.d = f2h(1 / iscale);
  for (int ib = 0; ib < 16; ++ib) b.sc[ib] = uint8_t(int8_t(std::min(127, nearest_int(iscale * scales[ib]))));
  for (int i = 0; i < kQK_K; ++i) b.lfit[i] = uint8_t(L[i]);
}

// Sub-block of position j and the ggml decode of its scale/min.
inline int sub_of(GgmlType t, int j) { return (t == GgmlType::Q4_K || t == GgmlType::Q5_K) ? j / 32 : j / 16; }

}  // namespace

float ggml_legacy_scale(GgmlType t, const float* x, const float* qw, float sigma2, float* min_out) {
  if (t == GgmlType::Q4_1 || t == GgmlType::Q5_1) {
    if (!min_out) fail("ggml_legacy_scale: {} needs the minimum's output", ggml_type_name(t));
    const int nmax = t == GgmlType::Q4_1 ? 15 : 31;
    if (!qw) {  // quantize_row_q{4,5}_1_ref
      float mn = x[0], mx = x[0];
      for (int j = 1; j < 32; ++j) {
        mn = std::min(mn, x[j]);
        mx = std::max(mx, x[j]);
      }
      *min_out = mn;
      return (mx - mn) / float(nmax);
    }
    float weight[32], the_min = 0.0f;
    uint8_t L[32], Laux[32];
    for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
    const float d = make_qkx_quants(32, nmax, x, weight, L, &the_min, Laux, -0.9f, 0.05f, 36, false, true);
    *min_out = -the_min;
    return d;
  }
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  switch (t) {
    case GgmlType::Q8_0: return amax / 127.0f;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0: {
      const int nmax = t == GgmlType::Q4_0 ? 8 : 16;
      if (!qw) return max / float(-nmax);
      float weight[32];
      int8_t L[32];
      for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
      return make_qx_quants(32, nmax, x, L, 1, weight);
    }
    default: fail("ggml_legacy_scale: {} is not Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0", ggml_type_name(t));
  }
}

bool is_kquant(GgmlType t) {
  return t == GgmlType::Q2_K || t == GgmlType::Q3_K || t == GgmlType::Q4_K || t == GgmlType::Q5_K ||
         t == GgmlType::Q6_K;
}

KBlock kquant_fit(GgmlType t, const float* x, const float* qw) {
  KBlock b;
  b.type = t;
  switch (t) {
    case GgmlType::Q2_K: fit_q2_k(x, qw, b); break;
    case GgmlType::Q3_K: fit_q3_k(x, qw, b); break;
    case GgmlType::Q4_K: fit_q45_k(x, qw, b, 15); break;
    case GgmlType::Q5_K: fit_q45_k(x, qw, b, 31); break;
    case GgmlType::Q6_K: fit_q6_k(x, qw, b); break;
    default: fail("kquant: {} is not a K-quant type", ggml_type_name(t));
  }
  return b;
}

int kquant_level(const KBlock& b, int j, float x) {
  const int s = sub_of(b.type, j);
  switch (b.type) {
    case GgmlType::Q2_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const float d = h2f(b.d) * b.sc[s];
      if (!d) return b.lfit[j];
      const float dm = h2f(b.dmin) * b.mn[s];
      const int nmax = b.type == GgmlType::Q2_K ? 3 : b.type == GgmlType::Q4_K ? 15 : 31;
      int l = nearest_int((x + dm) / d);
      return std::max(0, std::min(nmax, l));
    }
    case GgmlType::Q3_K: {
      const float d = h2f(b.d) * int8_t(int(b.sc[s]) - 32);
      if (!d) return b.lfit[j];
      int l = nearest_int(x / d);
      return std::max(-4, std::min(3, l)) + 4;
    }
    case GgmlType::Q6_K: {
      const float d = h2f(b.d) * int8_t(b.sc[s]);
      if (!d) return b.lfit[j];
      int l = nearest_int(x / d);
      return std::max(-32, std::min(31, l)) + 32;
    }
    default: fail("kquant: {} is not a K-quant type", ggml_type_name(b.type));
  }
}

float kquant_value(const KBlock& b, int j, int L) {
  // The arithmetic of ggml's dequantize_row_* (io/quant.cpp): two roundings (no FMA) for d * q - m.
  const int s = sub_of(b.type, j);
  switch (b.type) {
    case GgmlType::Q2_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      volatile float dl = h2f(b.d) * b.sc[s];
      volatile float ml = h2f(b.dmin) * b.mn[s];
      volatile float p = dl * float(L);
      return p - ml;
    }
    case GgmlType::Q3_K: {
      volatile float dl = h2f(b.d) * float(int8_t(int(b.sc[s]) - 32));
      return dl * float(L - 4);
    }
    case GgmlType::Q6_K: {
      volatile float dl = h2f(b.d) * float(int8_t(b.sc[s]));
      return dl * float(int8_t(L - 32));
    }
    default: fail("kquant: {} is not a K-quant type", ggml_type_name(b.type));
  }
}

void kquant_encode(const KBlock& b, const uint8_t* L, uint8_t* y) {
  auto wr16 = [](uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); };
  switch (b.type) {
    case GgmlType::Q2_K: {  // scales[16], qs[64], d, dmin
      for (int j = 0; j < 16; ++j) y[j] = uint8_t(b.sc[j] | (b.mn[j] << 4));
      uint8_t* qs = y + 16;
      for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
          qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
      wr16(y + 80, b.d);
      wr16(y + 82, b.dmin);
      break;
    }
    case GgmlType::Q3_K: {  // hmask[32], qs[64], scales[12], d
      uint8_t* hmask = y;
      uint8_t* qs = y + 32;
      std::memset(hmask, 0, 32);
      uint8_t Lc[kQK_K];
      std::memcpy(Lc, L, kQK_K);
      int m = 0;
      uint8_t hm = 1;
      for (int j = 0; j < kQK_K; ++j) {
        if (Lc[j] > 3) {
          hmask[m] |= hm;
          Lc[j] = uint8_t(Lc[j] - 4);
        }
        if (++m == kQK_K / 8) {
          m = 0;
          hm = uint8_t(hm << 1);
        }
      }
      for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
          qs[j / 4 + l] = uint8_t(Lc[j + l] | (Lc[j + l + 32] << 2) | (Lc[j + l + 64] << 4) | (Lc[j + l + 96] << 6));
      int l6[16];
      for (int j = 0; j < 16; ++j) l6[j] = b.sc[j];
      pack_q3_scales(l6, y + 96);
      wr16(y + 108, b.d);
      break;
    }
    case GgmlType::Q4_K: {  // d, dmin, scales[12], qs[128]
      wr16(y, b.d);
      wr16(y + 2, b.dmin);
      pack_k4_scales(b.sc, b.mn, y + 4);
      uint8_t* q = y + 16;
      for (int j = 0; j < kQK_K; j += 64) {
        for (int l = 0; l < 32; ++l) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
        q += 32;
      }
      break;
    }
    case GgmlType::Q5_K: {  // d, dmin, scales[12], qh[32], qs[128]
      wr16(y, b.d);
      wr16(y + 2, b.dmin);
      pack_k4_scales(b.sc, b.mn, y + 4);
      uint8_t* qh = y + 16;
      uint8_t* ql = y + 48;
      std::memset(qh, 0, 32);
      uint8_t m1 = 1, m2 = 2;
      for (int n = 0; n < kQK_K; n += 64) {
        for (int j = 0; j < 32; ++j) {
          int l1 = L[n + j];
          if (l1 > 15) {
            l1 -= 16;
            qh[j] |= m1;
          }
          int l2 = L[n + j + 32];
          if (l2 > 15) {
            l2 -= 16;
            qh[j] |= m2;
          }
          ql[j] = uint8_t(l1 | (l2 << 4));
        }
        m1 = uint8_t(m1 << 2);
        m2 = uint8_t(m2 << 2);
        ql += 32;
      }
      break;
    }
    case GgmlType::Q6_K: {  // ql[128], qh[64], scales[16], d
      uint8_t* ql = y;
      uint8_t* qh = y + 128;
      for (int j = 0; j < kQK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
          const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF,
                        q4 = L[j + l + 96] & 0xF;
          ql[l + 0] = uint8_t(q1 | (q3 << 4));
          ql[l + 32] = uint8_t(q2 | (q4 << 4));
          qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                          ((L[j + l + 96] >> 4) << 6));
        }
        ql += 64;
        qh += 32;
      }
      std::memcpy(y + 192, b.sc, 16);
      wr16(y + 208, b.d);
      break;
    }
    default: fail("kquant: {} is not a K-quant type", ggml_type_name(b.type));
  }
}

void kquant_quantize_rows(GgmlType t, const float* src, uint8_t* dst, int64_t rows, int64_t n_per_row,
                          const float* imatrix) {
  if (!is_kquant(t)) fail("kquant: {} is not a K-quant type", ggml_type_name(t));
  if (n_per_row % kQK_K != 0) fail("kquant: row length {} is not a multiple of {}", n_per_row, kQK_K);
  const size_t bs = ggml_type_info(uint32_t(t))->type_size;
  const int64_t nb = n_per_row / kQK_K;
#pragma omp parallel for schedule(static) if (rows * n_per_row >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < nb; ++i) {
      const float* x = src + r * n_per_row + i * kQK_K;
      KBlock b = kquant_fit(t, x, imatrix ? imatrix + i * kQK_K : nullptr);
      uint8_t L[kQK_K];
      for (int j = 0; j < kQK_K; ++j) L[j] = uint8_t(kquant_level(b, j, x[j]));
      kquant_encode(b, L, dst + (size_t(r) * nb + i) * bs);
    }
}

}  // namespace ctrust
