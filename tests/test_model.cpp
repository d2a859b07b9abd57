#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "base/error.h"
#include "model/model.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Model> stories_bin() {
  LoadOptions o;
  o.tokenizer_path = test::stories_tok();
  return open_model(test::stories_bin(), o);
}

// A fixed token sequence: BOS + the start of the model's greedy story, then arbitrary ids.
std::vector<int32_t> sample_seq(const Model& m, int n) {
  std::vector<int32_t> t{1};
  for (int i = 1; i < n; ++i) t.push_back((int32_t)((i * 37 + 11) % m.cfg.n_vocab));
  return t;
}

std::vector<float> batched_logits(const Model& m, const std::vector<int32_t>& t) {
  KVCache c = make_cache(m, (int)t.size());
  std::vector<float> out(t.size() * m.cfg.n_vocab);
  forward(m, c, t.data(), (int)t.size(), out.data());
  return out;
}

}  // namespace

TEST(Model, Llama2cLoadsStories260K) {
  auto m = stories_bin();
  EXPECT_EQ(m->cfg.dim, 64);
  EXPECT_EQ(m->cfg.hidden_dim, 172);
  EXPECT_EQ(m->cfg.n_layers, 5);
  EXPECT_EQ(m->cfg.n_heads, 8);
  EXPECT_EQ(m->cfg.n_kv_heads, 4);
  EXPECT_EQ(m->cfg.head_dim, 8);
  EXPECT_EQ(m->cfg.n_vocab, 512);
  EXPECT_EQ(m->cfg.n_ctx, 512);
  EXPECT_TRUE(m->cfg.tied_output);
  EXPECT_EQ(m->cfg.rope, RopeLayout::Interleaved);
  EXPECT_EQ(m->file.format, "llama2c");
  EXPECT_EQ(m->output.w, m->tok_embd);
  EXPECT_EQ(m->layers[4].w_down.in, 172);
  EXPECT_EQ(m->file.get("blk.2.ffn_gate.weight").ne, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(m->tok.n_vocab(), 512);
}

TEST(Model, Stories260KGreedyStory) {
  auto m = stories_bin();
  GenerateOptions g;
  g.max_tokens = 40;
  std::vector<int32_t> streamed;
  auto ids = generate(*m, {m->tok.bos()}, g, [&](int32_t t) {
    streamed.push_back(t);
    return true;
  });
  EXPECT_EQ(ids, streamed);
  std::string text = m->tok.decode(ids);
  while (!text.empty() && text[0] == ' ') text.erase(0, 1);
  const std::string expected =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
  EXPECT_EQ(text.substr(0, expected.size()), expected) << text;
}

TEST(Model, GenerateStopsAndSamplesReproducibly) {
  auto m = stories_bin();
  GenerateOptions g;
  g.max_tokens = 60;
  g.stop_strings = {"Lily"};
  auto ids = generate(*m, {1}, g);
  std::string text = m->tok.decode(ids);
  EXPECT_NE(text.find("Lily"), std::string::npos);
  EXPECT_EQ(text.find("Lily") + 4, text.size()) << text;  // stopped right after the stop string

  g.stop_strings.clear();
  g.max_tokens = 5;
  EXPECT_EQ(generate(*m, {1}, g).size(), 5u);
  int calls = 0;
  EXPECT_EQ(generate(*m, {1}, g, [&](int32_t) { return ++calls < 3; }).size(), 3u);

  g.max_tokens = 30;
  g.temperature = 1.0f;
  g.top_p = 0.9f;
  g.seed = 42;
  auto a = generate(*m, {1}, g), b = generate(*m, {1}, g);
  EXPECT_EQ(a, b);
  g.seed = 43;
  auto c = generate(*m, {1}, g);
  EXPECT_NE(a, c);
  // An EOS-terminated sample never returns EOS itself.
  for (int32_t t : a) EXPECT_NE(t, m->tok.eos());
}

TEST(Model, SampleTokenProcedure) {
  std::mt19937_64 rng(7);
  float l[4] = {0.0f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(sample_token(l, 4, 0.0f, 1.0f, rng), 1);  // greedy: first maximum
  // top_p tiny: only the most probable token (lowest id among equals) survives.
  for (int i = 0; i < 20; ++i) {
    float x[4] = {0.0f, 2.0f, 2.0f, -1.0f};
    EXPECT_EQ(sample_token(x, 4, 1.0f, 0.01f, rng), 1);
  }
  // Without truncation the frequencies follow softmax(l / T).
  std::map<int, int> counts;
  for (int i = 0; i < 20000; ++i) {
    float x[4] = {0.0f, 1.0f, 2.0f, -1.0f};
    counts[sample_token(x, 4, 2.0f, 1.0f, rng)]++;
  }
  double z = 0;
  double p[4];
  for (int i = 0; i < 4; ++i) z += p[i] = std::exp((i == 3 ? -1.0 : i) / 2.0);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / 20000.0, p[i] / z, 0.015) << i;
}

TEST(Model, IncrementalDecodeEqualsPrefill) {
  auto m = stories_bin();
  auto t = sample_seq(*m, 40);
  auto full = batched_logits(*m, t);
  const int V = m->cfg.n_vocab;
  KVCache c = make_cache(*m, 64);
  std::vector<float> row(V);
  float max_diff = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    forward(*m, c, &t[i], 1, row.data());
    for (int j = 0; j < V; ++j)
      max_diff = std::max(max_diff, std::fabs(row[j] - full[i * V + j]) / (1.0f + std::fabs(full[i * V + j])));
  }
  EXPECT_LT(max_diff, 1e-5f);  // relative to 1 + |logit| (GEMV and GEMM sum in different orders)
  EXPECT_EQ(c.n_past, 40);
  // Mixed block sizes, last-row-only logits.
  c.n_past = 0;
  forward(*m, c, t.data(), 17, nullptr);
  ForwardOptions last;
  last.all_logits = false;
  forward(*m, c, t.data() + 17, 23, row.data(), last);
  for (int j = 0; j < V; ++j) EXPECT_NEAR(row[j], full[39 * V + j], 1e-5 * (1 + std::fabs(row[j])));
}

