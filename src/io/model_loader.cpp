// load_model: format dispatch; load_gguf_model: GGUF -> LoadedModel (config from <arch>.* keys, tensors
// dequantized to f32, tokenizer from tokenizer.ggml.*); shape validation shared by every loader.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "io/config_json.h"
#include "io/ctrust_types.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "io/export_hf.h"
#include "io/tokenizer.h"

namespace ctrust {

namespace fs = std::filesystem;

const Tensor& LoadedModel::get(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("{}: missing tensor {}", path, name);
  return it->second;
}

namespace {

std::string shape_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

// A positive, finite real that fits a float (norm epsilon, RoPE base): anything else is a broken file.
double positive_real(double v, const std::string& path, const std::string& key) {
  if (!(v > 0 && v < 3e38)) fail("{}: {} = {} must be a positive finite number", path, key, v);
  return v;
}

}  // namespace

void validate_model_shapes(const std::string& path, const ModelConfig& c,
                           const std::map<std::string, std::vector<int64_t>>& shapes) {
  if (c.dim <= 0) fail("{}: embedding width {} must be positive", path, c.dim);
  if (c.n_layers <= 0) fail("{}: layer count {} must be positive", path, c.n_layers);
  if (c.hidden_dim <= 0) fail("{}: feed-forward width {} must be positive", path, c.hidden_dim);
  if (c.n_heads <= 0) fail("{}: head count {} must be positive", path, c.n_heads);
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0)
    fail("{}: KV head count {} does not divide the head count {}", path, c.n_kv_heads, c.n_heads);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) fail("{}: head dimension {} must be positive and even", path, c.head_dim);
  if (c.n_vocab <= 0) fail("{}: vocabulary is empty", path);
  const int64_t q_dim = (int64_t)c.n_heads * c.head_dim;
  const int64_t kv_dim = (int64_t)c.n_kv_heads * c.head_dim;

  auto expect = [&](const std::string& name, std::vector<int64_t> ne) {
    auto it = shapes.find(name);
    if (it == shapes.end()) fail("{}: missing tensor {}", path, name);
    if (it->second != ne)
      fail("{}: tensor {} has shape {}, expected {}", path, name, shape_str(it->second), shape_str(ne));
  };
  auto emb = shapes.find("token_embd.weight");
  if (emb == shapes.end()) fail("{}: missing tensor token_embd.weight", path);
  if (emb->second.size() == 2 && emb->second[0] == c.dim && emb->second[1] != c.n_vocab)
    fail("{}: vocabulary has {} tokens but token_embd.weight has {} rows", path, c.n_vocab, emb->second[1]);
  expect("token_embd.weight", {c.dim, c.n_vocab});
  expect("output_norm.weight", {c.dim});
  if (!c.tied_output) expect("output.weight", {c.dim, c.n_vocab});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    expect(p + "attn_norm.weight", {c.dim});
    expect(p + "attn_q.weight", {c.dim, q_dim});
    expect(p + "attn_k.weight", {c.dim, kv_dim});
    expect(p + "attn_v.weight", {c.dim, kv_dim});
    expect(p + "attn_output.weight", {q_dim, c.dim});
    if (c.qkv_bias) {
      expect(p + "attn_q.bias", {q_dim});
      expect(p + "attn_k.bias", {kv_dim});
      expect(p + "attn_v.bias", {kv_dim});
    }
    expect(p + "ffn_norm.weight", {c.dim});
    if (c.post_norms) {
      expect(p + "post_attention_norm.weight", {c.dim});
      expect(p + "post_ffw_norm.weight", {c.dim});
    }
    if (c.qk_norm) {
      expect(p + "attn_q_norm.weight", {c.head_dim});
      expect(p + "attn_k_norm.weight", {c.head_dim});
    }
    expect(p + "ffn_gate.weight", {c.dim, c.hidden_dim});
    expect(p + "ffn_up.weight", {c.dim, c.hidden_dim});
    expect(p + "ffn_down.weight", {c.hidden_dim, c.dim});
  }
}

void validate_model(const LoadedModel& m) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, t] : m.tensors) shapes[name] = t.ne;
  validate_model_shapes(m.path, m.cfg, shapes);
}

void set_swa_pattern(ModelConfig& c, int pattern) {
  c.swa_layers.assign(c.n_layers, 0);
  for (int l = 0; l < c.n_layers; ++l) c.swa_layers[l] = pattern == 0 || l % pattern < pattern - 1;
}

void apply_arch_defaults(ModelConfig& c, const ArchSpec& spec) {
  c.arch = spec.name;
  c.rope = spec.gguf_rope;
  c.post_norms = spec.post_norms;
  c.act = spec.act;
  c.qk_norm = spec.qk_norm;
  c.embed_scale = spec.embed_scale ? std::sqrt((float)c.dim) : 1.0f;
  c.attn_scale = 0.0f;
  if (spec.attn_scale == AttnScaleRule::Gemma3 && c.n_layers == 62 && c.n_heads > 0)  // llama.cpp: the 27B shape
    c.attn_scale = 1.0f / std::sqrt((float)(c.dim / c.n_heads));
  c.sliding_window = 0;
  c.swa_layers.clear();
  c.rope_theta_swa = spec.swa_rope_base > 0 ? spec.swa_rope_base : c.rope_theta;
  c.rope_freq_scale_swa = 1.0f;
  c.logit_softcap = 0.0f;
}

