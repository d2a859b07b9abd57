#include "io/arch.h"

#include "base/error.h"

namespace ctrust {

namespace {

// Hugging Face per-layer names shared by the Llama family (Llama, Mistral, Qwen2).
constexpr HfTensorName kLlamaHf[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

// Gemma 3 (Gemma3ForCausalLM): sandwich norms and q/k-norm. Note that HF's post_attention_layernorm is the
// post-norm of the attention output here, not the pre-FFN norm as in Llama (llama.cpp's tensor map).
constexpr HfTensorName kGemma3Hf[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

constexpr const char* kQkv[] = {"attn_q", "attn_k", "attn_v"};
constexpr const char* kOut[] = {"attn_output"};
constexpr const char* kGateUp[] = {"ffn_gate", "ffn_up"};
constexpr const char* kDown[] = {"ffn_down"};

// The pre-norm transformer's groups (AutoAWQ's llama/qwen2 scaling layers): q/k/v after attn_norm, o after v
// (only when v's rows map to o's columns one to one), gate/up after ffn_norm, down after up. They hold for
// Gemma 3 too: its pre-norms feed the same Linears, q/k-norm acts on q and k only (not on v), GELU(gate) * up is
// linear in up, and the post-norms act on the outputs of o and down.
constexpr FoldGroup kPreNormFolds[] = {
    {kQkv, "attn_norm", false, false, false},
    {kOut, "attn_v", true, true, true},
    {kGateUp, "ffn_norm", false, false, false},
    {kDown, "ffn_up", true, true, false},
};

constexpr ArchSpec kSpecs[] = {
    {.name = "llama", .hf_class = "LlamaForCausalLM", .gguf_rope = RopeLayout::Interleaved, .post_norms = false,
     .act = Activation::SiLU, .qk_norm = false, .embed_scale = false, .hf_norm_offset = 0.0f, .swa_pattern = 0,
     .swa_rope_base = 0.0f, .softcap = false, .attn_scale = AttnScaleRule::HeadDim, .hf_layer_names = kLlamaHf,
     .folds = kPreNormFolds, .awq = true, .export_permute_qk = true, .hf_model_type = "llama"},
    {.name = "mistral", .hf_class = "MistralForCausalLM", .gguf_rope = RopeLayout::Interleaved, .post_norms = false,
     .act = Activation::SiLU, .qk_norm = false, .embed_scale = false, .hf_norm_offset = 0.0f, .swa_pattern = 0,
     .swa_rope_base = 0.0f, .softcap = false, .attn_scale = AttnScaleRule::HeadDim, .hf_layer_names = kLlamaHf,
     .folds = kPreNormFolds, .awq = true, .export_permute_qk = true, .hf_model_type = "mistral"},
    {.name = "qwen2", .hf_class = "Qwen2ForCausalLM", .gguf_rope = RopeLayout::NeoX, .post_norms = false,
     .act = Activation::SiLU, .qk_norm = false, .embed_scale = false, .hf_norm_offset = 0.0f, .swa_pattern = 0,
     .swa_rope_base = 0.0f, .softcap = false, .attn_scale = AttnScaleRule::HeadDim, .hf_layer_names = kLlamaHf,
     .folds = kPreNormFolds, .awq = true, .export_permute_qk = false, .hf_model_type = "qwen2"},
    // llama.cpp src/models/gemma3.cpp: embeddings * sqrt(dim), RMSNorm -> q/k/v -> q/k RMSNorm per head -> RoPE
    // (NeoX; local layers base 10000) -> q * attention scale -> attention (sliding window on 5 of 6 layers)
    // -> o -> post-norm -> + residual -> RMSNorm -> GeGLU -> post-norm -> + residual; tied output head.
    {.name = "gemma3", .hf_class = "Gemma3ForCausalLM", .gguf_rope = RopeLayout::NeoX, .post_norms = true,
     .act = Activation::GeluTanh, .qk_norm = true, .embed_scale = true, .hf_norm_offset = 1.0f, .swa_pattern = 6,
     .swa_rope_base = 10000.0f, .softcap = true, .attn_scale = AttnScaleRule::Gemma3, .hf_layer_names = kGemma3Hf,
     .folds = kPreNormFolds, .awq = false, .export_permute_qk = false, .hf_model_type = ""},
};

}  // namespace

const char* activation_name(Activation a) { return a == Activation::GeluTanh ? "gelu_tanh" : "silu"; }

std::span<const ArchSpec> arch_specs() { return kSpecs; }

std::string supported_archs(bool hf) {
  std::string s;
  for (const ArchSpec& a : kSpecs) {
    const char* n = hf ? a.hf_class : a.name;
    if (!*n) continue;
    s += (s.empty() ? "" : ", ") + std::string(n);
  }
  return s;
}

const ArchSpec& arch_spec(std::string_view gguf_name) {
  for (const ArchSpec& a : kSpecs)
    if (gguf_name == a.name) return a;
  fail("unsupported architecture {} (supported: {})", gguf_name.empty() ? "(none)" : gguf_name, supported_archs());
}

const ArchSpec& arch_spec_hf(std::string_view hf_class) {
  for (const ArchSpec& a : kSpecs)
    if (*a.hf_class && hf_class == a.hf_class) return a;
  fail("unsupported architecture {} (supported: {})", hf_class.empty() ? "(none)" : hf_class, supported_archs(true));
}

}  // namespace ctrust