TEST(Model, TruncateReusesPrefix) {
  auto m = stories_bin();
  auto t = sample_seq(*m, 30);
  auto t2 = t;
  for (int i = 20; i < 30; ++i) t2[i] = (t[i] + 5) % m->cfg.n_vocab;
  auto ref2 = batched_logits(*m, t2);
  const int V = m->cfg.n_vocab;
  KVCache c = make_cache(*m, 30);
  std::vector<float> out(30 * V);
  forward(*m, c, t.data(), 30, out.data());
  c.truncate(20);
  EXPECT_EQ(c.n_past, 20);
  forward(*m, c, t2.data() + 20, 10, out.data());
  for (int i = 0; i < 10; ++i)
    for (int j = 0; j < V; ++j) ASSERT_NEAR(out[i * V + j], ref2[(20 + i) * V + j], 1e-5 * (1 + std::fabs(out[i * V + j])));
}

TEST(Model, TokenLogprobsAcrossChunks) {
  auto m = stories_bin();
  auto t = sample_seq(*m, 300);
  auto lp = token_logprobs(*m, t);
  ASSERT_EQ(lp.size(), 299u);
  auto full = batched_logits(*m, t);
  const int V = m->cfg.n_vocab;
  for (int i = 0; i < 299; i += 7) {
    std::vector<float> row(full.begin() + (size_t)i * V, full.begin() + (size_t)(i + 1) * V);
    log_softmax(row.data(), V);
    EXPECT_NEAR(lp[i], row[t[i + 1]], 1e-5 * (1 + std::fabs(row[t[i + 1]])));  // relative: clang -O1 (sanitizer tree) differs by 1.0014e-5 at -6.13
  }
  double z = 0;
  std::vector<float> row(full.begin(), full.begin() + V);
  log_softmax(row.data(), V);
  for (float x : row) z += std::exp((double)x);
  EXPECT_NEAR(z, 1.0, 1e-5);
  // Longer than the 512-token context: chunks restart the cache; the boundary token is scored from the
  // previous chunk's last position.
  auto t2 = sample_seq(*m, 600);
  auto lp2 = token_logprobs(*m, t2);
  ASSERT_EQ(lp2.size(), 599u);
  // token_logprobs runs batches of 128 positions: positions 0-255 come from the same two batches in both calls
  // (bit-identical), position 256 on from a third batch of 44 rows (300 tokens) or 128 rows (600 tokens). BLAS
  // rounds a row differently with the row count of the product (and the thread count), so these agree to float
  // error only: measured max |difference| 8.6e-6 (1 thread), 1.14e-5 (2), 7.6e-6 (3, 4 threads) at log-probs of
  // -12 to -25 (9-12 ulps), i.e. at most 1.14e-6 relative to 1 + |lp|: the bound below, as above, is 9x that.
  for (int i = 0; i < 256; ++i) ASSERT_EQ(lp2[i], lp[i]) << i;
  for (int i = 256; i < 299; ++i) ASSERT_NEAR(lp2[i], lp[i], 1e-5 * (1 + std::fabs(lp[i]))) << i;
  std::vector<int32_t> tail(t2.begin() + 512, t2.end());
  auto lpt = token_logprobs(*m, tail);
  for (size_t i = 0; i < lpt.size(); ++i) ASSERT_NEAR(lp2[512 + i], lpt[i], 1e-5);
  for (float x : lp2) ASSERT_TRUE(std::isfinite(x) && x <= 0);
}

