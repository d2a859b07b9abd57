#include "io/export.h"

#include <algorithm>
#include <map>

#include "base/error.h"

namespace ctrust {
namespace {

// llama.cpp's LLAMA_FTYPE ids for general.file_type.
int file_type_of(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::BF16: return 32;
    default: return -1;
  }
}

// Hugging Face q/k rows use NeoX pairs (i, i + d/2) within each head; GGUF "llama" wants interleaved
// pairs (2i, 2i+1). Row h*d + 2i + j of the result is row h*d + j*d/2 + i of the input
// (the permutation of llama.cpp's convert_hf_to_gguf.py).
std::vector<float> neox_to_interleaved(const float* w, int64_t rows, int64_t cols, int n_head) {
  std::vector<float> out(rows * cols);
  int64_t d = rows / n_head;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        const float* src = w + (h * d + j * (d / 2) + i) * cols;
        std::copy(src, src + cols, out.begin() + (h * d + 2 * i + j) * cols);
      }
  return out;
}

// An HF checkpoint (NeoX pairs) written as a family whose GGUF files use interleaved pairs (io/arch.h).
bool needs_permute(const LoadedModel& m) {
  return m.cfg.rope == RopeLayout::NeoX && arch_spec(m.cfg.arch).export_permute_qk;
}

}  // namespace

std::vector<GgufKV> gguf_metadata(const LoadedModel& m) {
  const ModelConfig& c = m.cfg;
  const TokenizerData& t = m.tok;
  const std::string a = c.arch;
  std::vector<GgufKV> set = {
      {"general.architecture", GgufValue::str(a)},
      {a + ".context_length", GgufValue::u32(c.n_ctx)},
      {a + ".embedding_length", GgufValue::u32(c.dim)},
      {a + ".block_count", GgufValue::u32(c.n_layers)},
      {a + ".feed_forward_length", GgufValue::u32(c.hidden_dim)},
      {a + ".attention.head_count", GgufValue::u32(c.n_heads)},
      {a + ".attention.head_count_kv", GgufValue::u32(c.n_kv_heads)},
      {a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(c.norm_eps)},
      {a + ".rope.freq_base", GgufValue::f32(c.rope_theta)},
      {a + ".rope.dimension_count", GgufValue::u32(c.head_dim)},
      {a + ".vocab_size", GgufValue::u32(c.n_vocab)},
      {"tokenizer.ggml.model", GgufValue::str(t.model)},
      {"tokenizer.ggml.tokens", GgufValue::str_array(t.tokens)},
      {"tokenizer.ggml.add_bos_token", GgufValue::boolean(t.add_bos)},
      {"tokenizer.ggml.add_eos_token", GgufValue::boolean(t.add_eos)},
  };
  if (c.head_dim * c.n_heads != c.dim) set.push_back({a + ".attention.key_length", GgufValue::u32(c.head_dim)});
  if (c.head_dim * c.n_heads != c.dim) set.push_back({a + ".attention.value_length", GgufValue::u32(c.head_dim)});
  if (c.sliding_window > 0) {
    set.push_back({a + ".attention.sliding_window", GgufValue::u32(c.sliding_window)});
    const ArchSpec& spec = arch_spec(a);
    ModelConfig d = c;  // the family's default layer pattern; another one is written per layer (bool array)
    set_swa_pattern(d, spec.swa_pattern);
    if (d.swa_layers != c.swa_layers) {
      GgufValue v;
      v.type = GgufType::ARRAY;
      v.elem = GgufType::BOOL;
      for (unsigned char x : c.swa_layers) v.arr.push_back(GgufValue::boolean(x != 0));
      set.push_back({a + ".attention.sliding_window_pattern", v});
    }
    if (c.rope_theta_swa != spec.swa_rope_base) set.push_back({a + ".rope.freq_base_swa", GgufValue::f32(c.rope_theta_swa)});
  }
  if (c.logit_softcap > 0) set.push_back({a + ".final_logit_softcapping", GgufValue::f32(c.logit_softcap)});
  if (c.rope_freq_scale != 1.0f) {
    set.push_back({a + ".rope.scaling.type", GgufValue::str("linear")});
    set.push_back({a + ".rope.scaling.factor", GgufValue::f32(1.0f / c.rope_freq_scale)});
  }
  if (!t.pre.empty()) set.push_back({"tokenizer.ggml.pre", GgufValue::str(t.pre)});
  if (!t.scores.empty()) set.push_back({"tokenizer.ggml.scores", GgufValue::f32_array(t.scores)});
  if (!t.token_types.empty()) set.push_back({"tokenizer.ggml.token_type", GgufValue::i32_array(t.token_types)});
  if (!t.merges.empty()) set.push_back({"tokenizer.ggml.merges", GgufValue::str_array(t.merges)});
  if (t.model == "llama") set.push_back({"tokenizer.ggml.add_space_prefix", GgufValue::boolean(t.add_space_prefix)});
  if (t.bos_id >= 0) set.push_back({"tokenizer.ggml.bos_token_id", GgufValue::u32(t.bos_id)});
  if (t.eos_id >= 0) set.push_back({"tokenizer.ggml.eos_token_id", GgufValue::u32(t.eos_id)});
  if (t.unk_id >= 0) set.push_back({"tokenizer.ggml.unknown_token_id", GgufValue::u32(t.unk_id)});
  if (t.pad_id >= 0) set.push_back({"tokenizer.ggml.padding_token_id", GgufValue::u32(t.pad_id)});
  if (!t.chat_template.empty()) set.push_back({"tokenizer.chat_template", GgufValue::str(t.chat_template)});

  // The model's own keys first, in their order, with the rewritten values; then the new keys.
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < set.size(); ++i) index[set[i].key] = i;
  std::vector<GgufKV> out;
  std::vector<bool> used(set.size(), false);
  for (const GgufKV& kv : m.meta) {
    if (kv.key == "general.alignment") continue;  // the writer sets the alignment
    auto it = index.find(kv.key);
    if (it == index.end()) {
      out.push_back(kv);
    } else if (!used[it->second]) {
      out.push_back(set[it->second]);
      used[it->second] = true;
    }
  }
  for (size_t i = 0; i < set.size(); ++i)
    if (!used[i]) out.push_back(set[i]);
  return out;
}

