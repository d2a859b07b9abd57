// The sequential compression driver: calibration sampling, block forward with Linear-input capture, per-method
// compression of one block's Linears, error reports, GGUF packing and inference modes.
#include "compress/driver.h"

#include "base/paths.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include <cblas.h>
#include <omp.h>

#include "base/error.h"
#include "compress/awq.h"
#include "compress/blas_serial.h"
#include "compress/gptq.h"
#include "compress/imatrix.h"
#include "compress/kquant.h"
#include "compress/prune.h"
#include "compress/quant.h"
#include "model/block.h"
#include "ops/attention.h"
#include "ops/linear.h"
#include "ops/ops.h"

namespace ctrust {

std::vector<GgufKV> recipe_metadata(const Recipe& r) {
  return {GgufKV{kRecipeKey, GgufValue::str(recipe_to_string(r))}};
}

void block_forward(const Model& m, int l, float* x, int n, const LinearObserver* obs) {
  ForwardState st;
  block_forward(m, st, l, x, n, obs);
}

void block_forward(const Model& m, ForwardState& st, int l, float* x, int n, const LinearObserver* obs) {
  const ModelConfig& c = m.cfg;
  (void)m.layers.at(l);  // std::out_of_range on a bad layer index
  const int64_t dim = c.dim, hd = c.head_dim, qdim = c.n_heads * hd, kvdim = c.n_kv_heads * hd, hid = c.hidden_dim;
  using F = ForwardState;
  float* xb = F::fit(st.xb, n * dim);
  float* q = F::fit(st.q, n * qdim);
  float* k = F::fit(st.k, n * kvdim);
  float* v = F::fit(st.v, n * kvdim);
  float* att = F::fit(st.att, n * qdim);
  float* o = F::fit(st.proj, n * dim);
  float* gate = F::fit(st.gate, n * hid);
  float* up = F::fit(st.up, n * hid);
  float* cos_t = F::fit(st.cos_t, n * hd / 2);
  float* sin_t = F::fit(st.sin_t, n * hd / 2);
  const bool local = has_local_rope(c) && c.is_local(l);  // a local layer's own RoPE base (Gemma 3)
  rope_tables(0, n, (int)hd, local ? c.rope_theta_swa : c.rope_theta,
              local ? c.rope_freq_scale_swa : c.rope_freq_scale, cos_t, sin_t);
  const BlockBuffers bufs{.xb = xb, .q = q, .k = k, .v = v, .att = att, .proj = o, .gate = gate, .up = up,
                          .cos_t = cos_t, .sin_t = sin_t};
  auto lin = [n](const Linear& L, const float* in, float* out) { linear(L, in, out, n); };
  auto attend = [&](const AttentionShape& shape, const float* queries, float* out) {
    attention(shape, queries, k, v, (int)kvdim, 0, n, out);  // causal, over this sequence only
  };
  transformer_block(m, l, x, n, bufs, lin, attend, obs);
}

void apply_inference_modes(Model& m, const Recipe& r) {
  if (r.method != Method::SmoothQuant && r.method != Method::LLMInt8) return;
  const LinearMode mode = r.method == Method::SmoothQuant ? LinearMode::W8A8 : LinearMode::Int8Outlier;
  for (size_t l = 0; l < m.layers.size(); ++l)
    for (const BlockLinear& b : kBlockLinears)
      if (tensor_selected(r, fmt::format("blk.{}.{}.weight", l, b.name))) {
        Linear& lin = m.layers[l].*b.member;
        lin.mode = mode;
        lin.threshold = float(r.threshold);
      }
  materialize_mode_weights(m);  // a model loaded in the native mode: these Linears need f32 weights
}

namespace {

enum Kind { AttnIn, AttnOut, FfnIn, FfnDown, NKinds };
struct LinDef {
  const char* name;
  Kind kind;
};
// kBlockLinears (model.h) with the input each Linear reads.
constexpr LinDef kLinears[] = {{kBlockLinears[0].name, AttnIn},  {kBlockLinears[1].name, AttnIn},
                               {kBlockLinears[2].name, AttnIn},  {kBlockLinears[3].name, AttnOut},
                               {kBlockLinears[4].name, FfnIn},   {kBlockLinears[5].name, FfnIn},
                               {kBlockLinears[6].name, FfnDown}};
static_assert(std::size(kLinears) == std::size(kBlockLinears));
constexpr const char* kFirstOfKind[NKinds] = {"attn_q", "attn_output", "ffn_gate", "ffn_down"};

struct Capture {
  int width = 0;
  Hessian h;
  ActStats st;
  std::vector<float> x;  // raw inputs, only for AWQ
};

// Replaces a tensor's data; packed bytes (if any) are stored after the floats in the same buffer so that
// Tensor::raw lives exactly as long as the tensor's data.
void set_tensor(Tensor& t, std::vector<float> v, const PackedTensor* packed = nullptr) {
  if (packed && packed->type == GgmlType::F32) packed = nullptr;
  const size_t n = v.size();
  if (packed) {
    v.resize(n + (packed->bytes.size() + 3) / 4);
    std::memcpy(v.data() + n, packed->bytes.data(), packed->bytes.size());
  }
  t.owned = std::move(v);
  t.data = t.owned.data();
  if (packed) {
    t.raw = reinterpret_cast<const uint8_t*>(t.owned.data() + n);
    t.raw_bytes = packed->bytes.size();
    t.src_type = packed->type;
    t.perm = packed->perm;
  } else {
    t.raw = nullptr;
    t.raw_bytes = 0;
    t.src_type = GgmlType::F32;
    t.perm.clear();
  }
}

// Stores a pruned matrix (packed as CTRUST_SPARSE when that is smaller and exact) and reports its type.
void store_pruned(Tensor& t, std::vector<float> w, TensorReport& tr) {
  PackedTensor p = pack_sparse(w.data(), int(t.rows()), int(t.cols()));
  set_tensor(t, std::move(w), &p);
  tr.stored = p.type;
}

// sum_rows d H d^T * tokens / 2 with d = W - eff(Q) (= ||W X^T - eff(Q) X^T||^2 since H = 2 X^T X / tokens),
// where eff(Q)[r][j] = Q[r][j] * row_mul[r] / col_div[j] undoes the AWQ/SmoothQuant scaling. The difference d
// is formed in double; the product d H runs in f32 (sgemm, ~4x faster than dgemm; the report needs ~6 digits)
// and the row sums are accumulated in double. Hf is H as f32.
double layer_error(const std::vector<float>& Hf, int64_t tokens, const float* W, const float* Q, int out, int in,
                   const std::vector<float>* col_div, const std::vector<float>* row_mul, double* ref_norm) {
  BlasSerial serial(double(out) * in * in < 8 * kBlasSmall);
  std::vector<float> D(size_t(out) * in), E(size_t(out) * in);
  auto quad = [&]() {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, in, 1.0f, D.data(), in, Hf.data(), in, 0.0f,
                E.data(), in);
    double s = 0;
    for (size_t i = 0; i < D.size(); ++i) s += double(D[i]) * E[i];
    return s * double(tokens) / 2.0;
  };
  if (ref_norm) {
    std::copy(W, W + size_t(out) * in, D.begin());
    *ref_norm = quad();
  }
  for (int r = 0; r < out; ++r)
    for (int j = 0; j < in; ++j) {
      double q = Q[size_t(r) * in + j];
      if (row_mul) q *= (*row_mul)[r];
      if (col_div) q /= (*col_div)[j];
      D[size_t(r) * in + j] = float(double(W[size_t(r) * in + j]) - q);
    }
  return quad();
}

QuantSpec spec_of(const Recipe& r) {
  QuantSpec q{r.bits, r.sym, r.group, r.fp16_scales, r.minmax};
  q.zero_point = r.zero_point;
  return q;
}

// The grid of tensor `name`: its output type (Recipe::tensor_types / type) or the recipe's bits/group grid.
// Legacy ggml types map to the GPTQ grid that packs into them exactly (fp16 scales, group 32).
QuantSpec spec_for(const Recipe& r, const std::string& name) {
  QuantSpec q = spec_of(r);
  const std::string t = tensor_type(r, name);
  if (t.empty()) return q;
  const GgmlType g = ggml_type_from_name(t);
  if (is_kquant(g)) {
    q.ktype = g;
    return q;
  }
  q.group = 32;
  q.fp16_scales = true;
  q.minmax = false;
  q.ggml_fit = r.legacy_ggml_fit;  // every legacy type: Q4_0/Q5_0/Q8_0 and Q4_1/Q5_1
  switch (g) {
    case GgmlType::Q4_0: q.bits = 4; q.sym = true; break;
    case GgmlType::Q4_1: q.bits = 4; q.sym = false; break;
    case GgmlType::Q5_0: q.bits = 5; q.sym = true; break;
    case GgmlType::Q5_1: q.bits = 5; q.sym = false; break;
    case GgmlType::Q8_0: q.bits = 8; q.sym = true; break;
    default: fail("{}: unsupported output type {}", name, t);
  }
  return q;
}

// The K-quant fit weights of tensor `name` from the imatrix (empty: none, ggml's unweighted fit).
std::vector<float> imatrix_for(const Imatrix* im, const std::string& name, int in) {
  if (!im) return {};
  auto e = im->entries.find(name);
  if (e == im->entries.end()) return {};
  if (int(e->second.sum2.size()) != in)
    fail("imatrix: entry '{}' has {} values, the tensor has {} input columns", name, e->second.sum2.size(), in);
  return imatrix_weights(e->second);
}

struct Work {
  Model& m;
  const Recipe& r;
  const Imatrix* imatrix;
  CompressReport& rep;
  const CompressProgress& progress;
};

// Stores a quantized result into the tensor (packing it when exact) and reports it.
void store_quant(Tensor& t, const QuantResult& q, TensorReport& tr) {
  PackedTensor p = pack_quant(q);
  set_tensor(t, q.w, &p);
  tr.stored = p.type;
}

std::string weight_name(int l, const char* lin) { return fmt::format("blk.{}.{}.weight", l, lin); }

// Compresses the selected Linears of block l given the captured inputs.
void compress_block(Work& w, int l, std::vector<Capture>& cap, bool have_calib) {
  Model& m = w.m;
  const Recipe& r = w.r;
  LoadedModel& f = m.file;
  struct Item {
    const LinDef* def;
    Tensor* t;
    Recipe er;                // the recipe of this tensor (rules applied)
    std::vector<float> orig;  // the weight before compression
    std::vector<float> col_div, row_mul;
    double awq_alpha = -1;  // AWQ: the alpha chosen for this Linear's group
  };
  std::vector<Item> items;
  for (const LinDef& d : kLinears) {
    std::string name = weight_name(l, d.name);
    if (!tensor_selected(r, name)) continue;
    Tensor& t = f.tensors.at(name);
    items.push_back(Item{&d, &t, recipe_for_tensor(r, name), std::vector<float>(t.data, t.data + t.numel()), {}, {}});
  }
  if (items.empty()) return;
  auto find = [&](const char* n) -> Item* {
    for (Item& it : items)
      if (std::strcmp(it.def->name, n) == 0) return &it;
    return nullptr;
  };
  auto rows_of = [](const Item& it) { return int(it.t->rows()); };
  auto cols_of = [](const Item& it) { return int(it.t->cols()); };
  std::vector<std::vector<double>> H(NKinds);
  std::vector<std::vector<float>> Hf(NKinds);
  if (have_calib)
    for (int k = 0; k < NKinds; ++k)
      if (cap[k].h.tokens > 0) {
        H[k] = hessian_matrix(cap[k].h);
        Hf[k].assign(H[k].begin(), H[k].end());
      }

  // Working copies of tensors that absorb scales (norms and previous Linears), written back at the end.
  auto working = [&](const std::string& name) {
    const Tensor& t = f.get(name);
    return std::vector<float>(t.data, t.data + t.numel());
  };

  if (r.method == Method::AWQ || r.method == Method::SmoothQuant) {
    // The family's fold groups (io/arch.h): Linears sharing an input, and the tensor absorbing 1/s.
    struct Group {
      std::vector<const char*> lins;
      Kind kind;
      std::string prev;  // 1-D norm, or a Linear whose rows absorb the scales
      bool prev_rows;
    };
    std::vector<Group> groups;
    for (const FoldGroup& fg : arch_spec(m.cfg.arch).folds) {
      if (fg.awq_only && r.method != Method::AWQ) continue;
      if (fg.needs_mha && m.cfg.n_kv_heads != m.cfg.n_heads) continue;
      const LinDef* first = nullptr;
      for (const LinDef& d : kLinears)
        if (std::strcmp(d.name, fg.linears[0]) == 0) first = &d;
      if (!first) fail("{}: fold group of unknown Linear {}", f.path, fg.linears[0]);
      groups.push_back(Group{{fg.linears.begin(), fg.linears.end()}, first->kind,
                             weight_name(l, fg.prev), fg.prev_rows});
    }
    for (const Group& g : groups) {
      std::vector<Item*> its;
      for (const char* n : g.lins)
        if (Item* it = find(n)) its.push_back(it);
      if (its.empty()) continue;
      // The scale search quantizes the group with its first Linear's grid (a mixed-type group, e.g. q/k Q4_K and
      // v Q6_K, searches with q's type; each Linear is then stored in its own type).
      const QuantSpec qs = spec_for(its[0]->er, its[0]->t->name);
      const int in = cols_of(*its[0]);
      std::vector<const float*> Ws;
      std::vector<int> outs;
      for (Item* it : its) {
        Ws.push_back(it->t->data);
        outs.push_back(rows_of(*it));
      }
      Capture& c = cap[g.kind];
      std::vector<float> s;
      if (r.method == Method::SmoothQuant) {
        s = smoothquant_scales(c.st.max_abs, Ws, outs, in, r.alpha);
      } else {
        const int n = int(c.x.size() / in);
        // The unquantized reference outputs below and the losses of the grid search (awq_search runs its grid
        // points in parallel, so BLAS is serial inside) use single-threaded BLAS, so that the scales do not depend
        // on the thread count.
        std::function<double(const std::vector<float>&)> loss;
        std::vector<float> xs, ref, gram;  // MLP: token sample and its unquantized output; else X^T X
        if (g.kind == FfnIn && its.size() == 2) {
          // The MLP loss needs the inputs themselves: every (n / awq_search_tokens)-th token, as the clipping
          // search samples its tokens; the unquantized MLP output is computed once for all grid points.
          const Tensor& down = f.get(weight_name(l, "ffn_down"));
          const int step = r.awq_search_tokens > 0 ? std::max(1, n / r.awq_search_tokens) : 1;
          for (int t = 0; t < n; t += step) xs.insert(xs.end(), &c.x[size_t(t) * in], &c.x[size_t(t) * in] + in);
          const int ns = int(xs.size() / in);
          const float *gw = find("ffn_gate")->t->data, *uw = find("ffn_up")->t->data, *dw = down.data;
          {
            BlasSerial serial(true);
            ref = awq_mlp_forward(gw, uw, dw, in, m.cfg.hidden_dim, xs.data(), ns);
          }
          loss = [&, ns, gw, uw, dw](const std::vector<float>& sc) {
            return awq_mlp_loss_ref(gw, uw, dw, in, m.cfg.hidden_dim, xs.data(), ns, ref, sc, qs);
          };
        } else if (g.kind == AttnIn && r.awq_attn_loss) {
          // llm-awq's loss for q/k/v: the output of the whole attention module (o_proj unquantized) on whole
          // calibration sequences: every (N / ceil(awq_search_tokens / L))-th sequence (all with 0).
          const int L = r.seq_len, N = n / L;
          const int want = r.awq_search_tokens > 0 ? (r.awq_search_tokens + L - 1) / L : N;
          const int ns = std::clamp(want, 1, N), stride = N / ns;
          xs.resize(size_t(ns) * L * in);
          for (int i = 0; i < ns; ++i)
            std::memcpy(&xs[size_t(i) * L * in], &c.x[size_t(i) * stride * L * in], sizeof(float) * size_t(L) * in);
          auto bias = [&](const char* lin) -> const float* {
            auto bt = f.tensors.find(fmt::format("blk.{}.{}.bias", l, lin));
            return bt == f.tensors.end() ? nullptr : bt->second.data;
          };
          AwqAttention att;
          att.dim = m.cfg.dim;
          att.n_heads = m.cfg.n_heads;
          att.n_kv_heads = m.cfg.n_kv_heads;
          att.head_dim = m.cfg.head_dim;
          att.rope_theta = m.cfg.rope_theta;
          att.rope_freq_scale = m.cfg.rope_freq_scale;
          att.rope = m.cfg.rope;
          att.wq = f.get(weight_name(l, "attn_q")).data;
          att.wk = f.get(weight_name(l, "attn_k")).data;
          att.wv = f.get(weight_name(l, "attn_v")).data;
          att.wo = f.get(weight_name(l, "attn_output")).data;
          att.bq = bias("attn_q");
          att.bk = bias("attn_k");
          att.bv = bias("attn_v");
          {
            BlasSerial serial(true);
            ref = awq_attention_forward(att, xs.data(), ns, L);
          }
          loss = [&, att, ns, L](const std::vector<float>& sc) {
            const bool quant[3] = {find("attn_q") != nullptr, find("attn_k") != nullptr, find("attn_v") != nullptr};
            return awq_attention_loss(att, quant, xs.data(), ns, L, ref, sc, qs);
          };
        } else {
          // ||D X^T||^2 from X^T X (exact on all tokens; out x in^2 instead of out x in x n per grid point).
          gram.resize(size_t(in) * in);
          for (int i = 0; i < in; ++i)
            for (int j = i; j < in; ++j)
              gram[size_t(i) * in + j] = gram[size_t(j) * in + i] = float(c.h.sum[size_t(i) * in + j]);
          loss = [&, n](const std::vector<float>& sc) {
            return awq_linears_loss_gram(Ws, outs, in, gram, n, sc, qs);
          };
        }
        AwqSearch found = awq_search(act_mean_abs(c.st), r.awq_grid, loss);
        s = std::move(found.s);
        for (Item* it : its) it->awq_alpha = found.alpha;
      }
      // Fold: the Linears' columns *= s (all Linears sharing the input, selected or not), prev /= s.
      for (const LinDef& d : kLinears) {
        if (d.kind != g.kind) continue;
        Tensor& t = f.tensors.at(weight_name(l, d.name));
        std::vector<float> v = working(t.name);
        scale_columns(v.data(), int(t.rows()), int(t.cols()), s);
        Item* it = find(d.name);
        if (it) it->col_div = s;
        set_tensor(t, std::move(v));
      }
      Tensor& prev = f.tensors.at(g.prev);
      std::vector<float> pv = working(g.prev);
      if (g.prev_rows) {
        divide_rows(pv.data(), int(prev.rows()), int(prev.cols()), s);
        // A bias of the previous Linear (Qwen2's attn_v) is part of its output rows: divided too.
        const std::string bias = g.prev.substr(0, g.prev.size() - std::string("weight").size()) + "bias";
        if (auto bt = f.tensors.find(bias); bt != f.tensors.end()) {
          std::vector<float> bv = working(bias);
          divide_vector(bv.data(), s);
          set_tensor(bt->second, std::move(bv));
        }
        const char* pl = g.kind == AttnOut ? "attn_v" : "ffn_up";
        if (Item* it = find(pl)) it->row_mul = s;  // errors compare against the unscaled original
      } else {
        divide_vector(pv.data(), s);
      }
      set_tensor(prev, std::move(pv));
      for (size_t i = 0; i < c.x.size(); ++i) c.x[i] /= s[i % in];  // inputs of the scaled Linears
    }
    rebind_weights(m);
  }

  for (Item& it : items) {
    const int out = rows_of(it), in = cols_of(it);
    const Kind k = it.def->kind;
    const Recipe& r = it.er;  // this tensor's method and grid
    QuantSpec qs = spec_for(r, it.t->name);
    const std::vector<float> imat =
        qs.ktype != GgmlType::F32 || qs.ggml_fit ? imatrix_for(w.imatrix, it.t->name, in) : std::vector<float>();
    if (!imat.empty()) qs.kweights = imat.data();
    TensorReport tr;
    tr.name = it.t->name;
    tr.out = out;
    tr.in = in;
    tr.awq_alpha = it.awq_alpha;
    const std::vector<float> cur(it.t->data, it.t->data + size_t(out) * in);
    bool quant = false;
    QuantResult q;
    switch (r.method) {
      case Method::RTN: q = rtn_quantize(cur.data(), out, in, qs); quant = true; break;
      case Method::GPTQ: {
        GptqOptions o;
        o.q = qs;
        o.damp = r.damp;
        o.block = r.block;
        o.act_order = r.act_order;
        o.static_groups = r.static_groups;
        q = gptq_quantize_h(cur.data(), out, in, H[k], o);
        quant = true;
        break;
      }
      case Method::AWQ: {
        std::vector<float> wc = cur;
        const bool qk = std::strcmp(it.def->name, "attn_q") == 0 || std::strcmp(it.def->name, "attn_k") == 0;
        if (r.awq_clip && !qk) {
          AwqOptions o;
          o.q = qs;
          if (qs.ktype != GgmlType::F32) {  // clipping search on the nearest plain grid (sub-block size groups)
            const GgmlType kt = qs.ktype;
            o.q = QuantSpec{};
            o.q.bits = kt == GgmlType::Q2_K ? 2 : kt == GgmlType::Q3_K ? 3 : kt == GgmlType::Q4_K ? 4 : kt == GgmlType::Q5_K ? 5 : 6;
            o.q.sym = kt == GgmlType::Q3_K || kt == GgmlType::Q6_K;
            o.q.group = kt == GgmlType::Q4_K || kt == GgmlType::Q5_K ? 32 : 16;
          }
          o.max_shrink = r.awq_max_shrink;
          awq_clip(wc.data(), out, in, cap[k].x.data(), int(cap[k].x.size() / in), o);
        }
        q = rtn_quantize(wc.data(), out, in, qs);
        quant = true;
        break;
      }
      case Method::SmoothQuant:
      case Method::LLMInt8: {  // LLM.int8(): bitsandbytes' CB/SCB (int8 per output row, absmax over the row)
        QuantResult q8 = quantize_rows_absmax_int8(
            cur.data(), out, in, r.method == Method::LLMInt8 ? Int8Round::Multiply : Int8Round::Divide);
        store_quant(*it.t, q8, tr);  // int8 levels + f32 row scales (CTRUST_QX, 8-bit sym per channel)
        break;
      }
      case Method::Magnitude:
      case Method::Wanda:
      case Method::SparseGPT: {
        PruneSpec p{r.sparsity, r.prune_n, r.prune_m};
        PruneResult pr;
        if (r.method == Method::SparseGPT) {
          SparseGptOptions o;
          o.p = p;
          o.damp = r.damp;
          o.block = r.block;
          if (r.prune_quant) {  // SparseGPT's joint mode: mask and grid in one sweep
            q = sparsegpt_quantize_h(cur.data(), out, in, H[k], o, qs);
            quant = true;
            break;
          }
          pr = sparsegpt_prune_h(cur.data(), out, in, H[k], o);
        } else if (r.method == Method::Magnitude) {
          pr = prune_magnitude(cur.data(), out, in, p);
        } else {
          pr = prune_wanda(cur.data(), out, in, act_col_norm(cap[k].st).data(), p);
        }
        if (r.prune_quant) {
          q = prune_then_quantize(pr, p, qs);
          quant = true;
          break;
        }
        store_pruned(*it.t, std::move(pr.w), tr);
        break;
      }
    }
    if (quant) store_quant(*it.t, q, tr);
    const float* nw = it.t->data;
    int64_t zeros = 0;
    for (int64_t i = 0; i < int64_t(out) * in; ++i) zeros += nw[i] == 0.0f;
    tr.sparsity = double(zeros) / (double(out) * in);
    if (have_calib && !H[k].empty()) {
      // AWQ: ffn_up rows were divided by the down scales and its columns multiplied by the MLP scales.
      double ref = 0;
      tr.error = layer_error(Hf[k], cap[k].h.tokens, it.orig.data(), nw, out, in,
                             it.col_div.empty() ? nullptr : &it.col_div, it.row_mul.empty() ? nullptr : &it.row_mul,
                             &ref);
      tr.rel_error = ref > 0 ? tr.error / ref : 0.0;
      if (r.method == Method::RTN || r.method == Method::GPTQ || r.method == Method::AWQ) {
        QuantResult base = rtn_quantize(it.orig.data(), out, in, qs);
        tr.rtn_error = layer_error(Hf[k], cap[k].h.tokens, it.orig.data(), base.w.data(), out, in, nullptr, nullptr,
                                   nullptr);
      }
    }
    if (w.progress)
      w.progress(fmt::format("{}: {} x {}, rel. error {:.4g}, zeros {:.3f}, stored {}", tr.name, out, in,
                             tr.rel_error, tr.sparsity, ggml_type_name(tr.stored)));
    w.rep.tensors.push_back(std::move(tr));
  }
  rebind_weights(m);
}

}  // namespace

