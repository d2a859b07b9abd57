// Token-level KL: hand-computed statistics, the compact top-k baseline, and llama.cpp goldens
// (tests/golden/kld_*.json, made by scripts/ref/make_kld_golden.py) on stories260K and SmolLM2-135M
// against Q8_0-/Q4_0-rounded copies written by ctrust's GGUF writer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "base/error.h"
#include "eval/kld.h"
#include "io/export.h"
#include "io/gguf.h"
#include "pipeline/kld_run.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The golden text: the first 3000 bytes of wikitext-2 test, cut after the last newline.
std::string golden_text(size_t bytes) {
  std::string t = read_all(test::shared_dir() + "/data/wikitext-2-raw/wiki.test.raw");
  t.resize(std::min(t.size(), bytes));
  return t;
}

// A copy of `src` with 2-D weights rounded to `type` by ctrust's GGUF writer (made once, in the cache).
std::string rounded_copy(const std::string& src, const std::string& stem, const std::string& type) {
  const std::string dir = test::cache_dir() + "/models";
  fs::create_directories(dir);
  const std::string out = dir + "/" + stem + "." + type + ".gguf";
  if (!fs::exists(out)) {
    const std::string tmp = out + ".tmp" + std::to_string(::getpid());
    SaveOptions o;
    o.type = ggml_type_from_name(type);
    save_gguf(load_model(src), tmp, o);
    fs::rename(tmp, out);
  }
  return out;
}

KldOptions opt64() {
  KldOptions o;
  o.n_ctx = 64;
  o.max_chunks = 1;
  return o;
}

const Model& stories() {
  static auto m = open_model(test::stories_gguf());
  return *m;
}

void expect_stats_near(const KldStats& s, const nlohmann::json& g, double tol_kl, const std::string& what) {
  EXPECT_NEAR(s.kl_mean, g["kl_mean"].get<double>(), tol_kl) << what;
  EXPECT_NEAR(s.kl_stderr, g["kl_stderr"].get<double>(), tol_kl) << what;
  const auto pct = g["kl_percentiles"].get<std::vector<double>>();
  ASSERT_EQ(pct.size(), s.kl_pct.size());
  for (size_t i = 0; i < pct.size(); i++) EXPECT_NEAR(s.kl_pct[i], pct[i], 4 * tol_kl + 1e-3 * pct[i]) << what << i;
  EXPECT_NEAR(s.ppl_base, g["ppl_base"].get<double>(), 1e-3 * s.ppl_base) << what;
  EXPECT_NEAR(s.ppl_b, g["ppl_b"].get<double>(), 1e-3 * s.ppl_b) << what;
  EXPECT_NEAR(s.ln_ppl_ratio, g["ln_ppl_ratio"].get<double>(), 2e-4) << what;
  EXPECT_NEAR(s.cor_ln_ppl, g["cor_ln_ppl"].get<double>(), 1e-4) << what;
  EXPECT_NEAR(s.dp_mean, g["dp_mean"].get<double>(), 1e-4) << what;
  EXPECT_NEAR(s.dp_rms, g["dp_rms"].get<double>(), 1e-4) << what;
  // A top-token tie broken differently could move one token; none is expected at these precisions.
  EXPECT_NEAR(s.same_top, g["same_top"].get<double>(), 1.5 / double(s.n_tokens)) << what;
}

