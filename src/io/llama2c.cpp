// llama2.c legacy checkpoint: 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len; a negative vocab_size means an untied classifier follows), then float32 tensors in llama2.c order:
// token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis_real, freq_cis_imag
// (seq_len*head_size/2 each, skipped), wcls (only if untied). Tensors are zero-copy views into the map.
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "io/model_file.h"
#include "io/tokenizer.h"

namespace ctrust {

LoadedModel load_llama2c_model(const std::string& path, const std::string& tokenizer_path) {
  auto map = std::make_shared<MappedFile>(path);
  if (map->size() < 28) fail("{}: llama2.c checkpoint too small for its 28-byte header ({} bytes)", path, map->size());
  int32_t h[7];
  std::memcpy(h, map->data(), sizeof h);
  const int64_t dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3], n_kv_heads = h[4], seq_len = h[6];
  const bool tied = h[5] > 0;
  const int64_t vocab = h[5] < 0 ? -(int64_t)h[5] : h[5];
  constexpr int64_t kMax = 1 << 20;
  auto check = [&](const char* what, int64_t v) {
    if (v <= 0 || v > kMax) fail("{}: llama2.c header: {} = {} is out of range (not a llama2.c checkpoint?)", path, what, v);
  };
  check("dim", dim);
  check("hidden_dim", hidden);
  check("n_layers", n_layers);
  check("n_heads", n_heads);
  check("n_kv_heads", n_kv_heads);
  check("vocab_size", vocab);
  check("seq_len", seq_len);
  if (dim % n_heads != 0) fail("{}: llama2.c header: dim {} is not a multiple of n_heads {}", path, dim, n_heads);
  if (n_heads % n_kv_heads != 0)
    fail("{}: llama2.c header: n_heads {} is not a multiple of n_kv_heads {}", path, n_heads, n_kv_heads);
  const int64_t head_dim = dim / n_heads;
  if (head_dim % 2 != 0) fail("{}: llama2.c header: head size {} is odd (RoPE needs pairs)", path, head_dim);
  const int64_t kv_dim = n_kv_heads * head_dim;

  LoadedModel lm;
  lm.path = path;
  lm.format = "llama2c";
  ModelConfig& c = lm.cfg;
  c.arch = "llama";
  c.n_vocab = (int)vocab;
  c.dim = (int)dim;
  c.n_layers = (int)n_layers;
  c.n_heads = (int)n_heads;
  c.n_kv_heads = (int)n_kv_heads;
  c.head_dim = (int)head_dim;
  c.hidden_dim = (int)hidden;
  c.n_ctx = (int)seq_len;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_freq_scale = 1.0f;
  c.rope = RopeLayout::Interleaved;
  c.qkv_bias = false;
  c.tied_output = tied;

  // The size the header implies, computed before anything is allocated (a 28-byte file can claim terabytes;
  // 128-bit arithmetic: every field is at most 2^20, so no product or sum overflows).
  {
    using u128 = unsigned __int128;
    const u128 D = (u128)dim, H = (u128)hidden, L = (u128)n_layers, V = (u128)vocab, KV = (u128)kv_dim;
    const u128 per_layer = D /*attn_norm*/ + D * D /*wq*/ + 2 * D * KV /*wk, wv*/ + D * D /*wo*/ + D /*ffn_norm*/ +
                           3 * D * H /*w1, w2, w3*/;
    const u128 floats = D * V + L * per_layer + D + (u128)seq_len * (u128)head_dim /*freq_cis real + imag*/ +
                        (tied ? 0 : D * V);
    const u128 need = 28 + 4 * floats;
    if (need != (u128)map->size()) {
      const std::string need_s = need > (u128)INT64_MAX ? std::string("more than 2^63") : std::to_string((uint64_t)need);
      fail("{}: llama2.c checkpoint size mismatch: the header (dim {}, hidden {}, layers {}, heads {}/{}, vocab {}{}, "
           "seq_len {}) needs {} bytes, the file has {}",
           path, dim, hidden, n_layers, n_heads, n_kv_heads, vocab, tied ? "" : " untied", seq_len, need_s,
           map->size());
    }
  }

  // Lay out every tensor (the file holds exactly these bytes: checked above).
  int64_t off = 28;
  std::vector<std::pair<std::string, int64_t>> offsets;
  auto add = [&](const std::string& name, std::vector<int64_t> ne) {
    Tensor t;
    t.name = name;
    t.ne = std::move(ne);
    t.src_type = GgmlType::F32;
    t.raw_bytes = (size_t)t.numel() * 4;
    offsets.emplace_back(name, off);  // data/raw are set after the size check
    off += t.numel() * 4;
    lm.tensors.emplace(name, std::move(t));
  };
  auto blk = [](int64_t l, const char* n) { return fmt::format("blk.{}.{}.weight", l, n); };
  add("token_embd.weight", {dim, vocab});
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "attn_norm"), {dim});
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "attn_q"), {dim, dim});
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "attn_k"), {dim, kv_dim});
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "attn_v"), {dim, kv_dim});
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "attn_output"), {dim, dim});
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "ffn_norm"), {dim});
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "ffn_gate"), {dim, hidden});  // w1
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "ffn_down"), {hidden, dim});  // w2
  for (int64_t l = 0; l < n_layers; ++l) add(blk(l, "ffn_up"), {dim, hidden});    // w3
  add("output_norm.weight", {dim});
  off += 2 * seq_len * (head_dim / 2) * 4;  // freq_cis_real, freq_cis_imag
  if (!tied) add("output.weight", {dim, vocab});
  if ((uint64_t)off != map->size()) fail("{}: llama2.c layout error ({} bytes laid out, file {})", path, off, map->size());
  for (const auto& [name, o] : offsets) {
    Tensor& t = lm.tensors.at(name);
    t.raw = map->data() + o;
    t.data = reinterpret_cast<const float*>(t.raw);
  }
  lm.map = map;

  // Synthesized metadata (the GGUF exporter derives the rest from cfg and tok).
  lm.meta.push_back({"general.architecture", GgufValue::str("llama")});
  lm.meta.push_back({"general.name", GgufValue::str(std::filesystem::path(path).stem().string())});
  lm.meta.push_back({"general.file_type", GgufValue::u32(0)});

  lm.tok = tokenizer_from_llama2c(tokenizer_path);
  if ((int64_t)lm.tok.tokens.size() != vocab)
    fail("{}: tokenizer {} has {} tokens, the checkpoint's vocab_size is {}", path, tokenizer_path,
         lm.tok.tokens.size(), vocab);
  return lm;
}

}  // namespace ctrust
