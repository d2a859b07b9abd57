// Test helper: writes stories260K (from its GGUF file) as a Hugging Face Llama folder, the way
// transformers would store it: config.json, tokenizer.json (BPE with byte fallback, merges derived from the
// SentencePiece scores as transformers' SentencePieceExtractor does), tokenizer_config.json and
// model.safetensors, or three shards + model.safetensors.index.json. q/k rows are permuted back from
// GGUF's interleaved RoPE layout to Hugging Face's NeoX layout (the inverse of llama.cpp's
// convert_hf_to_gguf.py permute), so a correct loader + NeoX RoPE gives the same logits as the GGUF file.
#pragma once
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "test_paths.h"

namespace ctrust::test {

// GGUF row order (interleaved pairs 2i, 2i+1 per head) -> Hugging Face row order (pairs i, i + d/2):
// HF row h*d + j*d/2 + i = GGUF row h*d + 2i + j. Rows of `cols` floats.
inline std::vector<float> interleaved_to_neox(const float* w, int64_t rows, int64_t cols, int n_head) {
  std::vector<float> out((size_t)(rows * cols));
  const int64_t d = rows / n_head;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(&out[(size_t)((h * d + j * (d / 2) + i) * cols)], w + (h * d + 2 * i + j) * cols,
                    (size_t)cols * sizeof(float));
  return out;
}

// Hugging Face name of a GGUF tensor name.
inline std::string hf_name(const std::string& g) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  static const std::map<std::string, std::string> m = {
      {"attn_norm.weight", "input_layernorm.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},   {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},   {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},    {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"}};
  const size_t a = g.find('.'), b = g.find('.', a + 1);
  return "model.layers." + g.substr(a + 1, b - a - 1) + "." + m.at(g.substr(b + 1));
}

// The f32 values of GGUF tensor `t` in Hugging Face row order (q/k un-permuted).
inline std::vector<float> hf_values(const GgufFile& f, const GgufTensorInfo& t) {
  const float* w = reinterpret_cast<const float*>(t.data);
  const int64_t cols = t.ne[0], rows = t.numel() / cols;
  if (t.name.find(".attn_q.weight") != std::string::npos)
    return interleaved_to_neox(w, rows, cols, (int)f.get_int("llama.attention.head_count", 0));
  if (t.name.find(".attn_k.weight") != std::string::npos)
    return interleaved_to_neox(w, rows, cols, (int)f.get_int("llama.attention.head_count_kv", 0));
  return std::vector<float>(w, w + t.numel());
}

// UTF-8 code point boundaries of s (excluding 0 and s.size()).
inline std::vector<size_t> utf8_splits(const std::string& s) {
  std::vector<size_t> r;
  for (size_t i = 1; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) r.push_back(i);
  return r;
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  o << text;
}

