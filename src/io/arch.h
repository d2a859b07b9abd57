// The architecture registry: what differs between the transformer families ctrust runs, as data. The loaders
// (GGUF and Hugging Face), the forward pass (through the ModelConfig fields the loaders fill from it), the
// compression driver (fold groups, AWQ) and the GGUF writer read this table instead of testing the
// architecture's name. Adding a family is one new ArchSpec in arch.cpp (docs/architecture.md, "Adding a family").
#pragma once
#include <span>
#include <string>
#include <string_view>

namespace ctrust {

// How RoPE pairs the dimensions of a head. GGUF "llama" files and llama2.c checkpoints use
// interleaved pairs (2i, 2i+1); Hugging Face checkpoints and GGUF qwen2/gemma3 use NeoX pairs (i, i+d/2).
enum class RopeLayout { Interleaved, NeoX };

// The gate activation of the gated feed-forward network down(act(gate(x)) * up(x)).
//  SiLU:     x * sigmoid(x) (SwiGLU: Llama, Mistral, Qwen2)
//  GeluTanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as ggml's CPU backend computes it: x rounded to
//            f16, the f16 value of GELU looked up (ggml's table), x <= -10 -> 0, x >= 10 -> x (GeGLU: Gemma)
enum class Activation { SiLU, GeluTanh };
const char* activation_name(Activation a);  // "silu", "gelu_tanh"

// How the attention scores are scaled (q is multiplied by the scale before q.k).
//  HeadDim: 1/sqrt(head_dim)
//  Gemma3:  llama.cpp's rule for GGUF gemma3 files: 1/sqrt(dim / n_heads) for the 27B shape (62 layers),
//           1/sqrt(head_dim) otherwise (Hugging Face configs give query_pre_attn_scalar: 1/sqrt of it)
enum class AttnScaleRule { HeadDim, Gemma3 };

// A per-layer tensor name of a Hugging Face checkpoint and its GGUF name (both after "model.layers.N." /
// "blk.N.").
struct HfTensorName {
  const char* hf;
  const char* gguf;
};

// An AWQ / SmoothQuant fold group: Linears that read the same input, and the tensor that absorbs the inverse
// of the per-input-channel scales (the Linears' columns are multiplied by s, `prev` divided by s).
struct FoldGroup {
  std::span<const char* const> linears;  // block Linear names ("attn_q", ...); the first one names the input
  const char* prev;                      // "attn_norm" (an RMSNorm weight) or a Linear whose output rows feed them
  bool prev_rows = false;                // prev is a Linear: its rows (and bias) are divided
  bool awq_only = false;                 // only AWQ folds this group (SmoothQuant smooths the norm-fed inputs)
  bool needs_mha = false;                // only when n_kv_heads == n_heads (v's rows map 1:1 to o's columns)
};

struct ArchSpec {
  const char* name;      // GGUF general.architecture
  const char* hf_class;  // Hugging Face config.json "architectures"[0] ("" = no Hugging Face loader)
  RopeLayout gguf_rope;  // RoPE pairing of the family's GGUF files (HF checkpoints are always NeoX)
  bool post_norms;       // sandwich norms: RMSNorm on the attention output (post_attention_norm) and on the FFN
                         // output (post_ffw_norm) before each residual add (Gemma 2/3); else pre-norms only
  Activation act;
  bool qk_norm;          // RMSNorm over each head of q and k (attn_q_norm, attn_k_norm) before RoPE
  bool embed_scale;      // the embedding rows are multiplied by sqrt(dim) (f32, as ggml_scale)
  float hf_norm_offset;  // added to every RMSNorm weight of a Hugging Face checkpoint: Gemma computes x * (1 + w);
                         // llama.cpp's converter stores w + 1 in GGUF, so GGUF weights are used as they are
  int swa_pattern;       // sliding-window layers when the file gives a window: layer l is local iff
                         // l % swa_pattern < swa_pattern - 1 (llama.cpp set_swa_pattern); 0 = family has none
  float swa_rope_base;   // RoPE base of the local layers unless the file says otherwise (GGUF rope.freq_base_swa)
  bool softcap;          // reads a final logit soft-cap (logits = c * tanh(logits / c)) when the file gives one
  AttnScaleRule attn_scale;
  std::span<const HfTensorName> hf_layer_names;  // per-layer HF -> GGUF names (weights; biases where used)
  std::span<const FoldGroup> folds;              // compression fold groups (AWQ, SmoothQuant)
  bool awq;              // AWQ's search losses model this family's MLP (SiLU) and attention (no q/k-norm)
  bool export_permute_qk;  // writing an HF (NeoX) checkpoint as GGUF permutes q/k rows to interleaved pairs
  const char* hf_model_type;  // config.json "model_type" of `ctrust export-hf` ("" = no Hugging Face export)
};

// The spec of a GGUF general.architecture; throws Error("unsupported architecture X (supported: ...)").
const ArchSpec& arch_spec(std::string_view gguf_name);
// The spec of a Hugging Face "architectures"[0] class; throws Error naming the supported classes.
const ArchSpec& arch_spec_hf(std::string_view hf_class);
// Every registered family (for lists in errors and docs).
std::span<const ArchSpec> arch_specs();
// "llama, mistral, qwen2, gemma3" (or the HF class names).
std::string supported_archs(bool hf = false);

}  // namespace ctrust