void save_gguf(const LoadedModel& m, const std::string& path, const SaveOptions& opt) {
  std::vector<GgufKV> meta = gguf_metadata(m);
  for (const GgufKV& kv : opt.extra_meta) {
    auto it = std::find_if(meta.begin(), meta.end(), [&](const GgufKV& x) { return x.key == kv.key; });
    if (it != meta.end()) it->value = kv.value; else meta.push_back(kv);
  }
  if (opt.type) {
    int ft = file_type_of(*opt.type);
    auto it = std::find_if(meta.begin(), meta.end(), [](const GgufKV& x) { return x.key == "general.file_type"; });
    if (ft >= 0) {
      if (it != meta.end()) it->value = GgufValue::u32(ft); else meta.push_back({"general.file_type", GgufValue::u32(ft)});
    }
  }

  const bool permute = needs_permute(m);
  std::vector<std::vector<float>> permuted;  // keeps permuted copies alive until written
  permuted.reserve(m.tensors.size());
  std::vector<GgufWriteTensor> out;
  // GGUF files list the embedding first, then blocks in order, then the head: sort by (block, name).
  std::vector<const Tensor*> order;
  for (const auto& [name, t] : m.tensors) order.push_back(&t);
  auto key = [](const Tensor* t) {
    int blk = -1;
    if (t->name.rfind("blk.", 0) == 0) blk = std::atoi(t->name.c_str() + 4);
    int head = t->name.rfind("output", 0) == 0 ? 1 : 0;
    return std::make_tuple(head, blk, t->name);
  };
  std::sort(order.begin(), order.end(), [&](const Tensor* x, const Tensor* y) { return key(x) < key(y); });

  for (const Tensor* t : order) {
    GgufWriteTensor w;
    w.name = t->name;
    w.ne = t->ne;
    const float* data = t->data;
    bool is_q = t->name.find(".attn_q.") != std::string::npos;
    bool is_k = t->name.find(".attn_k.") != std::string::npos;
    bool moved = permute && (is_q || is_k);
    if (moved) {
      int heads = is_q ? m.cfg.n_heads : m.cfg.n_kv_heads;
      int64_t cols = t->ne.size() >= 2 ? t->cols() : 1;  // biases are 1-D: one column per row
      int64_t rows = t->ne.size() >= 2 ? t->rows() : t->numel();
      permuted.push_back(neox_to_interleaved(data, rows, cols, heads));
      data = permuted.back().data();
    }
    bool matrix = t->ne.size() >= 2;
    GgmlType type = GgmlType::F32;
    if (matrix && opt.type) {
      type = *opt.type;
    } else if (matrix && t->raw && !moved) {
      type = t->src_type;
    }
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
    if (t->ne[0] % info->block_size != 0) type = GgmlType::F32;  // as llama.cpp: fall back for odd rows
    w.type = type;
    if (!opt.type && matrix && t->raw && !moved && type == t->src_type) {
      w.raw = t->raw;
      if (!t->perm.empty()) {  // ctrust act-order storage: the column permutation goes with the bytes
        GgufWriteTensor p;
        p.name = t->name + ".perm";
        p.ne = {int64_t(t->perm.size())};
        p.type = GgmlType::I32;
        p.raw = reinterpret_cast<const uint8_t*>(t->perm.data());
        out.push_back(std::move(w));
        out.push_back(std::move(p));
        continue;
      }
    } else {
      if (!ggml_type_info(static_cast<uint32_t>(type))->can_quantize)
        fail("{}: cannot write tensor {} as {}", path, t->name, ggml_type_name(type));
      if (!data)  // a matrix held in its storage type (native compute mode) cannot be converted
        fail("{}: tensor {} has no f32 values to write as {} (load the model in the f32 compute mode)", path,
             t->name, ggml_type_name(type));
      w.f32 = data;
    }
    out.push_back(std::move(w));
  }
  write_gguf(path, meta, out);
}

}  // namespace ctrust
