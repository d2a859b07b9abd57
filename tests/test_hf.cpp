// Hugging Face folders (config.json + safetensors): a stories260K folder written by tests/hf_fixture.h in
// F32, F16 and BF16, single-file and sharded, must load with the GGUF file's config and the same tensor
// values (after the q/k un-permutation and the dtype rounding); safetensors reader/writer; broken folders.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "hf_fixture.h"
#include "io/export.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "test_paths.h"

using namespace ctrust;

namespace {

// llama.cpp convert_hf_to_gguf.py permute, written independently of the fixture's inverse:
// w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2) -> GGUF row h*d + 2i + j = HF row h*d + j*d/2 + i.
std::vector<float> hf_to_gguf_permute(const float* w, int64_t rows, int64_t cols, int n_head) {
  std::vector<float> out((size_t)(rows * cols));
  const int64_t d = rows / n_head;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = r / d, i = (r % d) / 2, j = r % 2;
    std::memcpy(&out[(size_t)(r * cols)], w + (h * d + j * (d / 2) + i) * cols, (size_t)cols * 4);
  }
  return out;
}

float round_to(const std::string& dtype, float x) {
  if (dtype == "F16") return ggml_fp16_to_fp32(ggml_fp32_to_fp16(x));
  if (dtype == "BF16") return ggml_bf16_to_fp32(ggml_fp32_to_bf16(x));
  return x;
}

void check_against_gguf(const LoadedModel& hf, const std::string& dtype) {
  const LoadedModel g = load_gguf_model(test::stories_gguf());
  EXPECT_EQ(hf.format, "hf");
  const ModelConfig &a = hf.cfg, &b = g.cfg;
  EXPECT_EQ(a.arch, "llama");
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.hidden_dim, b.hidden_dim);
  EXPECT_EQ(a.n_ctx, b.n_ctx);
  EXPECT_EQ(a.n_vocab, b.n_vocab);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_freq_scale, 1.0f);
  EXPECT_EQ(a.rope, RopeLayout::NeoX);
  EXPECT_EQ(b.rope, RopeLayout::Interleaved);
  EXPECT_EQ(a.tied_output, b.tied_output);
  EXPECT_FALSE(a.qkv_bias);
  EXPECT_EQ(hf.tok.tokens, g.tok.tokens);
  EXPECT_EQ(hf.tok.bos_id, 1);
  EXPECT_EQ(hf.tok.eos_id, 2);
  EXPECT_TRUE(hf.tok.add_bos);
  ASSERT_EQ(hf.tensors.size(), g.tensors.size());
  const GgmlType src = dtype == "F32" ? GgmlType::F32 : dtype == "F16" ? GgmlType::F16 : GgmlType::BF16;
  for (const auto& [name, gt] : g.tensors) {
    const Tensor* ht = hf.find(name);
    ASSERT_NE(ht, nullptr) << name;
    EXPECT_EQ(ht->ne, gt.ne) << name;
    EXPECT_EQ(ht->src_type, src) << name;
    EXPECT_EQ(ht->raw_bytes, (size_t)gt.numel() * (dtype == "F32" ? 4 : 2)) << name;
    // Back to GGUF's q/k order with llama.cpp's own permutation: must give the GGUF values (rounded).
    std::vector<float> v(ht->data, ht->data + ht->numel());
    const bool q = name.find(".attn_q.weight") != std::string::npos;
    const bool k = name.find(".attn_k.weight") != std::string::npos;
    if (q || k) v = hf_to_gguf_permute(v.data(), ht->rows(), ht->cols(), q ? a.n_heads : a.n_kv_heads);
    int64_t bad = -1;
    for (int64_t i = 0; i < gt.numel() && bad < 0; ++i)
      if (std::memcmp(&v[i], &(const float&)round_to(dtype, gt.data[i]), 4) != 0) bad = i;
    EXPECT_EQ(bad, -1) << name << " differs at " << bad;
    if (q || k) {  // and the HF layout really differs from GGUF's (else the permutation test is vacuous)
      EXPECT_NE(std::memcmp(ht->data, v.data(), v.size() * 4), 0) << name;
    }
  }
}

}  // namespace