const char* compute_mode_name(ComputeMode m) { return m == ComputeMode::Native ? "native" : "f32"; }

ComputeMode compute_mode_from_name(std::string_view s) {
  if (s == "f32") return ComputeMode::F32;
  if (s == "native") return ComputeMode::Native;
  fail("unknown compute mode '{}' (valid: native, f32)", s);
}

size_t Tensor::row_bytes() const { return ggml_nbytes(src_type, cols()); }

void tensor_rows_f32(const Tensor& t, int64_t r0, int64_t n, float* dst) {
  if (r0 < 0 || n < 0 || r0 + n > t.rows()) fail("tensor {}: rows [{}, {}) out of range", t.name, r0, r0 + n);
  if (t.data) {
    std::memcpy(dst, t.data + r0 * t.cols(), sizeof(float) * (size_t)(n * t.cols()));
    return;
  }
  if (!t.raw) fail("tensor {} has no data", t.name);
  if (t.perm.empty()) {
    dequantize(t.src_type, t.raw + (size_t)r0 * t.row_bytes(), dst, n * t.cols());
    return;
  }
  std::vector<float> stored((size_t)(n * t.cols()));
  dequantize(t.src_type, t.raw + (size_t)r0 * t.row_bytes(), stored.data(), n * t.cols());
  unpermute_columns(stored.data(), dst, n, t.cols(), t.perm);
}

void materialize_f32(Tensor& t) {
  if (t.data) return;
  t.owned.resize((size_t)t.numel());
  const int64_t rows = t.rows(), step = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, t.cols()));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t r = 0; r < rows; r += step)
    tensor_rows_f32(t, r, std::min(step, rows - r), t.owned.data() + r * t.cols());
  t.data = t.owned.data();
}

