// ctrust's engine against llama.cpp (tests/golden/logits_*.json, made by scripts/ref/make_logits_golden.py).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "compress/quant.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "test_paths.h"

using namespace ctrust;
using json = nlohmann::json;

namespace {

json load_golden(const std::string& name) {
  std::ifstream in(test::golden_dir() + "/" + name);
  if (!in) throw std::runtime_error("missing golden file " + name);
  return json::parse(in);
}

struct Diff {
  double max_abs = 0;  // over top-10 log-probs, next-token log-probs and logsumexp
  double max_next = 0;
  int argmax_mismatch = 0;
  int positions = 0;
};

// Compares ctrust's log-softmax at llama.cpp's top-10 ids, the next-token log-prob and the logsumexp.
Diff compare_positions(const Model& m, const std::vector<int32_t>& tokens, const json& positions) {
  const int n = (int)tokens.size(), V = m.cfg.n_vocab;
  KVCache c = make_cache(m, n);
  std::vector<float> logits((size_t)n * V);
  forward(m, c, tokens.data(), n, logits.data());
  Diff d;
  for (int i = 0; i < n; ++i) {
    float* row = logits.data() + (size_t)i * V;
    const int am = (int)(std::max_element(row, row + V) - row);
    double mx = row[am], sum = 0;
    for (int t = 0; t < V; ++t) sum += std::exp((double)row[t] - mx);
    const double lse = mx + std::log(sum);
    const json& p = positions[i];
    d.max_abs = std::max(d.max_abs, std::fabs(lse - p["lse"].get<double>()));
    for (const auto& tv : p["top"]) {
      const int id = tv[0].get<int>();
      d.max_abs = std::max(d.max_abs, std::fabs((row[id] - lse) - tv[1].get<double>()));
    }
    if (am != p["top"][0][0].get<int>()) d.argmax_mismatch++;
    if (i + 1 < n) {
      const double e = std::fabs((row[tokens[i + 1]] - lse) - p["next"].get<double>());
      d.max_next = std::max(d.max_next, e);
      d.max_abs = std::max(d.max_abs, e);
    }
    d.positions++;
  }
  return d;
}

void check_texts(const Model& m, const json& g, const char* label, double tol, const char* positions_key = nullptr) {
  for (const auto& [key, t] : g["texts"].items()) {
    auto tokens = t["tokens"].get<std::vector<int32_t>>();
    const json& pos = positions_key ? g[positions_key][key] : t["positions"];
    Diff d = compare_positions(m, tokens, pos);
    std::printf("[ golden ] %s %s: %d positions, max |dlogprob| %.3g (next-token %.3g), argmax mismatches %d\n",
                label, key.c_str(), d.positions, d.max_abs, d.max_next, d.argmax_mismatch);
    if (tol > 0) {
      EXPECT_LT(d.max_abs, tol) << label << " " << key;
      EXPECT_EQ(d.argmax_mismatch, 0) << label << " " << key;
    }
  }
}

void check_perplexity(const Model& m, const json& g, int chunks, double rel_tol) {
  const json& p = g["perplexity"];
  auto tokens = p["tokens"].get<std::vector<int32_t>>();
  auto ref_nll = p["chunk_nll"].get<std::vector<double>>();
  ASSERT_LE(chunks, (int)ref_nll.size());
  tokens.resize((size_t)chunks * p["ctx"].get<int>());
  PerplexityResult r = perplexity(m, tokens, p["ctx"].get<int>(), chunks);
  ASSERT_EQ(r.n_chunks, chunks);
  EXPECT_EQ(r.n_scored, (int64_t)chunks * (p["ctx"].get<int>() / 2 - 1));
  double ref_mean = 0;
  for (int i = 0; i < chunks; ++i) {
    EXPECT_NEAR(r.chunk_nll[i], ref_nll[i], 1e-4) << "chunk " << i;
    ref_mean += ref_nll[i] / chunks;
  }
  const double ref_ppl = chunks == p["chunks"].get<int>() ? p["ppl"].get<double>() : std::exp(ref_mean);
  std::printf("[ golden ] perplexity over %d chunks: ctrust %.6f +/- %.5f, llama.cpp %.6f\n", chunks, r.ppl,
              r.ppl_stderr, ref_ppl);
  EXPECT_NEAR(r.ppl / ref_ppl, 1.0, rel_tol);
  if (chunks == p["chunks"].get<int>()) {
    EXPECT_NEAR(r.ppl_stderr / p["ppl_stderr"].get<double>(), 1.0, 1e-3);
  }
}

// Gemma-3-270M: measured max |d log-prob| 0.0036 (English), 0.0092 (code/unicode), 0.0115 (700 wiki tokens),
// argmax mismatches 0, against 2e-5 for Qwen2 (docs/correctness.md). The source of this floor is not identified:
// it is not ggml's f16 GELU table (exact GELU gives 0.0045 / 0.0077 / 0.032, i.e. the table is llama.cpp's
// arithmetic and brings the long text closer); f32 summation-order noise carried by Gemma's very large
// activations is the likely cause. No bias: the perplexity per chunk agrees to 1e-4. Bound ~2.5x the largest.
constexpr double kGemma3Tol = 0.03;

}  // namespace