// ctrust lockstep KL of base vs each rounded copy against llama.cpp on the F32 copies.
// tol_tok: per-token agreement with llama.cpp's float64 KL of the same logits (arithmetic differences);
// tol16: per-token agreement with llama.cpp's own 16-bit-baseline arithmetic.
void check_golden(const Model& base, const std::string& base_path, const std::string& stem, const std::string& golden,
                  const std::vector<std::string>& types, double tol_tok, double tol16) {
  std::ifstream in(test::golden_dir() + "/" + golden);
  ASSERT_TRUE(in) << "missing golden file " << golden;
  const nlohmann::json g = nlohmann::json::parse(in);
  const std::string text = golden_text(g["text_bytes"].get<size_t>());
  const int n_ctx = g["n_ctx"], n_chunks = g["n_chunks"];
  // Same tokens as llama.cpp.
  std::vector<int32_t> toks = base.tok.encode(text, true);
  const auto gt = g["tokens"].get<std::vector<int32_t>>();
  ASSERT_GE(toks.size(), gt.size());
  for (size_t i = 0; i < gt.size(); i++)
    if (i % size_t(n_ctx) != 0) {  // chunk starts are BOS-replaced
      ASSERT_EQ(toks[i], gt[i]) << "token " << i;
    }
  for (const std::string& qt : types) {
    const nlohmann::json& p = g["pairs"][qt];
    auto b = open_model(rounded_copy(base_path, stem, qt));
    KldOptions opt;
    opt.n_ctx = n_ctx;
    opt.max_chunks = n_chunks;
    KldStats s = kl_divergence(base, *b, text, opt);
    ASSERT_EQ(s.n_chunks, n_chunks);
    const auto kl = p["exact"]["kl"].get<std::vector<double>>();
    const auto kl16 = p["llamacpp16"]["kl"].get<std::vector<double>>();
    ASSERT_EQ(s.per_token_kl.size(), kl.size());
    double max_err = 0, max_err16 = 0;
    for (size_t i = 0; i < kl.size(); i++) {
      EXPECT_NEAR(s.per_token_kl[i], kl[i], tol_tok + 1e-3 * kl[i]) << qt << " token " << i;
      EXPECT_NEAR(s.per_token_kl[i], kl16[i], tol16 + 1e-3 * kl16[i]) << qt << " token " << i << " (16-bit)";
      max_err = std::max(max_err, std::abs(s.per_token_kl[i] - kl[i]));
      max_err16 = std::max(max_err16, std::abs(s.per_token_kl[i] - kl16[i]));
    }
    expect_stats_near(s, p["exact"]["stats"], tol_tok, qt);
    EXPECT_NEAR(s.kl_mean, p["llamacpp16"]["stats"]["kl_mean"].get<double>(), tol16) << qt << " (16-bit)";
    std::printf("  %s %s: KL %.6g (llama.cpp f64 %.6g, 16-bit %.6g), max |Δ| per token %.2g / %.2g\n",
                golden.c_str(), qt.c_str(), s.kl_mean, p["exact"]["stats"]["kl_mean"].get<double>(),
                p["llamacpp16"]["stats"]["kl_mean"].get<double>(), max_err, max_err16);
  }
}

}  // namespace