TEST(Hf, LoadsSingleFileF32) {
  const std::string dir = test::write_stories_hf(test::scratch_dir() + "/hf_stories_f32", "F32", false);
  LoadedModel m = load_model(dir);  // a folder dispatches to the HF loader
  check_against_gguf(m, "F32");
  // F32 tensors are zero-copy views of the mapped safetensors file.
  const Tensor& t = m.get("blk.1.ffn_up.weight");
  EXPECT_TRUE(t.owned.empty());
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(t.data), t.raw);
  EXPECT_TRUE(m.extra_maps.empty());
}

TEST(Hf, LoadsShardedF16) {
  const std::string dir = test::write_stories_hf(test::scratch_dir() + "/hf_stories_f16_sharded", "F16", true);
  ASSERT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  ASSERT_FALSE(std::filesystem::exists(dir + "/model.safetensors"));
  LoadedModel m = load_hf_model(dir);
  check_against_gguf(m, "F16");
  EXPECT_EQ(m.extra_maps.size(), 2u);  // three shards stay mapped
}

TEST(Hf, LoadsSingleFileBF16) {
  const std::string dir = test::write_stories_hf(test::scratch_dir() + "/hf_stories_bf16", "BF16", false);
  check_against_gguf(load_hf_model(dir), "BF16");
}

// End to end: the Hugging Face folder (tokenizer.json, NeoX q/k layout, safetensors) gives the GGUF file's
// tokens and log-probabilities. F32 is the same arithmetic up to RoPE's pairing of dimensions (sums in a
// different order), so the difference is float rounding; BF16 weights differ by their rounding.
TEST(Hf, FolderGivesSameTokensAndLogprobsAsGguf) {
  const std::string dir = test::write_stories_hf(test::scratch_dir() + "/hf_stories_f32_e2e", "F32", false);
  auto hf = open_model(dir);
  auto g = open_model(test::stories_gguf());
  const std::string text = "Once upon a time, Tom's dog ran  to the park.\nHe was happy! 123 \u00e9t\u00e9";
  const auto th = hf->tok.encode(text, true), tg = g->tok.encode(text, true);
  ASSERT_EQ(th, tg);
  ASSERT_GT(th.size(), 20u);
  const auto a = token_logprobs(*hf, th), b = token_logprobs(*g, tg);
  ASSERT_EQ(a.size(), b.size());
  double max_diff = 0, sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, (double)std::fabs(a[i] - b[i]));
    sum += b[i];
  }
  std::printf("[ hf ] %zu positions, max |dlogprob| HF folder vs GGUF = %.3g (mean logprob %.3f)\n", a.size(),
              max_diff, sum / a.size());
  EXPECT_LT(max_diff, 1e-4);

  // A BF16 folder is a different (rounded) model: close, but not identical.
  const std::string dir16 = test::write_stories_hf(test::scratch_dir() + "/hf_stories_bf16_e2e", "BF16", false);
  const auto c = token_logprobs(*open_model(dir16), th);
  double max16 = 0;
  for (size_t i = 0; i < c.size(); ++i) max16 = std::max(max16, (double)std::fabs(c[i] - b[i]));
  EXPECT_GT(max16, 0.0);
  EXPECT_LT(max16, 0.5);
}