TEST(Model, ObserverSeesEveryLinearInput) {
  auto m = stories_bin();
  std::map<std::string, int> seen;
  float max_abs_down = 0;
  LinearObserver obs = [&](int layer, std::string_view name, const float* x, int rows, int cols) {
    seen[std::string(name)]++;
    EXPECT_EQ(rows, 6);
    EXPECT_EQ(cols, name == "ffn_down" ? 172 : 64);
    if (name == "ffn_down")
      for (int i = 0; i < rows * cols; ++i) max_abs_down = std::max(max_abs_down, std::fabs(x[i]));
  };
  ForwardOptions o;
  o.observer = &obs;
  KVCache c = make_cache(*m, 8);
  auto t = sample_seq(*m, 6);
  forward(*m, c, t.data(), 6, nullptr, o);
  for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
    EXPECT_EQ(seen[n], 5) << n;
  EXPECT_GT(max_abs_down, 0.0f);
}

TEST(Model, LinearModesChangeLogitsSlightly) {
  auto m = stories_bin();
  auto t = sample_seq(*m, 20);
  auto ref = batched_logits(*m, t);
  for (auto& L : m->layers)
    for (Linear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) l->mode = LinearMode::W8A8;
  rebind_weights(*m);  // keeps the modes
  EXPECT_EQ(m->layers[3].w_up.mode, LinearMode::W8A8);
  auto q = batched_logits(*m, t);
  double max_diff = 0;
  for (size_t i = 0; i < q.size(); ++i) max_diff = std::max(max_diff, (double)std::fabs(q[i] - ref[i]));
  EXPECT_GT(max_diff, 1e-4);
  EXPECT_LT(max_diff, 0.5);
}

TEST(Model, LinearModeMetadataRoundTripAndErrors) {
  auto m = stories_bin();
  m->layers[1].wk.mode = LinearMode::W8A8;
  m->layers[2].w_down.mode = LinearMode::Int8Outlier;
  m->layers[2].w_down.threshold = 4.5f;
  std::vector<GgufKV> meta = linear_mode_metadata(*m);
  ASSERT_EQ(meta.size(), 1u);
  auto fresh = stories_bin();
  fresh->file.meta.push_back(meta[0]);
  apply_linear_mode_metadata(*fresh);
  EXPECT_EQ(fresh->layers[1].wk.mode, LinearMode::W8A8);
  EXPECT_EQ(fresh->layers[2].w_down.mode, LinearMode::Int8Outlier);
  EXPECT_EQ(fresh->layers[2].w_down.threshold, 4.5f);
  EXPECT_EQ(fresh->layers[2].w_up.mode, LinearMode::F32);
  EXPECT_EQ(meta[0].value.arr.back().s, "blk.2.ffn_down.weight=llm_int8:4.5");
  for (const char* bad : {"output.weight=w8a8", "token_embd.weight=llm_int8:6", "blk.0.attn_q.weight=llm_int8:-1",
                          "blk.0.attn_q.weight=fp4", "blk.99.attn_q.weight=w8a8",
                          "blk.0.attn_q.weight=int8:6" /* an older LLM.int8() file: f32 weights */}) {
    auto b = stories_bin();
    b->file.meta.push_back({"ctrust.linear_modes", GgufValue::str_array({bad})});
    EXPECT_THROW(apply_linear_mode_metadata(*b), Error) << bad;
  }
}