LoadedModel load_gguf_model(const std::string& path, ComputeMode compute) {
  GgufFile f = read_gguf(path);
  LoadedModel m;
  m.path = path;
  m.format = "gguf";
  m.map = f.map;
  m.compute = compute;

  ModelConfig& c = m.cfg;
  const std::string arch = f.get_str("general.architecture");
  if (arch.empty()) fail("{}: no general.architecture key", path);
  const ArchSpec* spec = nullptr;
  try {
    spec = &arch_spec(arch);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  c.arch = arch;
  auto req = [&](const std::string& suffix) -> int {
    const std::string key = arch + "." + suffix;
    if (!f.find(key)) fail("{}: missing key {}", path, key);
    int64_t v = f.get_int(key, 0);
    if (v <= 0 || v > (int64_t)1 << 30) fail("{}: key {} has invalid value {}", path, key, v);
    return (int)v;
  };
  auto opt_int = [&](const std::string& suffix, int def) -> int {
    const std::string key = arch + "." + suffix;
    if (!f.find(key)) return def;
    int64_t v = f.get_int(key, def);
    if (v <= 0 || v > (int64_t)1 << 30) fail("{}: key {} has invalid value {}", path, key, v);
    return (int)v;
  };
  c.dim = req("embedding_length");
  c.n_layers = req("block_count");
  c.hidden_dim = req("feed_forward_length");
  c.n_heads = req("attention.head_count");
  c.n_kv_heads = opt_int("attention.head_count_kv", c.n_heads);
  c.n_ctx = opt_int("context_length", 2048);
  if (c.dim % c.n_heads != 0 && !f.find(arch + ".attention.key_length"))
    fail("{}: head count {} does not divide the embedding width {}", path, c.n_heads, c.dim);
  c.head_dim = opt_int("attention.key_length", c.dim / c.n_heads);
  c.norm_eps = (float)positive_real(f.get_float(arch + ".attention.layer_norm_rms_epsilon", 1e-5), path,
                                     arch + ".attention.layer_norm_rms_epsilon");
  c.rope_theta = (float)positive_real(f.get_float(arch + ".rope.freq_base", 10000.0), path, arch + ".rope.freq_base");
  const int rope_dims = opt_int("rope.dimension_count", c.head_dim);
  if (rope_dims != c.head_dim)
    fail("{}: partial rotary embedding ({} of {} head dimensions) is not supported", path, rope_dims, c.head_dim);
  const std::string scaling = f.get_str(arch + ".rope.scaling.type", "none");
  if (scaling == "linear") {
    double factor = f.get_float(arch + ".rope.scaling.factor", 1.0);
    if (!(factor > 0 && factor < 3e38)) fail("{}: {}.rope.scaling.factor {} must be positive and finite", path, arch, factor);
    c.rope_freq_scale = (float)(1.0 / factor);
  } else if (scaling != "none") {
    fail("{}: unsupported rope scaling type {} (supported: none, linear)", path, scaling);
  }
  apply_arch_defaults(c, *spec);
  // Sliding windows (llama.cpp: only for families that have them, and only when the file gives a window).
  if (spec->swa_pattern > 0 && f.find(arch + ".attention.sliding_window")) {
    const int64_t w = f.get_int(arch + ".attention.sliding_window", 0);
    if (w < 0 || w > (int64_t)1 << 30) fail("{}: key {}.attention.sliding_window has invalid value {}", path, arch, w);
    c.sliding_window = (int)w;
  }
  if (c.sliding_window > 0) {
    const std::string pk = arch + ".attention.sliding_window_pattern";
    const GgufValue* pat = f.find(pk);
    if (pat && pat->type == GgufType::ARRAY) {  // one flag per layer
      if ((int64_t)pat->arr.size() != c.n_layers)
        fail("{}: {} has {} entries for {} layers", path, pk, pat->arr.size(), c.n_layers);
      c.swa_layers.assign(c.n_layers, 0);
      for (int l = 0; l < c.n_layers; ++l) c.swa_layers[l] = pat->arr[l].as_int() != 0;
    } else {
      const int64_t n = pat ? f.get_int(pk, spec->swa_pattern) : spec->swa_pattern;
      if (n < 0 || n > (int64_t)1 << 30) fail("{}: key {} has invalid value {}", path, pk, n);
      set_swa_pattern(c, (int)n);
    }
    if (f.find(arch + ".rope.freq_base_swa"))
      c.rope_theta_swa = (float)positive_real(f.get_float(arch + ".rope.freq_base_swa", 10000.0), path,
                                              arch + ".rope.freq_base_swa");
  }
  if (spec->softcap && f.find(arch + ".final_logit_softcapping")) {
    const double cap = f.get_float(arch + ".final_logit_softcapping", 0.0);
    if (!(cap >= 0 && cap < 3e38)) fail("{}: {}.final_logit_softcapping = {} must be >= 0 and finite", path, arch, cap);
    c.logit_softcap = (float)cap;
  }
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.tied_output = f.find_tensor("output.weight") == nullptr;

  if (!f.find("tokenizer.ggml.tokens")) fail("{}: no tokenizer (tokenizer.ggml.tokens missing)", path);
  m.tok = tokenizer_from_gguf(f);
  c.n_vocab = (int)m.tok.tokens.size();

  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& t : f.tensors) shapes[t.name] = t.ne;
  validate_model_shapes(path, c, shapes);

  // Allocate every tensor first, then dequantize all of them in one parallel region over chunks of blocks
  // (one barrier for the whole model instead of one per tensor).
  struct Chunk {
    const GgufTensorInfo* ti;
    float* dst;
    int64_t begin, end;  // element range
  };
  std::vector<Chunk> chunks;
  // ctrust act-order tensors: "<name>.perm" (I32) holds the column permutation of <name> (io/ctrust_types.h).
  std::map<std::string, std::vector<int32_t>> perms;
  for (const auto& ti : f.tensors) {
    if (!ti.name.ends_with(".perm") || ti.name.size() == 5) continue;
    const std::string base = ti.name.substr(0, ti.name.size() - 5);
    const GgufTensorInfo* bt = f.find_tensor(base);
    if (ti.type != GgmlType::I32 || ti.ne.size() != 1 || !bt || !is_ctrust_type(bt->type) || bt->ne.size() != 2)
      fail("{}: tensor {} must be a 1-D i32 permutation of the columns of a ctrust-typed matrix {}", path, ti.name,
           base);
    std::vector<int32_t> p((size_t)ti.numel());
    std::memcpy(p.data(), ti.data, p.size() * sizeof(int32_t));
    check_permutation(p, bt->ne[0], path + ": tensor " + ti.name);
    perms[base] = std::move(p);
  }
  std::vector<std::pair<Tensor*, std::vector<float>>> to_unpermute;
  for (const auto& ti : f.tensors) {
    if (ti.type == GgmlType::I32 && ti.name.ends_with(".perm")) continue;  // attached to its matrix above
    const GgmlTypeInfo* info = ggml_type_info((uint32_t)ti.type);
    if (!info->can_dequantize) fail("{}: tensor {} has type {}, which ctrust cannot read", path, ti.name, info->name);
    if (is_ctrust_type(ti.type)) check_ctrust_tensor(ti.type, ti.data, ti.nbytes, path + ": tensor " + ti.name);
    Tensor t;
    t.name = ti.name;
    t.ne = ti.ne;
    t.src_type = ti.type;
    t.raw = ti.data;
    t.raw_bytes = ti.nbytes;
    if (auto p = perms.find(ti.name); p != perms.end()) t.perm = std::move(p->second);
    if (ti.type == GgmlType::F32 && reinterpret_cast<uintptr_t>(ti.data) % alignof(float) == 0) {
      t.data = reinterpret_cast<const float*>(ti.data);
    } else if (compute == ComputeMode::Native && ti.type != GgmlType::F32 && ti.ne.size() == 2 && t.perm.empty()) {
      // (ctrust's own types run on ops/qmatmul_ctrust.h; an act-order matrix with a permutation is dequantized)
      // native: the matrix stays in the mapped file in its storage type (data stays null)
    } else {
      t.owned.resize((size_t)ti.numel());
      t.data = t.owned.data();
      const int64_t step = std::max<int64_t>(info->block_size, (1 << 18) / info->block_size * info->block_size);
      for (int64_t b = 0; b < ti.numel(); b += step)
        chunks.push_back({&ti, t.owned.data(), b, std::min(ti.numel(), b + step)});
    }
    auto it = m.tensors.emplace(ti.name, std::move(t)).first;  // moving the vector keeps its buffer
    if (!it->second.perm.empty()) to_unpermute.push_back({&it->second, {}});
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    const GgmlTypeInfo* info = ggml_type_info((uint32_t)c.ti->type);
    dequantize(c.ti->type, c.ti->data + (size_t)(c.begin / info->block_size) * info->type_size, c.dst + c.begin,
               c.end - c.begin);
  }
  for (auto& [t, stored] : to_unpermute) {  // the values were dequantized in stored (permuted) column order
    stored = t->owned;
    unpermute_columns(stored.data(), t->owned.data(), t->rows(), t->cols(), t->perm);
  }
  m.meta = std::move(f.kv);
  return m;
}