TEST(Hf, ConfigVariants) {
  namespace fs = std::filesystem;
  const std::string dir = test::write_stories_hf(test::scratch_dir() + "/hf_stories_variants", "F32", false);
  nlohmann::json cfg;
  {
    std::ifstream in(dir + "/config.json");
    cfg = nlohmann::json::parse(in);
  }
  auto write_cfg = [&](const nlohmann::json& j) { test::write_text(dir + "/config.json", j.dump()); };
  auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json j = cfg;
    if (v.is_null()) j.erase(key);
    else j[key] = v;
    return j;
  };
  write_cfg(with("rope_scaling", {{"type", "linear"}, {"factor", 4.0}}));
  EXPECT_EQ(load_hf_model(dir).cfg.rope_freq_scale, 0.25f);
  write_cfg(with("rope_scaling", {{"rope_type", "linear"}, {"factor", 2.0}}));
  EXPECT_EQ(load_hf_model(dir).cfg.rope_freq_scale, 0.5f);
  write_cfg(with("architectures", {"MistralForCausalLM"}));
  EXPECT_EQ(load_hf_model(dir).cfg.arch, "mistral");
  write_cfg(with("architectures", {"Qwen2ForCausalLM"}));
  EXPECT_EQ(load_hf_model(dir).cfg.arch, "qwen2");
  write_cfg(with("num_key_value_heads", nullptr));  // defaults to the head count: k has the wrong shape then
  EXPECT_THROW(load_hf_model(dir), Error);
  write_cfg(with("rms_norm_eps", 1e-6));
  EXPECT_EQ(load_hf_model(dir).cfg.norm_eps, 1e-6f);
  // Special tokens named by tokenizer_config.json override the tokenizer's own.
  test::write_text(dir + "/tokenizer_config.json", R"({"bos_token": {"content": "</s>"}, "eos_token": "<unk>"})");
  {
    LoadedModel m = load_hf_model(dir);
    EXPECT_EQ(m.tok.bos_id, 2);
    EXPECT_EQ(m.tok.eos_id, 0);
  }
  // More embedding rows than tokens: the vocabulary is padded with unused "[PAD<i>]" tokens (as llama.cpp's
  // converter does), so n_vocab follows the embedding.
  {
    SafetensorsFile st = read_safetensors(dir + "/model.safetensors");
    std::vector<SafetensorsWriteTensor> w;
    std::vector<float> emb;
    for (const auto& t : st.tensors) {
      if (t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight") {
        continue;
      }
      w.push_back({t.name, t.dtype, t.shape, t.data});
    }
    const SafetensorsTensor* e = st.find("model.embed_tokens.weight");
    emb.assign(reinterpret_cast<const float*>(e->data), reinterpret_cast<const float*>(e->data) + e->numel());
    emb.resize(emb.size() + 8 * 64, 0.5f);
    w.push_back({"model.embed_tokens.weight", "F32", {520, 64}, emb.data()});
    write_safetensors(dir + "/padded.safetensors", w);
    fs::rename(dir + "/model.safetensors", dir + "/unpadded.safetensors");
    fs::rename(dir + "/padded.safetensors", dir + "/model.safetensors");
    write_cfg(with("vocab_size", 520));
    LoadedModel m = load_hf_model(dir);
    EXPECT_EQ(m.cfg.n_vocab, 520);
    EXPECT_TRUE(m.cfg.tied_output);
    ASSERT_EQ(m.tok.tokens.size(), 520u);
    EXPECT_EQ(m.tok.tokens[515], "[PAD515]");
    fs::rename(dir + "/unpadded.safetensors", dir + "/model.safetensors");
  }
  auto expect_err = [&](const nlohmann::json& j, const std::string& what) {
    write_cfg(j);
    try {
      load_hf_model(dir);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_err(with("rope_scaling", {{"type", "yarn"}, {"factor", 4.0}}), "unsupported rope_scaling type 'yarn'");
  expect_err(with("hidden_size", nullptr), "config.json: missing hidden_size");
  expect_err(with("vocab_size", 500), "tokenizer has 512 tokens but vocab_size is 500");
  expect_err(with("num_attention_heads", 6), "does not divide hidden_size 64");
  expect_err(with("architectures", {"FalconForCausalLM"}), "unsupported architecture FalconForCausalLM");
  expect_err(with("intermediate_size", 100), "tensor blk.0.ffn_gate.weight has shape [64, 172], expected [64, 100]");
}

TEST(Safetensors, RoundTripAndBounds) {
  const std::string p = test::scratch_dir() + "/t.safetensors";
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {0x3c00, 0xc000};
  write_safetensors(p, {{"a", "F32", {2, 3}, a.data()}, {"b", "BF16", {2}, b.data()}}, {{"format", "pt"}});
  SafetensorsFile f = read_safetensors(p);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  const SafetensorsTensor* t = f.find("a");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t->nbytes, 24u);
  EXPECT_EQ(std::memcmp(t->data, a.data(), 24), 0);
  EXPECT_EQ((reinterpret_cast<uintptr_t>(f.tensors[0].data) - reinterpret_cast<uintptr_t>(f.map->data())) % 8, 0u);
  EXPECT_EQ(f.find("b")->dtype, "BF16");
  // Every truncation is an error, not a crash.
  MappedFile whole(p);
  for (size_t len = 0; len < whole.size(); ++len) {
    test::write_text(p + ".cut", std::string(reinterpret_cast<const char*>(whole.data()), len));
    EXPECT_THROW(read_safetensors(p + ".cut"), Error) << len;
  }
}

