#include "report/model_info.h"

#include <map>

#include <fmt/format.h>

#include "io/config_json.h"
#include "io/gguf.h"

namespace ctrust {

using json = nlohmann::json;

namespace {

// A metadata value as JSON (long arrays summarized: tokenizer vocabularies have ~50k entries).
json value_json(const GgufValue& v, bool full) {
  switch (v.type) {
    case GgufType::STRING: return v.s;
    case GgufType::BOOL: return v.u != 0;
    case GgufType::FLOAT32: case GgufType::FLOAT64: return v.f;
    case GgufType::INT8: case GgufType::INT16: case GgufType::INT32: case GgufType::INT64: return v.i;
    case GgufType::ARRAY: {
      if (!full && v.arr.size() > 16) return fmt::format("[array of {} values]", v.arr.size());
      json a = json::array();
      for (const auto& e : v.arr) a.push_back(value_json(e, full));
      return a;
    }
    default: return v.u;
  }
}

struct Totals {
  int64_t params = 0;
  uint64_t tensor_bytes = 0;  // what llama.cpp's "model size" counts (BPW = 8 x this / params)
  std::map<std::string, int> types;
  std::string recipe;
};

Totals totals(const LoadedModel& m) {
  Totals t;
  for (const auto& [name, x] : m.tensors) {
    t.params += x.numel();
    t.tensor_bytes += ggml_nbytes(x.src_type, x.numel());
    t.types[ggml_type_name(x.src_type)]++;
  }
  for (const auto& kv : m.meta)
    if (kv.key == "ctrust.recipe") t.recipe = kv.value.as_str();
  return t;
}

}  // namespace

json model_info_json(const LoadedModel& m) {
  const Totals t = totals(m);
  json j;
  j["path"] = m.path;
  j["format"] = m.format;
  j["config"] = model_config_json(m.cfg);
  j["tokenizer"] = {{"model", m.tok.model}, {"pre", m.tok.pre}, {"n_tokens", m.tok.tokens.size()},
                    {"bos_id", m.tok.bos_id}, {"eos_id", m.tok.eos_id}, {"add_bos", m.tok.add_bos}};
  j["n_params"] = t.params;
  j["tensor_bytes"] = t.tensor_bytes;
  j["bpw"] = t.params > 0 ? 8.0 * double(t.tensor_bytes) / double(t.params) : 0.0;
  j["n_tensors"] = m.tensors.size();
  j["tensor_types"] = t.types;
  json meta = json::object();
  for (const auto& kv : m.meta) meta[kv.key] = value_json(kv.value, false);
  j["metadata"] = meta;
  j["recipe"] = t.recipe.empty() ? json(nullptr) : json::parse(t.recipe, nullptr, false);
  return j;
}

std::string model_info_text(const LoadedModel& m) {
  const ModelConfig& g = m.cfg;
  const Totals t = totals(m);
  std::string s = fmt::format("model        {}\nformat       {}\narchitecture {}\n", m.path, m.format, g.arch);
  s += fmt::format("parameters   {:.2f} M in {} tensors\n", t.params / 1e6, m.tensors.size());
  std::string tl;
  for (const auto& [k, n] : t.types) tl += fmt::format("{}{} x{}", tl.empty() ? "" : ", ", k, n);
  s += fmt::format("tensor types {}\n", tl);
  s += fmt::format("vocab {}  dim {}  layers {}  heads {}/{} (kv)  head_dim {}  ffn {}  ctx {}\n", g.n_vocab, g.dim,
                   g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim, g.hidden_dim, g.n_ctx);
  s += fmt::format("norm_eps {}  rope theta {} scale {} ({})  qkv_bias {}  tied_output {}\n", g.norm_eps,
                   g.rope_theta, g.rope_freq_scale, g.rope == RopeLayout::NeoX ? "neox" : "interleaved", g.qkv_bias,
                   g.tied_output);
  if (g.post_norms || g.qk_norm || g.act != Activation::SiLU || g.embed_scale != 1.0f || g.sliding_window > 0 ||
      g.logit_softcap > 0) {
    int local = 0;
    for (unsigned char x : g.swa_layers) local += x;
    s += fmt::format("post_norms {}  activation {}  qk_norm {}  embed_scale {}  sliding_window {} ({} local layers, "
                     "rope theta {})  softcap {}\n",
                     g.post_norms, activation_name(g.act), g.qk_norm, g.embed_scale, g.sliding_window, local,
                     g.rope_theta_swa, g.logit_softcap);
  }
  s += fmt::format("tokenizer    {}{} ({} tokens, bos {}, eos {}, add_bos {})\n", m.tok.model,
                   m.tok.pre.empty() ? "" : "/" + m.tok.pre, m.tok.tokens.size(), m.tok.bos_id, m.tok.eos_id,
                   m.tok.add_bos);
  if (!t.recipe.empty()) s += fmt::format("recipe       {}\n", t.recipe);
  s += "metadata:\n";
  for (const auto& kv : m.meta) {
    std::string v = value_json(kv.value, false).dump();
    if (v.size() > 100) v = v.substr(0, 97) + "...";
    s += fmt::format("  {:<44} {}\n", kv.key, v);
  }
  return s;
}

json tokens_json(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  json pieces = json::array();
  for (int32_t id : ids) pieces.push_back(tok.piece(id));
  return {{"ids", ids}, {"pieces", pieces}, {"n_tokens", ids.size()}};
}

std::string tokens_text(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string o;
  for (int32_t id : ids) o += fmt::format("{:>7} -> '{}'\n", id, tok.piece(id));
  return o + fmt::format("{} tokens\n", ids.size());
}

}  // namespace ctrust