// ---------------------------------------------------------------- Hugging Face folders

namespace {

nlohmann::json read_json(const std::string& path) {
  const std::string text = read_regular_file(path, "JSON file", kMaxJsonBytes);
  try {
    return nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

// GGUF name of a Hugging Face tensor name (the family's per-layer map); empty if the tensor is not used
// (e.g. rotary_emb.inv_freq).
std::string gguf_name(const std::string& hf, const ArchSpec& spec) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string pre = "model.layers.";
  if (hf.rfind(pre, 0) != 0) return "";
  size_t dot = hf.find('.', pre.size());
  if (dot == std::string::npos) return "";
  const std::string layer = hf.substr(pre.size(), dot - pre.size());
  if (layer.empty() || layer.find_first_not_of("0123456789") != std::string::npos) return "";
  const std::string rest = hf.substr(dot + 1);
  for (const HfTensorName& n : spec.hf_layer_names)
    if (rest == n.hf) return "blk." + layer + "." + n.gguf;
  return "";
}

// Token id of a special token given in tokenizer_config.json as "text" or {"content": "text"}.
int32_t special_id(const nlohmann::json& v, const TokenizerData& tok) {
  std::string s;
  if (v.is_string()) s = v.get<std::string>();
  else if (v.is_object() && v.contains("content") && v["content"].is_string()) s = v["content"].get<std::string>();
  else return -1;
  for (size_t i = 0; i < tok.tokens.size(); ++i)
    if (tok.tokens[i] == s) return (int32_t)i;
  return -1;
}

// quantization_config of a GPTQ (AutoGPTQ layout, "gptq" checkpoint format) or AWQ (GEMM) checkpoint.
struct HfQuantConfig {
  std::string method;  // "" = not quantized, "gptq", "awq"
  int bits = 0, group = 0;  // group -1 = per channel
};

HfQuantConfig hf_quant_config(const nlohmann::json& cj, const std::string& cfg_path) {
  HfQuantConfig q;
  if (!cj.contains("quantization_config") || cj["quantization_config"].is_null()) return q;
  const auto& qc = cj["quantization_config"];
  if (!qc.is_object()) fail("{}: quantization_config is not an object", cfg_path);
  const std::string method = qc.value("quant_method", std::string());
  if (method != "gptq" && method != "awq")
    fail("{}: quantization_config.quant_method '{}' is not supported (gptq, awq)", cfg_path, method);
  auto get_int = [&](std::initializer_list<const char*> keys) -> int {
    for (const char* k : keys)
      if (qc.contains(k) && qc[k].is_number_integer()) return qc[k].get<int>();
    fail("{}: quantization_config has no integer {}", cfg_path, *keys.begin());
  };
  q.method = method;
  q.bits = get_int({"bits", "w_bit"});
  q.group = get_int({"group_size", "q_group_size"});
  if (method == "gptq") {
    const std::string fmt_ = qc.value("checkpoint_format", std::string("gptq"));
    if (fmt_ != "gptq") fail("{}: GPTQ checkpoint_format '{}' is not supported (gptq)", cfg_path, fmt_);
    if (q.bits != 2 && q.bits != 3 && q.bits != 4 && q.bits != 8)
      fail("{}: GPTQ bits {} (supported: 2, 3, 4, 8)", cfg_path, q.bits);
  } else {
    const std::string ver = qc.value("version", std::string("gemm"));
    if (ver != "gemm" && ver != "GEMM") fail("{}: AWQ version '{}' is not supported (gemm)", cfg_path, ver);
    if (q.bits != 4) fail("{}: AWQ bits {} (supported: 4)", cfg_path, q.bits);
    if (qc.contains("zero_point") && qc["zero_point"].is_boolean() && !qc["zero_point"].get<bool>())
      fail("{}: AWQ without zero points is not supported", cfg_path);
  }
  if (q.group != -1 && q.group <= 0) fail("{}: group_size {} (a positive size or -1)", cfg_path, q.group);
  return q;
}

// One GPTQ / AWQ Linear <base>.qweight/.qzeros/.scales[/.g_idx] of sf, dequantized to f32 ((q - z) * s).
Tensor load_quantized_linear(const SafetensorsFile& sf, const std::string& base, const HfQuantConfig& hq,
                             const std::string& sp) {
  auto need = [&](const char* suffix, const char* dtype) -> const SafetensorsTensor& {
    const SafetensorsTensor* t = sf.find(base + suffix);
    if (!t) fail("{}: {}{} is missing", sp, base, suffix);
    if (t->dtype != dtype) fail("{}: {}{} has dtype {} (expected {})", sp, base, suffix, t->dtype, dtype);
    if (t->shape.size() != (std::string(suffix) == ".g_idx" ? 1u : 2u))
      fail("{}: {}{} has {} dimensions", sp, base, suffix, t->shape.size());
    return *t;
  };
  auto i32 = [](const SafetensorsTensor& t) {
    std::vector<int32_t> v(size_t(t.numel()));
    std::memcpy(v.data(), t.data, v.size() * 4);
    return v;
  };
  auto u16 = [](const SafetensorsTensor& t) {
    std::vector<uint16_t> v(size_t(t.numel()));
    std::memcpy(v.data(), t.data, v.size() * 2);
    return v;
  };
  const SafetensorsTensor& qw = need(".qweight", "I32");
  const SafetensorsTensor& qz = need(".qzeros", "I32");
  const SafetensorsTensor& sc = need(".scales", "F16");
  const int bits = hq.bits;
  int64_t in = 0, out = 0;
  if (hq.method == "gptq") {
    in = qw.shape[0] * 32 / bits;
    out = qw.shape[1];
  } else {
    in = qw.shape[0];
    out = qw.shape[1] * 8;
  }
  const int64_t group = hq.group == -1 ? in : hq.group;
  if (in <= 0 || out <= 0 || in > (1 << 24) || out > (1 << 24) || in % group != 0)
    fail("{}: {}: {} x {} with group {} (the group must divide the inputs)", sp, base, out, in, group);
  IntQuantMatrix m;
  if (hq.method == "gptq") {
    const SafetensorsTensor& gi = need(".g_idx", "I32");
    if ((qw.shape[0] * 32) % bits != 0 || (out * bits) % 32 != 0 || sc.shape[0] != in / group || sc.shape[1] != out ||
        qz.shape[0] != in / group || qz.shape[1] != out * bits / 32 || gi.shape[0] != in)
      fail("{}: {}: qweight/qzeros/scales/g_idx shapes do not match a {}-bit group-{} GPTQ layout", sp, base, bits, group);
    m = unpack_gptq({i32(qw), i32(qz), i32(gi), u16(sc)}, out, in, bits, int(group));
  } else {
    if (sc.shape[0] != in / group || sc.shape[1] != out || qz.shape[0] != in / group || qz.shape[1] != out / 8)
      fail("{}: {}: qweight/qzeros/scales shapes do not match a 4-bit group-{} AWQ GEMM layout", sp, base, group);
    m = unpack_awq({i32(qw), i32(qz), u16(sc)}, out, in, bits, int(group));
  }
  Tensor t;
  t.ne = {in, out};
  t.src_type = GgmlType::F32;
  t.owned = m.dequantize();
  return t;
}

}  // namespace

LoadedModel load_hf_model(const std::string& dir) {
  const fs::path d(dir);
  const std::string cfg_path = (d / "config.json").string();
  if (!fs::exists(cfg_path)) fail("{}: not a model folder (no config.json)", dir);
  const nlohmann::json cj = read_json(cfg_path);
  if (!cj.is_object()) fail("{}: not a JSON object", cfg_path);
  LoadedModel m;
  m.path = dir;
  m.format = "hf";
  ModelConfig& c = m.cfg;

  std::string hf_arch;
  if (cj.contains("architectures") && cj["architectures"].is_array() && !cj["architectures"].empty() &&
      cj["architectures"][0].is_string())
    hf_arch = cj["architectures"][0].get<std::string>();
  const ArchSpec* spec = nullptr;
  try {
    spec = &arch_spec_hf(hf_arch);
  } catch (const Error& e) {
    fail("{}: {}", cfg_path, e.what());
  }
  c.arch = spec->name;

  auto num = [&](const char* key, double def, bool required) -> double {
    if (!cj.contains(key) || cj[key].is_null()) {
      if (required) fail("{}: missing {}", cfg_path, key);
      return def;
    }
    if (!cj[key].is_number()) fail("{}: {} is not a number", cfg_path, key);
    return cj[key].get<double>();
  };
  auto count = [&](const char* key, int def, bool required) -> int {
    double v = num(key, def, required);
    // Range first: casting 1e300 (or NaN) to an integer is undefined behaviour.
    if (!(v > 0 && v <= (double)(1 << 30)) || v != std::floor(v))
      fail("{}: {} = {} is not a positive integer up to 2^30", cfg_path, key, v);
    return (int)v;
  };
  c.dim = count("hidden_size", 0, true);
  c.hidden_dim = count("intermediate_size", 0, true);
  c.n_layers = count("num_hidden_layers", 0, true);
  c.n_heads = count("num_attention_heads", 0, true);
  c.n_kv_heads = count("num_key_value_heads", c.n_heads, false);
  if (c.dim % c.n_heads != 0 && !cj.contains("head_dim"))
    fail("{}: num_attention_heads {} does not divide hidden_size {}", cfg_path, c.n_heads, c.dim);
  c.head_dim = count("head_dim", c.dim / c.n_heads, false);
  c.n_ctx = count("max_position_embeddings", 2048, false);
  c.norm_eps = (float)positive_real(num("rms_norm_eps", 1e-6, false), cfg_path, "rms_norm_eps");
  c.rope_theta = (float)positive_real(num("rope_theta", 10000.0, false), cfg_path, "rope_theta");
  const int vocab_size = count("vocab_size", 0, true);
  if (cj.contains("rope_scaling") && !cj["rope_scaling"].is_null()) {
    const auto& rs = cj["rope_scaling"];
    if (!rs.is_object()) fail("{}: rope_scaling must be an object or null", cfg_path);
    std::string type;
    for (const char* k : {"type", "rope_type"})
      if (type.empty() && rs.contains(k)) {
        if (!rs[k].is_string()) fail("{}: rope_scaling.{} must be a string", cfg_path, k);
        type = rs[k].get<std::string>();
      }
    if (type != "linear") fail("{}: unsupported rope_scaling type '{}' (supported: linear)", cfg_path, type);
    double factor = rs.contains("factor") && rs["factor"].is_number() ? rs["factor"].get<double>() : 0.0;
    if (!(factor > 0 && factor < 3e38)) fail("{}: rope_scaling.factor must be a positive finite number", cfg_path);
    c.rope_freq_scale = (float)(1.0 / factor);
  }
  apply_arch_defaults(c, *spec);
  c.rope = RopeLayout::NeoX;  // Hugging Face q/k layout, not permuted
  if (spec->attn_scale == AttnScaleRule::Gemma3 && cj.contains("query_pre_attn_scalar"))
    c.attn_scale = 1.0f / std::sqrt((float)positive_real(num("query_pre_attn_scalar", 0, true), cfg_path,
                                                         "query_pre_attn_scalar"));
  if (spec->swa_pattern > 0 && cj.contains("sliding_window") && !cj["sliding_window"].is_null()) {
    c.sliding_window = count("sliding_window", 0, true);
    if (cj.contains("layer_types") && cj["layer_types"].is_array()) {  // newer configs: one entry per layer
      const auto& lt = cj["layer_types"];
      if ((int)lt.size() != c.n_layers) fail("{}: layer_types has {} entries for {} layers", cfg_path, lt.size(), c.n_layers);
      c.swa_layers.assign(c.n_layers, 0);
      for (int l = 0; l < c.n_layers; ++l)
        c.swa_layers[l] = lt[l].is_string() && lt[l].get<std::string>() == "sliding_attention";
    } else {
      const int pattern = cj.contains("sliding_window_pattern") ? count("sliding_window_pattern", 0, true)
                                                                 : spec->swa_pattern;
      set_swa_pattern(c, pattern);
    }
    if (cj.contains("rope_local_base_freq"))
      c.rope_theta_swa = (float)positive_real(num("rope_local_base_freq", 0, true), cfg_path, "rope_local_base_freq");
  }
  if (spec->softcap && cj.contains("final_logit_softcapping") && !cj["final_logit_softcapping"].is_null())
    c.logit_softcap = (float)positive_real(num("final_logit_softcapping", 0, true), cfg_path, "final_logit_softcapping");

  // Weights: one file or shards listed by the index.
  std::map<std::string, std::vector<std::string>> shard_names;  // shard file -> tensor names it must hold
  const fs::path single = d / "model.safetensors", index = d / "model.safetensors.index.json";
  if (fs::exists(single)) {
    shard_names[single.filename().string()];
  } else if (fs::exists(index)) {
    const nlohmann::json ij = read_json(index.string());
    if (!ij.contains("weight_map") || !ij["weight_map"].is_object())
      fail("{}: no weight_map object", index.string());
    for (auto it = ij["weight_map"].begin(); it != ij["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail("{}: weight_map entry {} is not a file name", index.string(), it.key());
      const std::string file = it.value().get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "..")
        fail("{}: weight_map entry {} names an invalid file '{}'", index.string(), it.key(), file);
      shard_names[file].push_back(it.key());
    }
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", dir);
  }

  // GPTQ / AWQ checkpoints (config.json quantization_config): the Linears' qweight/qzeros/scales[/g_idx] are
  // dequantized to f32 at load (io/export_hf.h has the layouts).
  const HfQuantConfig hq = hf_quant_config(cj, cfg_path);
  std::vector<Tensor> dequantized;
  std::vector<std::pair<SafetensorsTensor, std::string>> src;  // tensor, GGUF name
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [file, names] : shard_names) {
    const std::string sp = (d / file).string();
    SafetensorsFile sf = read_safetensors(sp);
    for (const auto& n : names)
      if (!sf.find(n)) fail("{}: tensor {} listed in the index is missing", sp, n);
    for (const auto& t : sf.tensors) {
      if (!hq.method.empty()) {
        if (t.name.ends_with(".qweight")) {
          const std::string base = t.name.substr(0, t.name.size() - 8);
          std::string g = gguf_name(base + ".weight", *spec);
          if (g.empty()) continue;
          Tensor qt = load_quantized_linear(sf, base, hq, sp);
          qt.name = g;
          if (!shapes.emplace(g, qt.ne).second) fail("{}: tensor {} appears twice", sp, base + ".weight");
          dequantized.push_back(std::move(qt));
          continue;
        }
        if (t.name.ends_with(".qzeros") || t.name.ends_with(".scales") || t.name.ends_with(".g_idx")) continue;
      }
      std::string g = gguf_name(t.name, *spec);
      if (g.empty()) continue;
      if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16")
        fail("{}: tensor {} has dtype {} (supported: F32, F16, BF16)", sp, t.name, t.dtype);
      if (t.shape.empty() || t.shape.size() > 4) fail("{}: tensor {} has {} dimensions", sp, t.name, t.shape.size());
      std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
      if (!shapes.emplace(g, ne).second) fail("{}: tensor {} appears twice", sp, t.name);
      src.emplace_back(t, g);
    }
    if (!m.map) m.map = sf.map;
    else m.extra_maps.push_back(sf.map);
  }
  c.qkv_bias = shapes.count("blk.0.attn_q.bias") > 0;
  c.tied_output = shapes.count("output.weight") == 0;

