// The loader-independent form of a model, as every stage after src/io/ sees it.
// Whatever the file format (GGUF, Hugging Face folder, llama2.c), loading produces a LoadedModel:
// a ModelConfig, the tokenizer's data, the metadata, and named tensors dequantized to f32.
// Tensor names are always GGUF's names (token_embd.weight, blk.N.attn_q.weight, ...), whatever the
// source format; see docs/architecture.md for the full list.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/mmap.h"
#include "io/arch.h"
#include "io/gguf.h"

namespace ctrust {

// The hyper-parameters, and the architecture's differences as the forward pass reads them: the loaders fill the
// fields below `tied_output` from the family's ArchSpec (io/arch.h) and the file's keys.
struct ModelConfig {
  std::string arch = "llama";  // a GGUF architecture name of io/arch.h (llama, mistral, qwen2, gemma3)
  int n_vocab = 0;
  int dim = 0;         // embedding width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;  // < n_heads means grouped-query attention
  int head_dim = 0;    // dim / n_heads unless the file says otherwise
  int hidden_dim = 0;  // FFN width
  int n_ctx = 0;       // training context length
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  float rope_freq_scale = 1.0f;  // linear position scaling (1 = none)
  RopeLayout rope = RopeLayout::Interleaved;
  bool qkv_bias = false;    // Qwen2: biases on q, k, v
  bool tied_output = false; // output head shares token_embd.weight
  bool post_norms = false;  // sandwich norms (post_attention_norm, post_ffw_norm)
  Activation act = Activation::SiLU;
  bool qk_norm = false;     // attn_q_norm / attn_k_norm over each head before RoPE
  float embed_scale = 1.0f; // embedding rows times this (Gemma: sqrtf(dim))
  float attn_scale = 0.0f;  // q.k scale; 0 = 1/sqrt(head_dim)
  int sliding_window = 0;   // local layers see the keys of the last sliding_window positions (0 = none)
  std::vector<unsigned char> swa_layers;  // [n_layers], 1 = local (sliding-window) layer; empty = all global
  float rope_theta_swa = 10000.0f;        // RoPE base / linear scale of the local layers
  float rope_freq_scale_swa = 1.0f;
  float logit_softcap = 0.0f;  // final logits = c * tanh(logits / c) (0 = none)

  bool is_local(int layer) const { return !swa_layers.empty() && swa_layers[layer]; }
};
// Fills the architecture fields of c from the family's spec: activation, norms, embedding scale, RoPE layout
// of GGUF files, attention scale rule (c.n_layers, dim, heads and head_dim must be set). Sliding windows and
// the soft-cap stay off: the loaders set them from the file's keys.
void apply_arch_defaults(ModelConfig& c, const ArchSpec& spec);
// Sets c.swa_layers from a window pattern as llama.cpp's set_swa_pattern: layer l is local iff pattern == 0 or
// l % pattern < pattern - 1 (so 1 = no local layer, 0 = every layer local).
void set_swa_pattern(ModelConfig& c, int pattern);

struct TokenizerData {
  std::string model;  // "llama" = SentencePiece BPE with byte fallback; "gpt2" = byte-level BPE
  std::string pre;    // pre-tokenizer name, as GGUF tokenizer.ggml.pre ("default", "smollm", "llama-bpe", "qwen2", ...)
  std::vector<std::string> tokens;
  std::vector<float> scores;          // llama: piece scores (merge priority); may be empty for gpt2
  std::vector<int32_t> token_types;   // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  std::vector<std::string> merges;    // gpt2: "left right", highest priority first
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;       // llama: prepend U+2581 to the text
  std::string chat_template;          // Jinja text from the file, if any
};

// How the engine multiplies by the weight matrices (docs/architecture.md, "Compute modes"):
//  F32:    every tensor is dequantized to f32 at load; products in f32 (BLAS) — exact dequantized arithmetic.
//  Native: weight matrices of GGUF files stay in their storage type (the mapped file's bytes, no f32 copy);
//          products run on typed kernels with activations rounded to 8 bits where ggml does it (llama.cpp's
//          numbers). 1-D tensors and F32 matrices are f32 in both modes. Hugging Face folders and llama2.c
//          checkpoints are always dequantized (they compute as F32 whatever the mode).
enum class ComputeMode { F32, Native };
const char* compute_mode_name(ComputeMode m);         // "f32", "native"
ComputeMode compute_mode_from_name(std::string_view s);  // throws Error naming the valid values

// One tensor, dequantized to f32 (or, in the native compute mode, a weight matrix held in its storage type:
// data null, raw set). Shapes are in ggml order: ne[0] is the innermost (contiguous)
// dimension, so a weight matrix W with `out` rows of `in` inputs has ne = {in, out}, row-major.
struct Tensor {
  std::string name;
  std::vector<int64_t> ne;
  GgmlType src_type = GgmlType::F32;  // storage type in the source file
  const float* data = nullptr;        // points into `owned` or, for F32 sources, into the mapped file;
                                      // null for a matrix kept in its storage type (native mode): use raw
  std::vector<float> owned;
  const uint8_t* raw = nullptr;       // the source bytes (in the mapped file) in src_type: GGUF, and HF F32/F16/BF16
  size_t raw_bytes = 0;
  std::vector<int32_t> perm;          // ctrust act-order storage (io/ctrust_types.h): column k of raw is column
                                      // perm[k] of the matrix; empty = identity (always, for ggml types)

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
  }
  int64_t rows() const { return ne.size() < 2 ? 1 : numel() / ne[0]; }
  int64_t cols() const { return ne.empty() ? 0 : ne[0]; }
  size_t row_bytes() const;  // bytes of one row in src_type
};