TEST(GoldenEngine, Stories260KMatchesLlamaCpp) {
  json g = load_golden("logits_stories260k.json");
  LoadOptions o;
  o.tokenizer_path = test::stories_tok();
  auto m = open_model(test::stories_bin(), o);
  check_texts(*m, g, "stories260K (llama2.c copy)", 1e-4);
  check_perplexity(*m, g, 8, 1e-4);
}

TEST(GoldenEngine, Stories260KGgufMatchesLlamaCpp) {
  json g = load_golden("logits_stories260k.json");
  auto m = open_model(test::stories_gguf());
  check_texts(*m, g, "stories260K (GGUF v1)", 1e-4);
}

// ctrust dequantizes the Q4_1 file at load: the same weights llama.cpp ran in the F32 copy.
TEST(GoldenEngine, SmolLM2MatchesLlamaCppF32) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "no " << test::smollm_q4_1();
  json g = load_golden("logits_smollm2.json");
  auto m = open_model(test::smollm_q4_1());
  check_texts(*m, g, "SmolLM2 Q4_1->f32 vs llama.cpp F32", 2e-4);
  // llama.cpp on the Q4_1 file itself rounds activations to 8 bits (Q8_1) in every matmul: reported only.
  check_texts(*m, g, "SmolLM2 Q4_1->f32 vs llama.cpp Q4_1", 0, "q4_1_positions");
  check_perplexity(*m, g, 2, 1e-4);  // two chunks keep the test at a few seconds
}

// Qwen2 (q/k/v biases, NeoX RoPE, theta 1e6, untied output) on the real Qwen2.5-Coder Q4_K_M files: ctrust
// dequantizes the file at load; llama.cpp ran the F32 copy (written by ctrust convert and checked bit for bit
// against the gguf package's dequantization by the golden script). Skipped when the optional files are absent.
namespace {
void check_qwen(const std::string& size, double tol, int ppl_chunks) {
  json g = load_golden("logits_qwen" + size + ".json");
  auto m = open_model(test::qwen_q4_k_m(size));
  EXPECT_EQ(m->cfg.arch, "qwen2");
  EXPECT_TRUE(m->cfg.qkv_bias);
  EXPECT_EQ(m->cfg.rope, RopeLayout::NeoX);
  EXPECT_FLOAT_EQ(m->cfg.rope_theta, 1e6f);
  const std::string label = "Qwen2.5-Coder-" + size + " Q4_K_M->f32";
  check_texts(*m, g, (label + " vs llama.cpp F32").c_str(), tol);
  // llama.cpp on the Q4_K_M file rounds activations to 8 bits (Q8_K / Q8_0) in every matmul: reported only.
  check_texts(*m, g, (label + " vs llama.cpp Q4_K_M").c_str(), 0, "q4_k_m_positions");
  check_perplexity(*m, g, ppl_chunks, 1e-4);
}
}  // namespace

TEST(GoldenEngine, Qwen05MatchesLlamaCppF32) {
  CTRUST_REQUIRE_QWEN("0.5b");
  check_qwen("0.5b", 2e-4, 2);
}