// Writes the folder `dir` (created; existing files replaced). dtype: "F32", "F16" or "BF16".
inline std::string write_stories_hf(const std::string& dir, const std::string& dtype = "F32", bool sharded = false) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(dir)) fs::remove(e.path());
  const GgufFile f = read_gguf(stories_gguf());
  auto ival = [&](const char* k) { return f.get_int(k, 0); };

  nlohmann::ordered_json cfg = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", ival("llama.embedding_length")},
      {"intermediate_size", ival("llama.feed_forward_length")},
      {"num_hidden_layers", ival("llama.block_count")},
      {"num_attention_heads", ival("llama.attention.head_count")},
      {"num_key_value_heads", ival("llama.attention.head_count_kv")},
      {"max_position_embeddings", ival("llama.context_length")},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"rope_scaling", nullptr},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", f.find_tensor("output.weight") == nullptr},
      {"vocab_size", f.find("tokenizer.ggml.tokens")->arr.size()},
      {"bos_token_id", ival("tokenizer.ggml.bos_token_id")},
      {"eos_token_id", ival("tokenizer.ggml.eos_token_id")},
      {"torch_dtype", dtype == "F32" ? "float32" : dtype == "F16" ? "float16" : "bfloat16"}};
  write_text(dir + "/config.json", cfg.dump(2));

  // tokenizer.json: SentencePiece BPE as transformers' LlamaConverter writes it.
  const auto& toks = f.find("tokenizer.ggml.tokens")->arr;
  const auto& scores = f.find("tokenizer.ggml.scores")->arr;
  const auto& types = f.find("tokenizer.ggml.token_type")->arr;
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  std::map<std::string, int> id;
  for (size_t i = 0; i < toks.size(); ++i) {
    vocab[toks[i].s] = i;
    id[toks[i].s] = (int)i;
  }
  struct Merge {
    std::string l, r;
    double score;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < toks.size(); ++i) {
    const std::string& t = toks[i].s;
    std::vector<Merge> local;
    for (size_t cut : utf8_splits(t)) {
      std::string l = t.substr(0, cut), r = t.substr(cut);
      if (id.count(l) && id.count(r)) local.push_back({l, r, scores[i].f});
    }
    std::stable_sort(local.begin(), local.end(), [&](const Merge& a, const Merge& b) {
      return std::make_pair(id[a.l], id[a.r]) < std::make_pair(id[b.l], id[b.r]);
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.score > b.score; });
  nlohmann::ordered_json jm = nlohmann::ordered_json::array();
  for (const auto& m : merges) jm.push_back(m.l + " " + m.r);
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (size_t i = 0; i < toks.size(); ++i)
    if (types[i].i == 2 || types[i].i == 3)
      added.push_back({{"id", i}, {"content", toks[i].s}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", true}});
  const std::string sp = "\xe2\x96\x81";  // U+2581
  nlohmann::ordered_json tj = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", sp}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", sp}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", jm}}}};
  write_text(dir + "/tokenizer.json", tj.dump(2));
  nlohmann::ordered_json tc = {{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", "<s>"},
                               {"eos_token", "</s>"},   {"unk_token", "<unk>"},   {"pad_token", nullptr},
                               {"tokenizer_class", "LlamaTokenizer"}};
  write_text(dir + "/tokenizer_config.json", tc.dump(2));

  // Weights, converted to dtype, in HF names and shapes (outermost first).
  struct Item {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
    int shard;
  };
  std::vector<Item> items;
  const int64_t n_layers = ival("llama.block_count");
  for (const auto& t : f.tensors) {
    std::vector<float> v = hf_values(f, t);
    Item it{hf_name(t.name), std::vector<int64_t>(t.ne.rbegin(), t.ne.rend()), {}, 0};
    const GgmlType gt = dtype == "F32" ? GgmlType::F32 : dtype == "F16" ? GgmlType::F16 : GgmlType::BF16;
    it.bytes.resize(ggml_nbytes(gt, (int64_t)v.size()));
    quantize(gt, v.data(), it.bytes.data(), (int64_t)v.size());
    // Shards: embedding + first layers | middle layers | last layers + norm + head.
    int layer = t.name.rfind("blk.", 0) == 0 ? std::atoi(t.name.c_str() + 4) : -1;
    if (t.name == "token_embd.weight") it.shard = 0;
    else if (layer < 0) it.shard = 2;
    else it.shard = (int)(layer * 3 / n_layers);
    items.push_back(std::move(it));
  }
  const int n_shards = sharded ? 3 : 1;
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  size_t total = 0;
  for (int s = 0; s < n_shards; ++s) {
    const std::string file = sharded ? "model-0000" + std::to_string(s + 1) + "-of-00003.safetensors"
                                     : "model.safetensors";
    std::vector<SafetensorsWriteTensor> w;
    for (const auto& it : items)
      if (!sharded || it.shard == s) {
        w.push_back({it.name, dtype, it.shape, it.bytes.data()});
        weight_map[it.name] = file;
        total += it.bytes.size();
      }
    write_safetensors(dir + "/" + file, w, {{"format", "pt"}});
  }
  if (sharded) {
    nlohmann::ordered_json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text(dir + "/model.safetensors.index.json", idx.dump(2));
  }
  return dir;
}

}  // namespace ctrust::test