CompressReport compress_model(Model& m, const Recipe& recipe, const Calibration* calib,
                              const CompressProgress& progress, const Imatrix* imatrix) {
  const auto t0 = std::chrono::steady_clock::now();
  CompressReport rep;
  rep.recipe = recipe;
  Recipe& r = rep.recipe;
  validate_recipe(r);
  LoadedModel& f = m.file;
  const ModelConfig& c = m.cfg;
  // The block forward is the engine's own (any registered family); the fold groups come from the family's spec,
  // and AWQ's search losses model a SiLU MLP and attention without q/k-norm (io/arch.h, ArchSpec::awq).
  const ArchSpec* spec = nullptr;
  try {
    spec = &arch_spec(c.arch);
  } catch (const Error&) {
    fail("{}: compression does not know architecture '{}' (supported: {})", f.path, c.arch, supported_archs());
  }
  if (r.method == Method::AWQ && !spec->awq)
    fail("{}: AWQ's scale search models SiLU MLPs and attention without q/k-norm; architecture '{}' is not "
         "supported (use rtn, gptq, smoothquant, llm.int8 or a pruning method)", f.path, c.arch);
  // Compression reads and rewrites f32 weights (Tensor::data) and calibrates with the f32 forward pass.
  if (compute_mode(m) != ComputeMode::F32)
    fail("{}: compression needs the model loaded in the f32 compute mode (it was loaded as {})", f.path,
         compute_mode_name(compute_mode(m)));

  // Validate every selected tensor before any work.
  bool any = false;
  for (const auto& [name, t] : f.tensors) {
    bool linear = name == "token_embd.weight" || name == "output.weight";
    for (int l = 0; l < c.n_layers && !linear; ++l)
      for (const LinDef& d : kLinears) linear = linear || name == weight_name(l, d.name);
    if (!linear || !tensor_selected(r, name)) continue;
    const Recipe er = recipe_for_tensor(r, name);
    if (!r.rules.empty()) {
      try {
        validate_recipe(er);
      } catch (const Error& e) {
        fail("{}: {}", name, e.what());
      }
    }
    validate_tensor(er, name, t.rows(), t.cols(), int(t.ne.size()));
    any = true;
  }
  if (!any) fail("{}: no tensor is selected for compression (check --only / --skip)", f.path);
  if (!r.imatrix_file.empty() && !imatrix) fail("compress: the recipe names an imatrix file but none was given");
  if (recipe_needs_calibration(r) && !calib)
    fail("compress: method {} needs calibration data", method_name(r.method));
  if (calib) {
    if (calib->seqs.empty()) fail("{}: no calibration sequences", calib->file);
    r.calib_file = calib->file;
    r.calib_hash = calib->hash;
    r.n_samples = int(calib->seqs.size());
    r.seq_len = int(calib->seqs[0].size());
    for (const auto& s : calib->seqs)
      for (int32_t id : s)
        if (id < 0 || id >= c.n_vocab) fail("{}: calibration token id {} is out of range", calib->file, id);
  } else {
    r.calib_file.clear();
    r.calib_hash.clear();
  }
  Work w{m, r, r.imatrix_file.empty() ? nullptr : imatrix, rep, progress};

  // Tensors outside the blocks (only when --only names them): RTN / magnitude directly.
  for (const char* name : {"token_embd.weight", "output.weight"}) {
    auto found = f.tensors.find(name);
    if (found == f.tensors.end() || !tensor_selected(r, name)) continue;
    Tensor* t = &found->second;
    const Recipe er = recipe_for_tensor(r, name);
    TensorReport tr;
    tr.name = name;
    tr.out = int(t->rows());
    tr.in = int(t->cols());
    const std::string type = er.type;
    const GgmlType g = type.empty() ? GgmlType::F32 : ggml_type_from_name(type);
    if (g == GgmlType::Q8_0 || g == GgmlType::Q4_0 || g == GgmlType::Q4_1) {
      // ggml's own quantizer (io/quant.cpp), as llama-quantize stores these tensors (they have no imatrix).
      const int64_t n = int64_t(tr.out) * tr.in;
      PackedTensor p;
      p.type = g;
      p.bytes.resize(ggml_nbytes(g, n));
      quantize(g, t->data, p.bytes.data(), n);
      std::vector<float> v(static_cast<size_t>(n));
      dequantize(g, p.bytes.data(), v.data(), n);
      set_tensor(*t, std::move(v), &p);
      tr.stored = g;
    } else if (er.method == Method::RTN || !type.empty()) {
      QuantSpec qs = spec_for(er, name);
      const std::vector<float> imat = qs.ktype != GgmlType::F32 ? imatrix_for(w.imatrix, name, tr.in) : std::vector<float>();
      if (!imat.empty()) qs.kweights = imat.data();
      QuantResult q = rtn_quantize(t->data, tr.out, tr.in, qs);
      store_quant(*t, q, tr);
    } else {
      const PruneSpec ps{er.sparsity, er.prune_n, er.prune_m};
      PruneResult p = prune_magnitude(t->data, tr.out, tr.in, ps);
      tr.sparsity = p.sparsity;
      if (er.prune_quant) store_quant(*t, prune_then_quantize(p, ps, spec_of(er)), tr);
      else store_pruned(*t, std::move(p.w), tr);
    }
    rep.tensors.push_back(std::move(tr));
  }

  if (!calib) {
    std::vector<Capture> none(NKinds);
    for (int l = 0; l < c.n_layers; ++l) compress_block(w, l, none, false);
  } else {
    const int N = int(calib->seqs.size()), L = int(calib->seqs[0].size()), dim = c.dim;
    const int widths[NKinds] = {dim, c.n_heads * c.head_dim, dim, c.hidden_dim};
    std::vector<float> X(size_t(N) * L * dim);
    for (int s = 0; s < N; ++s) embed_tokens(m, calib->seqs[s].data(), L, &X[size_t(s) * L * dim]);  // (scaled)
    const bool want_x = r.method == Method::AWQ;
    const bool fp_feed = r.method == Method::AWQ && r.awq_fp_feed;
    // The N sequences run in parallel (one OpenMP thread per sequence, BLAS single-threaded inside the
    // parallel region), a wave of T sequences at a time. Each sequence's X^T X (f32 syrk) and statistics go to
    // its slot; the slots are then added in sequence order, so the sums do not depend on the thread count.
    const int T = std::max(1, std::min(N, omp_get_max_threads()));
    struct Slot {
      std::vector<float> xtx[NKinds];  // upper triangle of X^T X of one sequence
      ActStats st[NKinds];
      ForwardState fs;  // the block's activations, reused by this slot's sequences
    };
    std::vector<Slot> slots(T);
    for (Slot& sl : slots)
      for (int k = 0; k < NKinds; ++k) {
        sl.xtx[k].assign(size_t(widths[k]) * widths[k], 0.0f);
        sl.st[k] = make_act_stats(widths[k]);
      }
    // The calibration forward stops after the last block with a selected Linear (--only on early blocks):
    // later blocks would only be run, not changed.
    int last_block = -1;
    for (int l = 0; l < c.n_layers; ++l)
      for (const LinDef& d : kLinears)
        if (tensor_selected(r, weight_name(l, d.name))) last_block = l;
    for (int l = 0; l <= last_block; ++l) {
      std::vector<Capture> cap(NKinds);
      for (int k = 0; k < NKinds; ++k) {
        cap[k].width = widths[k];
        cap[k].h = make_hessian(widths[k]);
        cap[k].st = make_act_stats(widths[k]);
        if (want_x) cap[k].x.resize(size_t(N) * L * widths[k]);
      }
      for (int s0 = 0; s0 < N; s0 += T) {
        const int cnt = std::min(T, N - s0);
        // A wave of one sequence (N = 1, or the last wave) runs outside a parallel region: its BLAS calls are made
        // single-threaded too, as inside one, so that every sequence's forward gives the same bits whatever the
        // thread count (multi-threaded OpenBLAS sgemm differs in the last bits with its Haswell/Zen kernels).
        BlasSerial serial(cnt == 1);
#pragma omp parallel for schedule(static, 1) num_threads(cnt) if (cnt > 1)
        for (int t = 0; t < cnt; ++t) {
          const int s = s0 + t;
          Slot& sl = slots[t];
          std::vector<float> x(&X[size_t(s) * L * dim], &X[size_t(s) * L * dim] + size_t(L) * dim);
          LinearObserver obs = [&](int, std::string_view name, const float* in, int rows, int cols) {
            for (int k = 0; k < NKinds; ++k)
              if (name == kFirstOfKind[k]) {
                hessian_rows_f32(in, rows, cols, sl.xtx[k].data());
                sl.st[k] = make_act_stats(cols);
                act_stats_add(sl.st[k], in, rows);
                if (want_x) std::memcpy(&cap[k].x[size_t(s) * L * cols], in, sizeof(float) * size_t(rows) * cols);
              }
          };
          block_forward(m, sl.fs, l, x.data(), L, &obs);
          // AWQ (llm-awq's run_awq): the next block's inputs are this block's unquantized outputs.
          if (fp_feed) std::memcpy(&X[size_t(s) * L * dim], x.data(), sizeof(float) * size_t(L) * dim);
        }
        for (int k = 0; k < NKinds; ++k) {
          const int n = widths[k];
          double* sum = cap[k].h.sum.data();
#pragma omp parallel for schedule(dynamic, 16) if (n >= 256)
          for (int i = 0; i < n; ++i)
            for (int t = 0; t < cnt; ++t) {
              const float* c = slots[t].xtx[k].data() + size_t(i) * n;
              for (int j = i; j < n; ++j) sum[size_t(i) * n + j] += c[j];
            }
          for (int t = 0; t < cnt; ++t) {
            cap[k].h.tokens += L;
            act_stats_merge(cap[k].st, slots[t].st[k]);
          }
        }
      }
      compress_block(w, l, cap, true);
      cap.clear();
      if (!fp_feed) {
        BlasSerial serial(N == 1);  // as above
#pragma omp parallel for schedule(dynamic, 1) if (N > 1)
        for (int s = 0; s < N; ++s) block_forward(m, l, &X[size_t(s) * L * dim], L, nullptr);
      }
      if (progress) progress(fmt::format("block {} / {} done", l + 1, c.n_layers));
    }
  }
  rebind_weights(m);
  apply_inference_modes(m, r);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace ctrust
