// load_model: format dispatch; load_gguf_model: GGUF -> LoadedModel (config from <arch>.* keys, tensors
// dequantized to f32, tokenizer from tokenizer.ggml.*); shape validation shared by every loader.
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "io/model_file.h"
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

LoadedModel load_gguf_model(const std::string& path) {
  GgufFile f = read_gguf(path);
  LoadedModel m;
  m.path = path;
  m.format = "gguf";
  m.map = f.map;

  ModelConfig& c = m.cfg;
  const std::string arch = f.get_str("general.architecture");
  if (arch.empty()) fail("{}: no general.architecture key", path);
  if (arch != "llama" && arch != "mistral" && arch != "qwen2")
    fail("{}: unsupported architecture {} (supported: llama, mistral, qwen2)", path, arch);
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
  c.norm_eps = (float)f.get_float(arch + ".attention.layer_norm_rms_epsilon", 1e-5);
  c.rope_theta = (float)f.get_float(arch + ".rope.freq_base", 10000.0);
  const int rope_dims = opt_int("rope.dimension_count", c.head_dim);
  if (rope_dims != c.head_dim)
    fail("{}: partial rotary embedding ({} of {} head dimensions) is not supported", path, rope_dims, c.head_dim);
  const std::string scaling = f.get_str(arch + ".rope.scaling.type", "none");
  if (scaling == "linear") {
    double factor = f.get_float(arch + ".rope.scaling.factor", 1.0);
    if (!(factor > 0)) fail("{}: {}.rope.scaling.factor {} must be positive", path, arch, factor);
    c.rope_freq_scale = (float)(1.0 / factor);
  } else if (scaling != "none") {
    fail("{}: unsupported rope scaling type {} (supported: none, linear)", path, scaling);
  }
  c.rope = arch == "qwen2" ? RopeLayout::NeoX : RopeLayout::Interleaved;
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.tied_output = f.find_tensor("output.weight") == nullptr;

  if (!f.find("tokenizer.ggml.tokens")) fail("{}: no tokenizer (tokenizer.ggml.tokens missing)", path);
  m.tok = tokenizer_from_gguf(f);
  c.n_vocab = (int)m.tok.tokens.size();

  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& t : f.tensors) shapes[t.name] = t.ne;
  validate_model_shapes(path, c, shapes);

  for (const auto& ti : f.tensors) {
    const GgmlTypeInfo* info = ggml_type_info((uint32_t)ti.type);
    if (!info->can_dequantize) fail("{}: tensor {} has type {}, which ctrust cannot read", path, ti.name, info->name);
    Tensor t;
    t.name = ti.name;
    t.ne = ti.ne;
    t.src_type = ti.type;
    t.raw = ti.data;
    t.raw_bytes = ti.nbytes;
    if (ti.type == GgmlType::F32 && reinterpret_cast<uintptr_t>(ti.data) % alignof(float) == 0) {
      t.data = reinterpret_cast<const float*>(ti.data);
    } else {
      t.owned.resize((size_t)ti.numel());
      dequantize(ti.type, ti.data, t.owned.data(), ti.numel());
      t.data = t.owned.data();
    }
    m.tensors.emplace(ti.name, std::move(t));
  }
  m.meta = std::move(f.kv);
  return m;
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
  if (got == 4 && std::memcmp(magic, "GGUF", 4) == 0) return load_gguf_model(path);
  std::string tok = opts.tokenizer_path;
  if (tok.empty()) tok = (fs::path(path).parent_path() / "tokenizer.bin").string();
  return load_llama2c_model(path, tok);
}

}  // namespace ctrust

namespace ctrust {
LoadedModel load_hf_model(const std::string& dir) { fail("{}: Hugging Face folders: not implemented yet", dir); }
}  // namespace ctrust