  // Tokenizer: tokenizer.json, special tokens from tokenizer_config.json, then config.json.
  const fs::path tok_json = d / "tokenizer.json";
  if (!fs::exists(tok_json)) fail("{}: no tokenizer (tokenizer.json missing)", dir);
  m.tok = tokenizer_from_json(tok_json.string());
  const fs::path tok_cfg = d / "tokenizer_config.json";
  nlohmann::json tc = fs::exists(tok_cfg) ? read_json(tok_cfg.string()) : nlohmann::json::object();
  if (!tc.is_object()) tc = nlohmann::json::object();
  if (tc.contains("bos_token")) m.tok.bos_id = special_id(tc["bos_token"], m.tok);
  if (tc.contains("eos_token")) m.tok.eos_id = special_id(tc["eos_token"], m.tok);
  if (tc.contains("pad_token") && special_id(tc["pad_token"], m.tok) >= 0)
    m.tok.pad_id = special_id(tc["pad_token"], m.tok);
  if (tc.contains("unk_token") && special_id(tc["unk_token"], m.tok) >= 0)
    m.tok.unk_id = special_id(tc["unk_token"], m.tok);
  if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean()) m.tok.add_bos = tc["add_bos_token"].get<bool>();
  if (tc.contains("add_eos_token") && tc["add_eos_token"].is_boolean()) m.tok.add_eos = tc["add_eos_token"].get<bool>();
  if (tc.contains("chat_template") && tc["chat_template"].is_string())
    m.tok.chat_template = tc["chat_template"].get<std::string>();
  auto cfg_id = [&](const char* key) -> int32_t {
    return cj.contains(key) && cj[key].is_number_integer() ? cj[key].get<int32_t>() : -1;
  };
  if (m.tok.bos_id < 0) m.tok.bos_id = cfg_id("bos_token_id");
  if (m.tok.eos_id < 0) m.tok.eos_id = cfg_id("eos_token_id");
  // The embedding may have more rows than the tokenizer has tokens: pad as llama.cpp's converter does.
  if ((int64_t)m.tok.tokens.size() > vocab_size)
    fail("{}: tokenizer has {} tokens but vocab_size is {}", dir, m.tok.tokens.size(), vocab_size);
  if (!m.tok.token_types.empty()) m.tok.token_types.resize(m.tok.tokens.size(), 1);
  if (!m.tok.scores.empty()) m.tok.scores.resize(m.tok.tokens.size(), 0.0f);
  for (int i = (int)m.tok.tokens.size(); i < vocab_size; ++i) {
    m.tok.tokens.push_back("[PAD" + std::to_string(i) + "]");
    if (!m.tok.token_types.empty()) m.tok.token_types.push_back(5);  // unused
    if (!m.tok.scores.empty()) m.tok.scores.push_back(0.0f);
  }
  c.n_vocab = vocab_size;

  validate_model_shapes(dir, c, shapes);

  for (Tensor& t : dequantized) {
    t.data = t.owned.data();
    std::string name = t.name;
    m.tensors.emplace(name, std::move(t));
  }
  for (auto& [st, g] : src) {
    Tensor t;
    t.name = g;
    t.ne.assign(st.shape.rbegin(), st.shape.rend());
    t.raw = st.data;  // F32/F16/BF16 bytes are ggml's layout too
    t.raw_bytes = st.nbytes;
    const int64_t n = st.numel();
    if (st.dtype == "F32") {
      t.src_type = GgmlType::F32;
      if (reinterpret_cast<uintptr_t>(st.data) % alignof(float) == 0) {
        t.data = reinterpret_cast<const float*>(st.data);
      } else {
        t.owned.resize((size_t)n);
        std::memcpy(t.owned.data(), st.data, st.nbytes);
        t.data = t.owned.data();
      }
    } else {
      t.src_type = st.dtype == "F16" ? GgmlType::F16 : GgmlType::BF16;
      t.owned.resize((size_t)n);
      dequantize(t.src_type, st.data, t.owned.data(), n);
      t.data = t.owned.data();
    }
    // Gemma's RMSNorm computes x * (1 + w): stored as w + 1, as llama.cpp's converter writes GGUF files.
    if (spec->hf_norm_offset != 0.0f && g.ends_with("norm.weight")) {
      if (t.owned.empty()) t.owned.assign(t.data, t.data + n);
      for (float& v : t.owned) v += spec->hf_norm_offset;
      t.data = t.owned.data();
      t.raw = nullptr;  // the bytes in the file are not these values
      t.raw_bytes = 0;
      t.src_type = GgmlType::F32;
    }
    m.tensors.emplace(g, std::move(t));
  }

  // Synthesized metadata (GGUF key names).
  const std::string a = c.arch;
  m.meta = {
      {"general.architecture", GgufValue::str(a)},
      {"general.name", GgufValue::str(fs::absolute(d).lexically_normal().filename().string())},
      {a + ".context_length", GgufValue::u32(c.n_ctx)},
      {a + ".embedding_length", GgufValue::u32(c.dim)},
      {a + ".block_count", GgufValue::u32(c.n_layers)},
      {a + ".feed_forward_length", GgufValue::u32(c.hidden_dim)},
      {a + ".attention.head_count", GgufValue::u32(c.n_heads)},
      {a + ".attention.head_count_kv", GgufValue::u32(c.n_kv_heads)},
      {a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(c.norm_eps)},
      {a + ".rope.freq_base", GgufValue::f32(c.rope_theta)},
  };
  if (c.head_dim * c.n_heads != c.dim) m.meta.push_back({a + ".attention.key_length", GgufValue::u32(c.head_dim)});
  return m;  // (the window, its layers and the local RoPE base are written by gguf_metadata from the config)
}