TEST(GoldenEngine, Qwen15MatchesLlamaCppF32) {
  CTRUST_REQUIRE_QWEN("1.5b");
  check_qwen("1.5b", 2e-4, 2);
}

// Gemma 3 (sandwich norms, q/k-norm, GeGLU, embeddings x sqrt(dim), sliding window 512 on 15 of 18 layers with
// RoPE base 10000, global layers 1e6, tied head) on the real Gemma-3-270M base Q4_K_M file, dequantized at
// load, against llama.cpp on its F32 copy (scripts/ref/make_logits_golden.py --only gemma3-270m). The third
// text, "wiki_long" (700 tokens), reaches past the sliding window. Skipped when the optional file is absent.
TEST(GoldenEngine, Gemma3MatchesLlamaCppF32) {
  CTRUST_REQUIRE_GEMMA3();
  json g = load_golden("logits_gemma3-270m.json");
  auto m = open_model(test::gemma3_q4_k_m());
  EXPECT_EQ(m->cfg.arch, "gemma3");
  ASSERT_TRUE(g["texts"].contains("wiki_long"));
  EXPECT_GT(g["texts"]["wiki_long"]["tokens"].size(), 600u);
  check_texts(*m, g, "Gemma-3-270M Q4_K_M->f32 vs llama.cpp F32", kGemma3Tol);
  // llama.cpp on the Q4_K_M file rounds activations to 8 bits in every matmul: reported only.
  check_texts(*m, g, "Gemma-3-270M Q4_K_M->f32 vs llama.cpp Q4_K_M", 0, "q4_k_m_positions");
  check_perplexity(*m, g, 2, 1e-4);
  // The native mode computes what llama.cpp computes on the Q4_K_M file (8-bit activations): reported.
  m.reset();
  auto n = open_model(test::gemma3_q4_k_m(), LoadOptions{.compute = ComputeMode::Native});
  check_texts(*n, g, "Gemma-3-270M Q4_K_M native vs llama.cpp Q4_K_M", 0, "q4_k_m_positions");
}

// The 8-bit inference modes on the real model against an independent numpy implementation written from the
// papers (tests/golden/int8_smollm2.json, scripts/ref/make_int8_golden.py): per-token int8 activations
// (SmoothQuant's W8A8 rounding, here on the unsmoothed weights) and LLM.int8() with threshold 6.
// The statistic is the mean full-vocabulary KL(f32 || mode) over the scored positions of the first chunks of
// wiki.test.raw (llama.cpp's perplexity protocol, two calls of 256 tokens per chunk). Not the perplexity: the
// perplexity change of these modes is chaotic in the last bits of the sums (see the script), while the KL moves
// by ~3% under such perturbations — but by up to 15% with another BLAS kernel set (below), so this is a sanity
// check of the whole path; the formulas themselves are checked exactly layer by layer (the test before it).
namespace {
// Log-softmax of the scored rows (ctx/2 .. ctx-2) of each chunk, as the perplexity protocol computes them.
std::vector<float> scored_log_softmax(const Model& m, const std::vector<int32_t>& tokens, int ctx, int chunks) {
  const int first = ctx / 2, rows = ctx - 1 - first, V = m.cfg.n_vocab;
  std::vector<float> out((size_t)chunks * rows * V);
  std::vector<float> logits((size_t)(ctx - first) * V);
  KVCache c = make_cache(m, ctx);
  for (int i = 0; i < chunks; ++i) {
    c.n_past = 0;
    forward(m, c, tokens.data() + (size_t)i * ctx, first, nullptr);
    forward(m, c, tokens.data() + (size_t)i * ctx + first, ctx - first, logits.data());
    for (int r = 0; r < rows; ++r) {
      float* dst = out.data() + ((size_t)i * rows + r) * V;
      std::copy_n(logits.data() + (size_t)r * V, V, dst);
      log_softmax(dst, V);
    }
  }
  return out;
}
}  // namespace