TEST(Model, BadInputsAreErrors) {
  auto m = stories_bin();
  KVCache c = make_cache(*m, 4);
  int32_t bad[2] = {1, 512};
  EXPECT_THROW(forward(*m, c, bad, 2, nullptr), Error);
  int32_t neg = -1;
  EXPECT_THROW(forward(*m, c, &neg, 1, nullptr), Error);
  EXPECT_EQ(c.n_past, 0);
  int32_t ok[5] = {1, 2, 3, 4, 5};
  EXPECT_THROW(forward(*m, c, ok, 5, nullptr), Error);
  forward(*m, c, ok, 4, nullptr);
  try {
    forward(*m, c, ok, 1, nullptr);
    FAIL() << "no overflow error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("overflow"), std::string::npos) << e.what();
  }
  EXPECT_THROW(generate(*m, {}, GenerateOptions{}), Error);

  // A llama2.c file one float short, or with a trailing byte, is rejected naming the file.
  const std::string dir = test::scratch_dir();
  std::ifstream in(test::stories_bin(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  for (std::string variant : {bytes.substr(0, bytes.size() - 4), bytes + "x", bytes.substr(0, 20)}) {
    const std::string p = dir + "/engine_bad_llama2c.bin";
    std::ofstream(p, std::ios::binary) << variant;
    try {
      load_llama2c_model(p, test::stories_tok());
      FAIL() << "accepted a bad file of " << variant.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
  // Header that disagrees with itself (n_kv_heads 3 does not divide n_heads 8).
  std::string h = bytes;
  int32_t three = 3;
  std::memcpy(h.data() + 16, &three, 4);
  const std::string p = dir + "/engine_bad_heads.bin";
  std::ofstream(p, std::ios::binary) << h;
  EXPECT_THROW(load_llama2c_model(p, test::stories_tok()), Error);
  // Shapes that disagree with the config are caught by make_model.
  LoadOptions o;
  o.tokenizer_path = test::stories_tok();
  LoadedModel lm = load_model(test::stories_bin(), o);
  lm.cfg.n_heads = 4;  // now q rows (64) != n_heads * head_dim (32)
  try {
    make_model(std::move(lm));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attn_q"), std::string::npos) << e.what();
  }
}

TEST(Model, AidreamsLoadsAndRuns) {
  const std::string dir = test::shared_dir() + "/models/aidreams260K";
  LoadOptions o;
  o.tokenizer_path = dir + "/tok512_dreams.bin";
  auto m = open_model(dir + "/aidreams260K.bin", o);
  GenerateOptions g;
  g.max_tokens = 20;
  auto ids = generate(*m, {m->tok.bos()}, g);
  EXPECT_GT(ids.size(), 3u);
  auto lp = token_logprobs(*m, std::vector<int32_t>{1, ids[0], ids[1], ids[2]});
  // Greedy tokens are the argmax, so each has log-prob above log(1/vocab).
  for (float x : lp) EXPECT_GT(x, -std::log((float)m->cfg.n_vocab));
}

TEST(Model, GgufAndLlama2cGiveIdenticalLogits) {
  auto a = stories_bin();
  auto b = open_model(test::stories_gguf());
  EXPECT_EQ(b->file.format, "gguf");
  EXPECT_EQ(b->cfg.rope, RopeLayout::Interleaved);
  EXPECT_EQ(b->cfg.n_kv_heads, a->cfg.n_kv_heads);
  auto t = sample_seq(*a, 64);
  auto la = batched_logits(*a, t), lb = batched_logits(*b, t);
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0) << "logits differ bitwise";
  GenerateOptions g;
  g.max_tokens = 30;
  EXPECT_EQ(generate(*a, {1}, g), generate(*b, {1}, g));
}

// The NeoX (Hugging Face) RoPE path on a real model: permuting each head's q/k rows from interleaved pairs
// (2i, 2i+1) to halves (i, i + head_dim/2) and switching the layout must give the same logits, since q.k is
// invariant when q and k are permuted alike.
TEST(Model, NeoXLayoutOfPermutedWeightsGivesSameLogits) {
  LoadOptions o;
  o.tokenizer_path = test::stories_tok();
  LoadedModel lm = load_model(test::stories_bin(), o);
  const int hd = lm.cfg.head_dim;
  for (int l = 0; l < lm.cfg.n_layers; ++l)
    for (const char* n : {"attn_q", "attn_k"}) {
      Tensor& t = lm.tensors.at(fmt::format("blk.{}.{}.weight", l, n));
      const int64_t in = t.cols(), rows = t.rows();
      std::vector<float> w(t.numel());
      for (int64_t h = 0; h < rows / hd; ++h)
        for (int j = 0; j < hd / 2; ++j)
          for (int half = 0; half < 2; ++half)
            std::memcpy(&w[(h * hd + j + half * hd / 2) * in], t.data + (h * hd + 2 * j + half) * in,
                        sizeof(float) * in);
      t.owned = std::move(w);
      t.data = t.owned.data();
    }
  lm.cfg.rope = RopeLayout::NeoX;
  auto neox = make_model(std::move(lm));
  auto ref = stories_bin();
  auto t = sample_seq(*ref, 48);
  auto a = batched_logits(*ref, t), b = batched_logits(*neox, t);
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, (double)std::fabs(a[i] - b[i]));
  EXPECT_LT(max_diff, 1e-4);
  // ... while the same permuted weights with interleaved RoPE are a different model.
  neox->cfg.rope = RopeLayout::Interleaved;
  auto c = batched_logits(*neox, t);
  double diff_wrong = 0;
  for (size_t i = 0; i < a.size(); ++i) diff_wrong = std::max(diff_wrong, (double)std::fabs(a[i] - c[i]));
  EXPECT_GT(diff_wrong, 0.01);
}

// log_softmax (vectorized sum with an error bound, the plain loop where the bound cannot decide) gives the floats
// of log_softmax_ref bit for bit, and log_softmax_argmax the index std::max_element gives on them: real logit rows
// of SmolLM2 (49,152 tokens) and Stories260K, the same rows sharpened and flattened, and the edge cases (one value,
// equal values, -inf, a zero maximum of either sign, NaN).
TEST(Model, LogSoftmaxEqualsReferenceBitForBit) {
  std::vector<std::vector<float>> rows;
  auto add_model_rows = [&](const Model& m, int n) {
    std::vector<int32_t> t{m.tok.bos() >= 0 ? m.tok.bos() : 1};
    for (int i = 1; i < n; ++i) t.push_back((int32_t)((i * 7919 + 13) % m.cfg.n_vocab));
    const auto all = batched_logits(m, t);
    const int V = m.cfg.n_vocab;
    for (int i = 0; i < n; ++i) {
      std::vector<float> r(all.begin() + (size_t)i * V, all.begin() + (size_t)(i + 1) * V);
      rows.push_back(r);
      for (float s : {0.25f, 4.0f, 40.0f}) {  // flatter and much sharper distributions (log-sum near 0)
        std::vector<float> q(r);
        for (float& x : q) x *= s;
        rows.push_back(q);
      }
    }
  };
  add_model_rows(*stories_bin(), 40);
  ASSERT_TRUE(fs::exists(test::smollm_q4_1())) << test::smollm_q4_1();
  add_model_rows(*open_model(test::smollm_q4_1()), 24);
  const float inf = INFINITY, nan = NAN;
  rows.push_back({3.5f});
  rows.push_back(std::vector<float>(49152, 1.25f));
  rows.push_back({0.0f, -0.0f, -3.0f, -inf, 0.0f});
  rows.push_back({-0.0f, 0.0f, -2.0f});
  rows.push_back({-inf, -inf});
  rows.push_back({1.0f, nan, 2.0f, -1.0f});
  std::vector<float> big(50000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = (float)std::sin(0.37 * (double)i) * 30.0f - (i % 97 == 0 ? inf : 0.0f);
  rows.push_back(big);
  int n_rows = 0;
  for (const auto& r : rows) {
    std::vector<float> a(r), b(r), c(r);
    log_softmax_ref(a.data(), (int)a.size());
    log_softmax(b.data(), (int)b.size());
    const int best = log_softmax_argmax(c.data(), (int)c.size());
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "row " << n_rows;
    ASSERT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float))) << "row " << n_rows;
    ASSERT_EQ(best, int(std::max_element(a.begin(), a.end()) - a.begin())) << "row " << n_rows;
    ++n_rows;
  }
  EXPECT_EQ(n_rows, 4 * (40 + 24) + 7);
}