// ---------------------------------------------------------------- broken folders (tests/data/broken/hf_*)

TEST(HfBroken, EachFolderGivesItsError) {
  const std::string base = test::source_dir() + "/tests/data/broken/";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"hf_header_past_eof", "model.safetensors: safetensors header length 1099511627776 runs past the end"},
      {"hf_bad_json", "model.safetensors: invalid safetensors header JSON"},
      {"hf_offsets_outside",
       "model.safetensors: tensor 'model.embed_tokens.weight' data_offsets [0, 64] lie outside the data section (10 bytes)"},
      {"hf_int_dtype", "model.safetensors: tensor model.embed_tokens.weight has dtype I32 (supported: F32, F16, BF16)"},
      {"hf_shape_mismatch", "tensor 'model.embed_tokens.weight' has 12 bytes but its shape and dtype F32 need 64"},
      {"hf_unknown_arch", "config.json: unsupported architecture GPT2LMHeadModel"},
  };
  for (const auto& [name, what] : cases) {
    try {
      load_model(base + name);
      ADD_FAILURE() << name << ": loaded without error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(base + name, 0), 0u) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << name << ": expected '" << what << "' in: " << msg;
    }
  }
  EXPECT_THROW(load_model(test::scratch_dir()), Error);  // a folder without config.json
}

namespace ctrust {
namespace {
// A Hugging Face Gemma 3 folder made from stories260K's weights (Gemma3ForCausalLM names: pre/post norms,
// q/k-norm; norm weights stored as w with Gemma's x * (1 + w)): the loader maps the names through the registry,
// adds 1 to every norm weight, reads the window, the per-layer types, query_pre_attn_scalar, the local RoPE base
// and the soft-cap; the GGUF file it writes loads back with the same config and the same logits.
TEST(Hf, Gemma3FolderThroughTheRegistry) {
  const std::string dir = test::write_stories_hf(test::scratch_dir() + "/hf_gemma3", "F32");
  SafetensorsFile sf = read_safetensors(dir + "/model.safetensors");
  std::vector<std::vector<float>> keep;  // values of the written tensors
  std::vector<SafetensorsWriteTensor> out;
  std::map<std::string, std::vector<float>> hf;  // what the folder holds, by HF name
  auto add = [&](const std::string& name, std::vector<int64_t> shape, std::vector<float> v) {
    hf[name] = v;
    keep.push_back(std::move(v));
    out.push_back({name, "F32", shape, reinterpret_cast<const uint8_t*>(keep.back().data())});
  };
  keep.reserve(sf.tensors.size() * 3);
  int head_dim = 0, n_layers = 0;
  for (const auto& t : sf.tensors) {
    std::vector<float> v(t.numel());
    std::memcpy(v.data(), t.data, t.nbytes);
    std::string name = t.name;
    if (name.ends_with("post_attention_layernorm.weight")) {  // Llama's pre-FFN norm: Gemma's pre_feedforward
      const std::string p = name.substr(0, name.size() - std::string("post_attention_layernorm.weight").size());
      for (float& x : v) x -= 1.0f;  // HF Gemma stores w for x * (1 + w)
      add(p + "pre_feedforward_layernorm.weight", t.shape, v);
      std::vector<float> post(v.size());
      for (size_t i = 0; i < post.size(); ++i) post[i] = 0.01f * (float)(i % 5);
      add(p + "post_attention_layernorm.weight", t.shape, post);
      add(p + "post_feedforward_layernorm.weight", t.shape, std::vector<float>(v.size(), -0.25f));
      n_layers++;
      continue;
    }
    if (name.ends_with("self_attn.q_proj.weight")) {
      const std::string p = name.substr(0, name.size() - std::string("q_proj.weight").size());
      const auto& cfg0 = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
      head_dim = cfg0["hidden_size"].get<int>() / cfg0["num_attention_heads"].get<int>();
      std::vector<float> qn(head_dim), kn(head_dim);
      for (int i = 0; i < head_dim; ++i) {
        qn[i] = 0.05f * (float)(i % 3);
        kn[i] = -0.05f * (float)(i % 4);
      }
      add(p + "q_norm.weight", {head_dim}, qn);
      add(p + "k_norm.weight", {head_dim}, kn);
    }
    if (name.ends_with("norm.weight"))
      for (float& x : v) x -= 1.0f;
    add(name, t.shape, v);
  }
  write_safetensors(dir + "/model.safetensors", out, {{"format", "pt"}});
  auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["architectures"] = {"Gemma3ForCausalLM"};
  cfg["model_type"] = "gemma3_text";
  cfg["sliding_window"] = 3;
  std::vector<std::string> types;
  for (int l = 0; l < n_layers; ++l) types.push_back(l % 2 ? "full_attention" : "sliding_attention");
  cfg["layer_types"] = types;
  cfg["query_pre_attn_scalar"] = head_dim;  // as every Gemma 3 but the 27B (GGUF has no key for it)
  cfg["rope_local_base_freq"] = 500.0;
  cfg["final_logit_softcapping"] = 30.0;
  test::write_text(dir + "/config.json", cfg.dump(2));

  auto m = open_model(dir);
  const ModelConfig& c = m->cfg;
  EXPECT_EQ(c.arch, "gemma3");
  EXPECT_TRUE(c.post_norms);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.act, Activation::GeluTanh);
  EXPECT_EQ(c.rope, RopeLayout::NeoX);
  EXPECT_EQ(c.sliding_window, 3);
  ASSERT_EQ((int)c.swa_layers.size(), n_layers);
  for (int l = 0; l < n_layers; ++l) EXPECT_EQ(c.is_local(l), l % 2 == 0);
  EXPECT_EQ(c.attn_scale, 1.0f / std::sqrt((float)head_dim));
  EXPECT_EQ(c.rope_theta_swa, 500.0f);
  EXPECT_EQ(c.logit_softcap, 30.0f);
  EXPECT_EQ(c.embed_scale, std::sqrt((float)c.dim));
  auto same = [&](const std::string& gguf, const std::string& hfn) {
    const Tensor& t = m->file.get(gguf);
    const std::vector<float>& v = hf.at(hfn);
    ASSERT_EQ(t.numel(), (int64_t)v.size()) << gguf;
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(t.data[i], v[i] + 1.0f) << gguf << " " << i;  // the +1
  };
  same("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight");
  same("blk.1.ffn_norm.weight", "model.layers.1.pre_feedforward_layernorm.weight");
  same("blk.1.post_attention_norm.weight", "model.layers.1.post_attention_layernorm.weight");
  same("blk.0.post_ffw_norm.weight", "model.layers.0.post_feedforward_layernorm.weight");
  same("blk.0.attn_q_norm.weight", "model.layers.0.self_attn.q_norm.weight");
  same("blk.0.attn_k_norm.weight", "model.layers.0.self_attn.k_norm.weight");
  same("output_norm.weight", "model.norm.weight");
  const Tensor& q = m->file.get("blk.0.attn_q.weight");  // a matrix: no offset
  const auto& hq = hf.at("model.layers.0.self_attn.q_proj.weight");
  for (size_t i = 0; i < hq.size(); ++i) ASSERT_EQ(q.data[i], hq[i]);