LoadedModel load_model(const std::string& path, const LoadOptions& opts) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail("{}: no such file", path);
  if (fs::is_directory(st)) return load_hf_model(path);
  char magic[4] = {};
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  in.read(magic, 4);
  const std::streamsize got = in.gcount();
  if (got == 0) fail("{}: empty file (0 bytes), not a model", path);
  // A .gguf file with another magic is a broken GGUF file (read_gguf names the problem), not llama2.c.
  if ((got == 4 && std::memcmp(magic, "GGUF", 4) == 0) || fs::path(path).extension() == ".gguf")
    return load_gguf_model(path, opts.compute);
  std::string tok = opts.tokenizer_path;
  if (tok.empty()) tok = (fs::path(path).parent_path() / "tokenizer.bin").string();
  return load_llama2c_model(path, tok);
}

nlohmann::json model_config_json(const ModelConfig& g) {
  return {{"arch", g.arch}, {"n_vocab", g.n_vocab}, {"dim", g.dim}, {"n_layers", g.n_layers},
         {"n_heads", g.n_heads}, {"n_kv_heads", g.n_kv_heads}, {"head_dim", g.head_dim},
         {"hidden_dim", g.hidden_dim}, {"n_ctx", g.n_ctx}, {"norm_eps", g.norm_eps},
         {"rope_theta", g.rope_theta}, {"rope_freq_scale", g.rope_freq_scale},
         {"rope_layout", g.rope == RopeLayout::NeoX ? "neox" : "interleaved"},
         {"qkv_bias", g.qkv_bias}, {"tied_output", g.tied_output}, {"post_norms", g.post_norms},
         {"activation", activation_name(g.act)}, {"qk_norm", g.qk_norm}, {"embed_scale", g.embed_scale},
         {"attn_scale", g.attn_scale}, {"sliding_window", g.sliding_window},
         {"local_layers", g.swa_layers}, {"rope_theta_local", g.rope_theta_swa},
         {"logit_softcap", g.logit_softcap}};
}

}  // namespace ctrust