// The exact formulas of both modes, deterministically: real inputs of five Linears of SmolLM2 (captured by the numpy
// reference in its f32 forward of chunk 0; four rows taken as one call) through ctrust's linear() against numpy's
// outputs (tests/golden/int8_layers_smollm2.bin, scripts/ref/make_int8_golden.py --layers-only). The Linears are
// chosen so that the threshold matters: inputs between 5 and 7 on both sides of 6 (blk.27.attn_q has 0 outlier
// columns with max |x| 5.99; blk.29.attn_q 2 with max 6.54), and massive activations (blk.11.ffn_down, |x| 3,010).
// The int8 values are the same (same f32 division and ties-to-even rounding), so only the summation order
// differs: tolerance 2e-5 of the row's largest output. Thresholds 5 and 7 must miss it (they would change the
// outlier set), as must the int8 split without outliers.
TEST(GoldenEngine, SmolLM2Int8LinearsMatchNumpyReference) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "no " << test::smollm_q4_1();
  const json ref = load_golden("int8_smollm2.json");
  ASSERT_TRUE(ref.contains("layers")) << "regenerate with scripts/ref/make_int8_golden.py --layers-only";
  const json& layers = ref["layers"];
  const std::string bin_path = test::golden_dir() + "/" + layers["file"].get<std::string>();
  std::ifstream bin(bin_path, std::ios::binary);
  ASSERT_TRUE(bin) << bin_path;
  std::vector<float> blob(std::filesystem::file_size(bin_path) / 4);  // little-endian f32, as x86-64 holds it
  bin.read(reinterpret_cast<char*>(blob.data()), std::streamsize(blob.size() * 4));
  ASSERT_TRUE(bin) << bin_path;
  auto m = open_model(test::smollm_q4_1());
  const float threshold = ref["threshold"].get<float>();
  // max |ctrust - numpy| / max |numpy| over each row, the worst row.
  auto worst = [&](const std::vector<float>& y, const float* want, int rows, int out) {
    double w = 0;
    for (int r = 0; r < rows; ++r) {
      double mx = 0, d = 0;
      for (int o = 0; o < out; ++o) {
        mx = std::max(mx, std::fabs((double)want[(size_t)r * out + o]));
        d = std::max(d, std::fabs((double)y[(size_t)r * out + o] - want[(size_t)r * out + o]));
      }
      w = std::max(w, d / mx);
    }
    return w;
  };
  int checked = 0;
  for (const json& e : layers["linears"]) {
    const std::string name = e["tensor"];
    const int rows = e["rows"], in = e["in"], out = e["out"];
    const int l = std::stoi(name.substr(4));
    LayerWeights& Lw = m->layers[l];
    Linear* lin = name.find("attn_q") != std::string::npos ? &Lw.wq
                  : name.find("ffn_down") != std::string::npos ? &Lw.w_down : nullptr;
    ASSERT_NE(lin, nullptr) << name;
    ASSERT_EQ(lin->in, in);
    ASSERT_EQ(lin->out, out);
    ASSERT_LE(e["llm_int8"].get<size_t>() + (size_t)rows * out, blob.size());
    const float* x = blob.data() + e["x"].get<size_t>();
    std::vector<float> y((size_t)rows * out);
    Linear L = *lin;
    L.b = nullptr;
    // LLM.int8()'s weights: bitsandbytes' int8 rows (CB, SCB), as `compress --method int8` stores them.
    const std::vector<float> w8 = quantize_rows_absmax_int8(lin->w, out, in, Int8Round::Multiply).w;
    for (const char* mode : {"w8a8_act", "llm_int8"}) {
      const bool w8a8 = std::string(mode) == "w8a8_act";
      L.mode = w8a8 ? LinearMode::W8A8 : LinearMode::Int8Outlier;
      L.w = w8a8 ? lin->w : w8.data();
      L.threshold = threshold;
      linear(L, x, y.data(), rows);
      const float* want = blob.data() + e[mode].get<size_t>();
      const double err = worst(y, want, rows, out);
      std::printf("[ golden ] %s %s (%d outlier columns): max |ctrust - numpy| / max |y| = %.2e\n", name.c_str(), mode,
                  e["outlier_columns"].get<int>(), err);
      EXPECT_LT(err, 2e-5) << name << " " << mode;
      ++checked;
    }
    // What a wrong threshold or no decomposition gives on the same inputs (only where it changes the outlier set).
    int differing = 0;
    for (float other : {5.0f, 7.0f, 1e30f}) {
      L.mode = LinearMode::Int8Outlier;
      L.threshold = other;
      int n_out = 0;
      for (int j = 0; j < in; ++j) {
        bool o = false;
        for (int r = 0; r < rows; ++r) o = o || std::fabs(x[(size_t)r * in + j]) >= other;
        n_out += o;
      }
      if (n_out == e["outlier_columns"].get<int>()) continue;
      linear(L, x, y.data(), rows);
      const double err = worst(y, blob.data() + e["llm_int8"].get<size_t>(), rows, out);
      // 1e-4: 5x the match tolerance below; the smallest seen is 6.0e-4 (blk.11.ffn_down at threshold 7: with
      // bitsandbytes' int8 weights in the outlier columns too, moving one column changes less than with f32 ones)
      EXPECT_GT(err, 1e-4) << name << " threshold " << other << " is not told apart";
      ++differing;
    }
    if (e["inputs_between_5_and_7"].get<int>() > 0) EXPECT_GT(differing, 0) << name;
  }
  EXPECT_EQ(checked, 10);
}