TEST(EvalKld, AccumulatorHandValues) {
  KldAccumulator acc;
  // Token 1: base (.5, .25, .25), B (.25, .5, .25), correct token 0:
  // KL = .5 ln 2 + .25 ln .5 = .25 ln 2; Δp = .25 - .5; NLL base ln 2, B ln 4; tops differ.
  float b1[3] = {std::log(0.5f), std::log(0.25f), std::log(0.25f)};
  float q1[3] = {std::log(0.25f), std::log(0.5f), std::log(0.25f)};
  acc.add(b1, q1, 3, 0);
  // Token 2: identical (.2, .3, .5), correct token 2 (p = .5): KL 0, Δp 0, same top.
  float b2[3] = {std::log(0.2f), std::log(0.3f), std::log(0.5f)};
  acc.add(b2, b2, 3, 2);
  KldStats s = acc.finish();
  const double ln2 = std::log(2.0);
  EXPECT_EQ(s.n_tokens, 2);
  EXPECT_NEAR(s.kl_mean, 0.125 * ln2, 1e-7);
  EXPECT_NEAR(s.kl_stderr, 0.125 * ln2, 1e-7);  // two values {x, 0}: sd x/sqrt2, se x/2
  EXPECT_NEAR(s.kl_pct[0], 0.25 * ln2, 1e-7);     // max
  EXPECT_NEAR(s.kl_pct[5], 0.125 * ln2, 1e-7);    // median
  EXPECT_NEAR(s.kl_pct[10], 0.0, 1e-7);           // min
  EXPECT_DOUBLE_EQ(s.same_top, 0.5);
  EXPECT_NEAR(s.dp_mean, -0.125, 1e-7);
  EXPECT_NEAR(s.dp_rms, std::sqrt(0.0625 / 2), 1e-7);
  EXPECT_NEAR(s.dp_pct[0], 0.0, 1e-7);            // max
  EXPECT_NEAR(s.dp_pct[5], -0.0625, 1e-7);        // 75%: 0.75 of the way from -0.25 to 0
  EXPECT_NEAR(s.dp_pct[12], -0.25, 1e-7);         // min
  EXPECT_NEAR(s.ppl_base, 2.0, 1e-6);
  EXPECT_NEAR(s.ppl_b, std::pow(2.0, 1.5), 1e-6);
  EXPECT_NEAR(s.ppl_ratio, std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(s.ln_ppl_ratio, 0.5 * ln2, 1e-7);
  nlohmann::json j = s.to_json();
  EXPECT_TRUE(j["kl_percentiles"].contains("p99.9"));
  EXPECT_TRUE(j["dp_percentiles"].contains("p75"));
  EXPECT_TRUE(j["dp_percentiles"].contains("median"));
  EXPECT_THROW(acc.add(b1, q1, 3, 3), Error);
  EXPECT_THROW(KldAccumulator{}.finish(), Error);
}

TEST(EvalKld, CorrelationOfTokenNlls) {
  // Three tokens whose B-probabilities of the correct token are the squares of the base ones:
  // nll_B = 2 nll_base exactly, so the correlation is 1 and ln(PPL_B/PPL_base) = mean nll_base.
  KldAccumulator acc;
  const float p[3] = {0.9f, 0.6f, 0.3f};
  double sum = 0;
  for (float x : p) {
    float b[2] = {std::log(x), std::log(1 - x)};
    float q[2] = {std::log(x * x), std::log(1 - x * x)};
    acc.add(b, q, 2, 0);
    sum += -std::log(double(x));
  }
  KldStats s = acc.finish();
  EXPECT_NEAR(s.cor_ln_ppl, 1.0, 1e-6);
  EXPECT_NEAR(s.ln_ppl_ratio, sum / 3, 1e-6);
}

TEST(EvalKld, TopKHandValues) {
  // base (.5, .3, .2), B (.25, .25, .5). Top-1 of base = token 0; rest mass .5 in base, .75 in B:
  // coarsened KL = .5 ln(.5/.25) + .5 ln(.5/.75); exact KL = .5 ln 2 + .3 ln 1.2 + .2 ln .4.
  const float lq[3] = {std::log(0.25f), std::log(0.25f), std::log(0.5f)};
  const int32_t ids[2] = {0, 1};
  const float lp[2] = {std::log(0.5f), std::log(0.3f)};
  std::vector<uint8_t> mark;
  const double k1 = kl_topk_token(ids, lp, 1, std::log(0.5f), lq, 3, mark);
  EXPECT_NEAR(k1, 0.5 * std::log(2.0) + 0.5 * std::log(0.5 / 0.75), 1e-6);
  const double k2 = kl_topk_token(ids, lp, 2, std::log(0.2f), lq, 3, mark);
  const double exact = 0.5 * std::log(2.0) + 0.3 * std::log(1.2) + 0.2 * std::log(0.4);
  EXPECT_NEAR(k2, exact, 1e-6);  // k = n-1: the rest bucket is the last token itself
  EXPECT_LE(k1, exact);          // coarsening never increases KL
  for (uint8_t m : mark) EXPECT_EQ(m, 0);
  // add_topk: same top (B's top is token 2, base's is 0 -> differ), Δp and NLL from the stored target log-prob.
  KldAccumulator acc;
  acc.add_topk(ids, lp, 1, std::log(0.5f), std::log(0.2f), lq, 3, 2);
  KldStats s = acc.finish();
  EXPECT_NEAR(s.kl_mean, k1, 1e-6);
  EXPECT_DOUBLE_EQ(s.same_top, 0.0);
  EXPECT_NEAR(s.dp_mean, 0.5 - 0.2, 1e-6);
  EXPECT_NEAR(s.ppl_base, 5.0, 1e-5);
  const int32_t bad[1] = {3};
  EXPECT_THROW(acc.add_topk(bad, lp, 1, std::log(0.5f), -1.f, lq, 3, 0), Error);
}

TEST(EvalKld, Stories260kMatchesLlamaCpp) {
  // Logits agree to ~1e-6 between the engines on this tiny model; the 16-bit baseline costs ~1e-4 per token.
  check_golden(stories(), test::stories_gguf(), "stories260K", "kld_stories260k.json", {"q8_0", "q4_0"}, 2e-5, 3e-4);
}

// SmolLM2: base = F32 copy of the Q4_1 weights; 2 chunks of 128. Per-token KL agrees with llama.cpp's to ~1e-5.
TEST(EvalKld, SmolLM2Q8_0MatchesLlamaCpp) {
  if (!fs::exists(test::smollm_f32()) || !fs::exists(test::smollm_q4_1()))
    GTEST_SKIP() << "SmolLM2 F32/Q4_1 not in the cache (scripts/setup.sh)";
  auto base = open_model(test::smollm_f32());
  check_golden(*base, test::smollm_q4_1(), "SmolLM2-135M-Instruct", "kld_smollm2.json", {"q8_0"}, 1e-4, 1e-3);
}

TEST(EvalKld, SmolLM2Q4_0MatchesLlamaCpp) {
  if (!fs::exists(test::smollm_f32()) || !fs::exists(test::smollm_q4_1()))
    GTEST_SKIP() << "SmolLM2 F32/Q4_1 not in the cache (scripts/setup.sh)";
  auto base = open_model(test::smollm_f32());
  check_golden(*base, test::smollm_q4_1(), "SmolLM2-135M-Instruct", "kld_smollm2.json", {"q4_0"}, 1e-4, 2e-3);
}

TEST(EvalKld, RefusesDifferentTokenizers) {
  LoadOptions o;
  o.tokenizer_path = test::shared_dir() + "/models/aidreams260K/tok512_dreams.bin";
  auto other = open_model(test::shared_dir() + "/models/aidreams260K/aidreams260K.bin", o);
  const std::string text = golden_text(3000);
  try {
    kl_divergence(stories(), *other, text, opt64());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different tokenizers"), std::string::npos) << e.what();
  }
  KldBase kb = make_kld_base(stories(), text, 4, opt64());
  EXPECT_THROW(kl_divergence(kb, *other, "", {}), Error);
}

TEST(EvalKld, SavedBaselineTopK) {
  const Model& base = stories();
  auto b = open_model(rounded_copy(test::stories_gguf(), "stories260K", "q4_0"));
  const std::string text = golden_text(3000);
  KldOptions opt = opt64();
  opt.n_ctx = 128;
  opt.max_chunks = 2;
  const std::string path = test::scratch_dir() + "/kld_base.bin";

  // k = vocabulary: nothing is left out, the saved baseline gives the exact statistics.
  const KldStats exact = kl_divergence(base, *b, text, opt);
  save_kld_base(make_kld_base(base, text, base.cfg.n_vocab, opt), path);
  const KldStats full = kl_divergence(load_kld_base(path), *b, text, opt);
  EXPECT_EQ(full.mode, "topk");
  ASSERT_EQ(full.n_tokens, exact.n_tokens);
  for (size_t i = 0; i < exact.per_token_kl.size(); i++)
    EXPECT_NEAR(full.per_token_kl[i], exact.per_token_kl[i], 1e-5 + 1e-5 * exact.per_token_kl[i]) << i;
  EXPECT_DOUBLE_EQ(full.same_top, exact.same_top);
  EXPECT_NEAR(full.ppl_base, exact.ppl_base, 1e-6 * exact.ppl_base);
  EXPECT_NEAR(full.dp_mean, exact.dp_mean, 1e-7);

  // k = 8: a lower bound per token, same-top/PPL/Δp still exact; the lockstep run reports the same
  // approximation and its error.
  KldOptions opt8 = opt;
  opt8.top_k = 8;
  const KldStats lock8 = kl_divergence(base, *b, text, opt8);
  save_kld_base(make_kld_base(base, text, 8, opt), path);
  const KldBase kb8 = load_kld_base(path);
  EXPECT_EQ(fs::file_size(path), 32u + kb8.tokens.size() * 4 + size_t(exact.n_tokens) * (8 + 8 * 8));
  const KldStats top8 = kl_divergence(kb8, *b, "", opt);
  ASSERT_EQ(top8.n_tokens, exact.n_tokens);
  for (size_t i = 0; i < exact.per_token_kl.size(); i++) EXPECT_LE(top8.per_token_kl[i], exact.per_token_kl[i] + 1e-6);
  EXPECT_NEAR(lock8.topk_kl_mean, top8.kl_mean, 1e-6);
  EXPECT_NEAR(lock8.topk_err_mean, exact.kl_mean - top8.kl_mean, 1e-6);
  EXPECT_GT(lock8.topk_err_mean, 0.0);
  EXPECT_LT(lock8.topk_err_rel, 0.5);
  EXPECT_DOUBLE_EQ(top8.same_top, exact.same_top);
  EXPECT_NEAR(top8.ppl_b, exact.ppl_b, 1e-6 * exact.ppl_b);
  EXPECT_NEAR(top8.ln_ppl_ratio, exact.ln_ppl_ratio, 1e-6);

  // A different text is refused.
  EXPECT_THROW(kl_divergence(kb8, *b, "Once upon a time " + text, opt), Error);
}

TEST(EvalKld, BadBaselineFiles) {
  const std::string dir = test::scratch_dir();
  KldBase kb = make_kld_base(stories(), golden_text(3000), 4, opt64());
  const std::string good = dir + "/kld_good.bin";
  save_kld_base(kb, good);
  const std::string bytes = read_all(good);
  auto expect_error = [&](const std::string& name, const std::string& content, const char* needle) {
    const std::string p = dir + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    try {
      load_kld_base(p);
      ADD_FAILURE() << name << ": expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("kld_magic.bin", "_logits_" + bytes.substr(8), "not a ctrust KL baseline");
  expect_error("kld_short.bin", bytes.substr(0, bytes.size() - 3), "truncated");
  expect_error("kld_empty.bin", "", "not a ctrust KL baseline");
  std::string bad_id = bytes;
  const size_t first_ids = 32 + kb.tokens.size() * 4 + 8;
  const int32_t big = 1 << 20;
  std::memcpy(bad_id.data() + first_ids, &big, 4);
  expect_error("kld_id.bin", bad_id, "out of range");
  std::string bad_hdr = bytes;
  const uint32_t zero = 0;
  std::memcpy(bad_hdr.data() + 8 + 12, &zero, 4);  // top_k = 0
  expect_error("kld_hdr.bin", bad_hdr, "bad header");
}

// Paired comparison (kld --save-tokens / --paired): two roundings of stories260K scored on the same tokens against
// the same saved baseline; the paired statistics recomputed by hand from the per-token files.
TEST(EvalKld, PairedComparisonOfTwoRoundings) {
  const Model& base = stories();
  auto q8 = open_model(rounded_copy(test::stories_gguf(), "stories260K", "q8_0"));
  auto q4 = open_model(rounded_copy(test::stories_gguf(), "stories260K", "q4_0"));
  const std::string text = golden_text(3000);
  KldOptions opt = opt64();
  opt.max_chunks = -1;
  const std::string dir = test::scratch_dir();
  const KldBase kb = make_kld_base(base, text, 16, opt);
  ASSERT_GE(kb.n_chunks, 4);
  const KldStats s8 = kl_divergence(kb, *q8, text, opt), s4 = kl_divergence(kb, *q4, text, opt);
  save_kld_tokens(kld_tokens(s8, "base.bin", "q8_0"), dir + "/kld_q8.tsv");
  save_kld_tokens(kld_tokens(s4, "base.bin", "q4_0"), dir + "/kld_q4.tsv");
  const KldTokens a = load_kld_tokens(dir + "/kld_q8.tsv"), b = load_kld_tokens(dir + "/kld_q4.tsv");
  ASSERT_EQ(a.n(), s8.n_tokens);
  EXPECT_EQ(a.n_chunks, kb.n_chunks);
  EXPECT_EQ(a.mode, "topk");
  EXPECT_EQ(a.top_k, 16);
  EXPECT_EQ(a.model, "q8_0");
  for (size_t i = 0; i < size_t(a.n()); i++) {
    EXPECT_NEAR(a.kl[i], s8.per_token_kl[i], 1e-8 * (1 + s8.per_token_kl[i])) << i;
    EXPECT_NEAR(b.nll_b[i], s4.per_token_nll_b[i], 1e-8 * (1 + s4.per_token_nll_b[i])) << i;
    EXPECT_EQ(a.target[i], s8.per_token_target[i]) << i;
    EXPECT_EQ(b.same[i], s4.per_token_same[i]) << i;
  }

  const KldPaired p = kld_paired(a, b);
  EXPECT_NEAR(p.kl.a, s8.kl_mean, 1e-8);
  EXPECT_NEAR(p.kl.b, s4.kl_mean, 1e-8);
  EXPECT_NEAR(p.kl.delta, s4.kl_mean - s8.kl_mean, 1e-8);
  EXPECT_NEAR(p.nll.delta, s4.ln_ppl_ratio - s8.ln_ppl_ratio, 1e-7);
  EXPECT_NEAR(p.same_top.delta, s4.same_top - s8.same_top, 1e-12);
  // Standard errors by hand: tokens, and chunk means of the differences.
  const size_t n = size_t(a.n()), nc = size_t(a.n_chunks), per = n / nc;
  double m = 0, v = 0;
  std::vector<double> cm(nc, 0.0);
  for (size_t i = 0; i < n; i++) m += b.kl[i] - a.kl[i], cm[i / per] += (b.kl[i] - a.kl[i]) / double(per);
  m /= double(n);
  for (size_t i = 0; i < n; i++) v += (b.kl[i] - a.kl[i] - m) * (b.kl[i] - a.kl[i] - m);
  EXPECT_NEAR(p.kl.se_tokens, std::sqrt(v / double(n - 1) / double(n)), 1e-9);
  double vc = 0;
  for (double x : cm) vc += (x - m) * (x - m);
  EXPECT_NEAR(p.kl.se_chunks, std::sqrt(vc / double(nc - 1) / double(nc)), 1e-9);
  // Q4_0 is further from the base than Q8_0 on every chunk: the interval excludes 0.
  EXPECT_GT(p.kl.delta, 0.0);
  EXPECT_GT(p.kl.ci.low, 0.0);
  EXPECT_LE(p.kl.ci.low, p.kl.delta);
  EXPECT_GE(p.kl.ci.high, p.kl.delta);
  EXPECT_GT(p.kl_ratio, 1.0);
  EXPECT_NEAR(p.b_lower + p.b_higher, 1.0, 0.05);
  // Seeded: the same interval again.
  EXPECT_EQ(kld_paired(a, b).kl.ci.low, p.kl.ci.low);
  // A run against itself: no difference.
  const KldPaired same = kld_paired(a, a);
  EXPECT_EQ(same.kl.delta, 0.0);
  EXPECT_EQ(same.kl.ci.low, 0.0);
  EXPECT_EQ(same.kl.ci.high, 0.0);
  EXPECT_DOUBLE_EQ(same.kl_ratio, 1.0);

  auto expect_error = [](const KldTokens& x, const KldTokens& y, const char* needle) {
    try {
      kld_paired(x, y);
      ADD_FAILURE() << "expected an error: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  KldOptions fewer = opt;
  fewer.max_chunks = kb.n_chunks - 1;
  expect_error(a, kld_tokens(kl_divergence(kb, *q4, text, fewer), "base.bin", "q4_0"), "different tokens");
  expect_error(a, kld_tokens(kl_divergence(base, *q4, text, opt), "base", "q4_0"), "different kinds");
  KldTokens other_base = b;
  other_base.nll_base[3] += 0.5;
  expect_error(a, other_base, "not the same base");
  KldTokens other_text = b;
  other_text.target[5] = (other_text.target[5] + 1) % base.cfg.n_vocab;
  expect_error(a, other_text, "not the same text");

  // Bad files.
  const std::string bytes = read_all(dir + "/kld_q8.tsv");
  auto expect_load_error = [&](const std::string& name, const std::string& content, const char* needle) {
    const std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    try {
      load_kld_tokens(path);
      ADD_FAILURE() << name << ": expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_load_error("kld_t_magic.tsv", "x" + bytes, "not a ctrust kld tokens file");
  expect_load_error("kld_t_cut.tsv", bytes.substr(0, bytes.size() - 3), "tab-separated");
  expect_load_error("kld_t_chunks.tsv", bytes.substr(0, bytes.find("\n" + std::to_string(nc - 1) + "\t") + 1),
                    "n_chunks");
  std::string neg = bytes;
  const size_t row = neg.find("\n0\t") + 1;
  const size_t kl_at = neg.find('\t', neg.find('\t', row) + 1) + 1;
  neg.insert(kl_at, "x");
  expect_load_error("kld_t_neg.tsv", neg, "bad value");
}

// --save-tokens without -m is refused before anything runs, with a local and with a served base alike (the served
// path used to return after --save-base without writing the file it was asked for).
TEST(EvalKld, SaveTokensNeedsAModelForEveryBase) {
  KldRunOptions local;
  local.base = test::stories_gguf();
  local.file = "/nonexistent.txt";
  local.save_base = test::scratch_dir() + "/unused_base.ctrust";
  local.save_tokens = test::scratch_dir() + "/unused_tokens.tsv";
  KldRunOptions served = local;
  served.base.clear();
  served.served_model = "some-model";
  for (const KldRunOptions* o : {&local, &served}) {
    try {
      kld_run(*o);
      ADD_FAILURE() << "accepted --save-tokens without -m";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--save-tokens needs -m"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(local.save_base));
}
