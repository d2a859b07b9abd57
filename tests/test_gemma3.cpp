// Gemma 3 end to end on the real Gemma-3-270M base file (optional: bash scripts/fetch_models.sh gemma3-270m):
// the configuration read through the architecture registry, compression (RTN, GPTQ) and evaluation through the
// command line. The agreement with llama.cpp (tokens, logits, perplexity) is in test_tokenizer.cpp and
// test_golden_engine.cpp. Every test skips with a message when the file is absent.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "io/arch.h"
#include "model/model.h"
#include "test_paths.h"

namespace ctrust {
namespace {

using json = nlohmann::json;

// The registry's Gemma 3 entry and what the loader makes of the file's keys (llama.cpp's gemma3 hparams:
// sliding window 512 on layers l % 6 < 5, local RoPE base 10000, global 1e6, attention scale 1/sqrt(256)).
TEST(Gemma3, ConfigFromRegistryAndFile) {
  CTRUST_REQUIRE_GEMMA3();
  auto m = open_model(test::gemma3_q4_k_m(), LoadOptions{.compute = ComputeMode::Native});
  const ModelConfig& c = m->cfg;
  EXPECT_EQ(c.arch, "gemma3");
  EXPECT_EQ(c.n_layers, 18);
  EXPECT_EQ(c.dim, 640);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.hidden_dim, 2048);
  EXPECT_EQ(c.n_vocab, 262144);
  EXPECT_EQ(c.rope, RopeLayout::NeoX);
  EXPECT_TRUE(c.post_norms);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.act, Activation::GeluTanh);
  EXPECT_TRUE(c.tied_output);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.embed_scale, std::sqrt(640.0f));
  EXPECT_EQ(c.attn_scale, 0.0f);  // = 1/sqrt(head_dim) = 1/16
  EXPECT_EQ(c.sliding_window, 512);
  EXPECT_EQ(c.rope_theta, 1e6f);
  EXPECT_EQ(c.rope_theta_swa, 1e4f);
  EXPECT_EQ(c.logit_softcap, 0.0f);
  ASSERT_EQ(c.swa_layers.size(), 18u);
  for (int l = 0; l < 18; ++l) EXPECT_EQ(c.is_local(l), l % 6 != 5) << "layer " << l;
  for (int l = 0; l < 18; ++l) {
    EXPECT_NE(m->layers[l].q_norm, nullptr);
    EXPECT_NE(m->layers[l].attn_post_norm, nullptr);
  }
  EXPECT_FALSE(arch_spec("gemma3").awq);
}

// ctrust compress --method rtn|gptq on the file, then the written GGUF loads as gemma3 (its norms, q/k-norms and
// sliding-window keys carried over) and still predicts WikiText: perplexity of 2 chunks below twice the base
// model's (measured: base 15.565, RTN 4-bit sym g32 22.21 — the 270M model re-quantized from Q4_K_M; a broken
// block gives perplexities in the thousands).
double ppl_of(const std::string& model, const std::string& tag) {
  const std::string db = test::scratch_dir() + "/gemma3_" + tag + ".db";
  std::filesystem::remove(db);
  auto r = test::run_ctrust("eval -m " + model + " --tasks wikitext2 --limit 2 --db " + db + " --json", tag);
  EXPECT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  std::printf("[ gemma3 ] eval %s: %s\n", tag.c_str(), r.out.substr(0, 400).c_str());
  double ppl = -1;
  // the first task result's perplexity, wherever the JSON puts it
  std::function<void(const json&)> find = [&](const json& x) {
    if (ppl > 0) return;
    if (x.is_object()) {
      for (auto& [k, v] : x.items()) {
        if ((k == "ppl" || k == "perplexity") && v.is_number()) {
          ppl = v.get<double>();
          return;
        }
        find(v);
      }
    } else if (x.is_array()) {
      for (const auto& v : x) find(v);
    }
  };
  find(j);
  return ppl;
}

void compress_and_check(const std::string& method, const std::string& extra) {
  CTRUST_REQUIRE_GEMMA3();
  const std::string out = test::scratch_dir() + "/gemma3-" + method + ".gguf";
  auto r = test::run_ctrust("compress -m " + test::gemma3_q4_k_m() + " -o " + out + " --method " + method +
                                " --bits 4 --group-size 32 --sym " + extra + " --json",
                            "gemma3_compress_" + method);
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  auto back = open_model(out);
  EXPECT_EQ(back->cfg.arch, "gemma3");
  EXPECT_EQ(back->cfg.sliding_window, 512);
  EXPECT_EQ(back->cfg.swa_layers, std::vector<unsigned char>(
                                      {1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0}));
  auto base = open_model(test::gemma3_q4_k_m());
  for (const char* n : {"blk.0.attn_q_norm.weight", "blk.3.post_ffw_norm.weight", "output_norm.weight"}) {
    const Tensor& a = base->file.get(n);
    const Tensor& b = back->file.get(n);
    ASSERT_EQ(a.numel(), b.numel()) << n;
    for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data[i], b.data[i]) << n;  // 1-D: written as they are
  }
  const Tensor& q = back->file.get("blk.0.ffn_up.weight");
  const Tensor& q0 = base->file.get("blk.0.ffn_up.weight");
  bool changed = false;
  for (int64_t i = 0; i < q.numel() && !changed; ++i) changed = q.data[i] != q0.data[i];
  EXPECT_TRUE(changed) << "ffn_up was not requantized";
  base.reset();
  back.reset();
  const double p0 = ppl_of(test::gemma3_q4_k_m(), "base_" + method), p1 = ppl_of(out, method);
  std::printf("[ gemma3 ] wikitext2 (2 chunks of 512) perplexity: base %.3f, %s 4-bit g32 %.3f\n", p0, method.c_str(),
              p1);
  EXPECT_GT(p0, 1.0);
  EXPECT_LT(p0, 100.0);
  EXPECT_GT(p1, 1.0);
  EXPECT_LT(p1, p0 * 2.0);
  std::filesystem::remove(out);
}

TEST(Gemma3, CompressRtnThenEval) { compress_and_check("rtn", ""); }
TEST(Gemma3, CompressGptqThenEval) { compress_and_check("gptq", "--nsamples 8 --seqlen 128"); }

// AWQ's search losses model a SiLU MLP and attention without q/k-norm: refused with a one-line reason.
TEST(Gemma3, AwqRefusedWithReason) {
  CTRUST_REQUIRE_GEMMA3();
  auto r = test::run_ctrust("compress -m " + test::gemma3_q4_k_m() + " -o " + test::scratch_dir() +
                                "/gemma3-awq.gguf --method awq --bits 4 --nsamples 2 --seqlen 32",
                            "gemma3_awq");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("ctrust: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("gemma3"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ctrust