  // Logits are finite and soft-capped; the GGUF file written from the folder gives the same config and logits.
  const std::vector<int32_t> toks = m->tok.encode("Once upon a time there was a little girl who liked cats.", true);
  const int n = (int)toks.size(), V = c.n_vocab;
  ASSERT_GT(n, 4);
  std::vector<float> a((size_t)n * V), b((size_t)n * V);
  KVCache ca = make_cache(*m, n);
  forward(*m, ca, toks.data(), n, a.data());
  for (float x : a) ASSERT_TRUE(std::isfinite(x) && std::fabs(x) <= 30.0f);
  const std::string path = test::scratch_dir() + "/hf_gemma3.gguf";
  save_gguf(m->file, path);
  auto g = open_model(path);
  EXPECT_EQ(g->cfg.arch, "gemma3");
  EXPECT_EQ(g->cfg.sliding_window, 3);
  EXPECT_EQ(g->cfg.swa_layers, c.swa_layers);
  EXPECT_EQ(g->cfg.rope_theta_swa, 500.0f);
  EXPECT_EQ(g->cfg.logit_softcap, 30.0f);
  EXPECT_EQ(g->cfg.rope, RopeLayout::NeoX);
  KVCache cb = make_cache(*g, n);
  forward(*g, cb, toks.data(), n, b.data());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << i;
}
}  // namespace
}  // namespace ctrust