TEST(GoldenEngine, SmolLM2Int8ModesMatchNumpyReference) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "no " << test::smollm_q4_1();
  const json g = load_golden("logits_smollm2.json")["perplexity"];
  const json ref = load_golden("int8_smollm2.json");
  const int chunks = ref["kl_chunks"].get<int>(), ctx = ref["ctx"].get<int>();
  ASSERT_FALSE(g["add_bos"].get<bool>());  // the chunks are used as stored
  auto tokens = g["tokens"].get<std::vector<int32_t>>();
  tokens.resize((size_t)chunks * ctx);
  auto m = open_model(test::smollm_q4_1());
  const std::vector<float> base = scored_log_softmax(*m, tokens, ctx, chunks);
  const int V = m->cfg.n_vocab;
  const size_t rows = base.size() / V;
  std::vector<std::vector<float>> int8_rows;  // LLM.int8()'s weights (bitsandbytes' int8 rows), kept alive here
  for (const char* mode : {"w8a8_act", "llm_int8"}) {
    for (LayerWeights& L : m->layers)
      for (Linear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
        const bool w8a8 = std::string(mode) == "w8a8_act";
        l->mode = w8a8 ? LinearMode::W8A8 : LinearMode::Int8Outlier;
        l->threshold = ref["threshold"].get<float>();
        if (!w8a8) {
          int8_rows.push_back(quantize_rows_absmax_int8(l->w, l->out, l->in, Int8Round::Multiply).w);
          l->w = int8_rows.back().data();
        }
      }
    const std::vector<float> q = scored_log_softmax(*m, tokens, ctx, chunks);
    double kl = 0;
    for (size_t r = 0; r < rows; ++r) {
      const float* p = base.data() + r * V;
      const float* l = q.data() + r * V;
      double k = 0;
      for (int t = 0; t < V; ++t) k += std::exp((double)p[t]) * ((double)p[t] - l[t]);
      kl += k;
    }
    kl /= rows;
    const double want = ref["modes"][mode]["kl_mean"].get<double>();
    std::printf("[ golden ] SmolLM2 %s, %zu positions: mean KL(f32 || mode) ctrust %.5f, numpy reference %.5f\n",
                mode, rows, kl, want);
    // 25%: the spread of this statistic across BLAS kernels (summation orders) measured on one machine with
    // OPENBLAS_CORETYPE = Haswell, Zen, SkylakeX, Cooperlake, Sandybridge, Nehalem, Core2, Barcelona, Prescott:
    // w8a8_act 0.0261-0.0298 (numpy 0.0289: -9.7% .. +2.9%), llm_int8 0.0159-0.0183 (numpy 0.0159: +0.4% .. +15.3%).
    // The exact formulas are pinned by SmolLM2Int8LinearsMatchNumpyReference; this end-to-end check still fails
    // without rounding (KL 0) or without the outlier split (llm_int8 0.031, +94%).
    EXPECT_NEAR(kl / want, 1.0, 0.25) << mode;
  }
}