// f32 values of rows [r0, r0 + n) of t: copied from data, or dequantized from raw (exactly the values the
// f32 mode holds). The way for later stages (compression, fingerprints) to read a weight whatever its form.
void tensor_rows_f32(const Tensor& t, int64_t r0, int64_t n, float* dst);
// Makes t.data available, dequantizing raw into t.owned if needed (no-op when data is set).
void materialize_f32(Tensor& t);

struct LoadedModel {
  std::string path;                 // what the user named
  std::string format;               // "gguf", "hf", "llama2c"
  ModelConfig cfg;
  TokenizerData tok;
  std::vector<GgufKV> meta;         // every metadata key/value (GGUF's own; synthesized for other formats)
  std::map<std::string, Tensor> tensors;
  std::shared_ptr<MappedFile> map;  // keeps zero-copy tensor data alive (may hold several files)
  std::vector<std::shared_ptr<MappedFile>> extra_maps;
  ComputeMode compute = ComputeMode::F32;  // as loaded (LoadOptions::compute)

  const Tensor* find(const std::string& name) const {
    auto it = tensors.find(name);
    return it == tensors.end() ? nullptr : &it->second;
  }
  const Tensor& get(const std::string& name) const;  // throws Error("<path>: missing tensor <name>")
};

struct LoadOptions {
  std::string tokenizer_path;  // llama2.c: the tokenizer .bin (default: tokenizer.bin beside the model)
  ComputeMode compute = ComputeMode::F32;
};

// Detects the format (GGUF magic; a folder with config.json; otherwise a llama2.c checkpoint) and loads.
// Every problem is a ctrust::Error naming the file: wrong magic, truncated data, unknown tensor type or
// architecture, shapes that overflow or disagree with the config, missing tokenizer.
LoadedModel load_model(const std::string& path, const LoadOptions& opts = {});

LoadedModel load_gguf_model(const std::string& path, ComputeMode compute = ComputeMode::F32);
LoadedModel load_hf_model(const std::string& dir);
LoadedModel load_llama2c_model(const std::string& path, const std::string& tokenizer_path);

// Checks the config (positive sizes, KV heads divide heads, even head_dim) and that every tensor the
// graph needs is present with its expected shape (token_embd rows = n_vocab, q/k/v/o, biases if cfg.qkv_bias,
// q/k-norms if cfg.qk_norm, post-norms if cfg.post_norms, output.weight unless cfg.tied_output). Throws Error("<path>: ...").
void validate_model_shapes(const std::string& path, const ModelConfig& cfg,
                           const std::map<std::string, std::vector<int64_t>>& shapes);
void validate_model(const LoadedModel& m);  // the same, on a loaded model's tensors

}  // namespace ctrust
