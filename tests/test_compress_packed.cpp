// Packed storage of compressed weights (issue 12, point 1): ctrust's own tensor types (CTRUST_QX, CTRUST_SPARSE,
// io/ctrust_types.h) and llama.cpp's Q5_0/Q5_1, hand-computed layouts, and exact save/reload round trips of
// real compression results on SmolLM2-135M (every reloaded weight equal bit for bit, logits identical).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <tuple>
#include <algorithm>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "compress/driver.h"
#include "compress/quant.h"
#include "io/ctrust_types.h"
#include "io/export.h"
#include "cli_run.h"
#include "test_compress_util.h"
#include "test_paths.h"

using namespace ctrust;

namespace {

bool same_bits(const float* a, const float* b, int64_t n) { return std::memcmp(a, b, size_t(n) * 4) == 0; }

}  // namespace

// 3-bit levels 1..7,0 in one bit stream: value j occupies bits 3j..3j+2, LSB first.
// bits: 001 010 011 100 101 110 111 000 (value 0 first, low bit first) ->
// byte0 = 1 | 2<<3 | (3 & 3)<<6 = 0x01|0x10|0xC0 = 0xD1; byte1 = 3>>2 | 4<<1 | 5<<4 | (6&1)<<7 = 0x00|0x08|0x50|0x00 = 0x58;
// byte2 = 6>>1 | 7<<2 | 0<<5 = 0x03|0x1C = 0x1F.
TEST(CompressPacked, QxBitStreamAndFormsHandCase) {
  QxParams p{3, 8, QxForm::Sym, true};
  EXPECT_EQ(qx_block_bytes(p), 2u + 3u);
  const int q[8] = {1, 2, 3, 4, 5, 6, 7, 0};
  uint8_t b[5];
  qx_encode_block(p, 0.5f, 0.0f, q, b);
  EXPECT_EQ(b[0], 0x00);  // f16 0.5 = 0x3800
  EXPECT_EQ(b[1], 0x38);
  EXPECT_EQ(b[2], 0xD1);
  EXPECT_EQ(b[3], 0x58);
  EXPECT_EQ(b[4], 0x1F);
  const GgmlType t = qx_type(p);
  EXPECT_TRUE(is_ctrust_type(t));
  EXPECT_STREQ(ggml_type_name(t), "ctrust_q3_sym_g8_f16");
  EXPECT_EQ(ggml_nbytes(t, 16), 10u);
  float y[8];
  dequantize(t, b, y, 8);
  const float want_sym[8] = {-1.5f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f, -2.0f};  // (q - 4) * 0.5
  for (int j = 0; j < 8; ++j) EXPECT_EQ(y[j], want_sym[j]) << j;
  // Zero form, f32 scale 0.25, zero point 2: (q - 2) * 0.25.
  QxParams z{3, 8, QxForm::Zero, false};
  uint8_t bz[4 + 1 + 3];
  ASSERT_EQ(qx_block_bytes(z), sizeof bz);
  qx_encode_block(z, 0.25f, 2.0f, q, bz);
  EXPECT_EQ(bz[4], 2);
  dequantize(qx_type(z), bz, y, 8);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(y[j], (q[j] - 2) * 0.25f) << j;
  // Affine form, f16 d = 0.125, m = -0.375: q * d + m.
  QxParams a{3, 8, QxForm::Affine, true};
  uint8_t ba[2 + 2 + 3];
  ASSERT_EQ(qx_block_bytes(a), sizeof ba);
  qx_encode_block(a, 0.125f, -0.375f, q, ba);
  dequantize(qx_type(a), ba, y, 8);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(y[j], q[j] * 0.125f - 0.375f) << j;
  // Parameter round trip and bad parameters.
  auto back = qx_params(qx_type(QxParams{7, 1536, QxForm::Affine, false}));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->bits, 7);
  EXPECT_EQ(back->group, 1536);
  EXPECT_EQ(back->form, QxForm::Affine);
  EXPECT_FALSE(back->f16);
  EXPECT_THROW(qx_type(QxParams{9, 32, QxForm::Sym, true}), Error);
  EXPECT_THROW(qx_type(QxParams{4, 0, QxForm::Sym, true}), Error);
  EXPECT_EQ(ggml_type_info(0x80000000u), nullptr);  // QX with bits 1: not a valid id
}

// The dequantization kernel (levels unpacked eight at a time, AVX2 byte shuffles where built) against its reference
// twin (one level at a time, bit by bit): the same floats, bit for bit, for every bit width 2..8, every form, f16
// and f32 scales, groups that are and are not multiples of 8, and N:M blocks with valid and corrupt masks (a mask
// with more than N bits per M reads the extra values as 0 in both), and CTRUST_SPARSE rows.
TEST(CompressPacked, FastDequantizeEqualsReference) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int nb = 5;
  int cases = 0;
  for (int bits = 2; bits <= 8; ++bits)
    for (QxForm form : {QxForm::Sym, QxForm::Zero, QxForm::Affine})
      for (bool f16 : {true, false})
        for (int group : {1, 3, 8, 13, 24, 64, 128}) {
          const QxParams p{bits, group, form, f16};
          const GgmlType t = qx_type(p);
          const size_t bs = qx_block_bytes(p);
          std::vector<uint8_t> w(bs * nb);
          for (int i = 0; i < nb; ++i) {
            std::vector<int> q(static_cast<size_t>(group));
            for (int& v : q) v = int(rng() % (1u << bits));
            const float zm = form == QxForm::Zero ? float(rng() % (1u << bits)) : 0.5f * u(rng);
            qx_encode_block(p, 0.01f + 0.1f * std::abs(u(rng)), zm, q.data(), w.data() + size_t(i) * bs);
          }
          std::vector<float> y(size_t(group) * nb), yr(y.size());
          ctrust_dequantize_blocks(t, w.data(), y.data(), nb);
          ctrust_dequantize_blocks_ref(t, w.data(), yr.data(), nb);
          ASSERT_TRUE(same_bits(y.data(), yr.data(), int64_t(y.size()))) << ggml_type_name(t);
          ++cases;
        }
  for (int bits : {2, 3, 4, 5, 8})
    for (QxForm form : {QxForm::Zero, QxForm::Affine})
      for (auto [n, m, group] : {std::tuple{2, 4, 64}, std::tuple{1, 4, 32}, std::tuple{4, 8, 128}}) {
        const NmqxParams p{QxParams{bits, group, form, true}, n, m};
        const GgmlType t = nmqx_type(p);
        const size_t bs = nmqx_block_bytes(p);
        std::vector<uint8_t> w(bs * nb);
        for (int i = 0; i < nb; ++i) {
          std::vector<int> q(static_cast<size_t>(group));
          for (int& v : q) v = int(rng() % (1u << bits));
          std::vector<uint8_t> keep(static_cast<size_t>(group), 0);
          for (int k = 0; k < group; k += m) {
            std::vector<int> cols(static_cast<size_t>(m));
            for (int c = 0; c < m; ++c) cols[size_t(c)] = c;
            std::shuffle(cols.begin(), cols.end(), rng);
            for (int c = 0; c < n; ++c) keep[size_t(k + cols[size_t(c)])] = 1;
          }
          const float zm = form == QxForm::Zero ? float(rng() % (1u << bits)) : 0.5f * u(rng);
          nmqx_encode_block(p, 0.02f, zm, keep.data(), q.data(), w.data() + size_t(i) * bs);
        }
        std::vector<float> y(size_t(group) * nb), yr(y.size());
        ctrust_dequantize_blocks(t, w.data(), y.data(), nb);
        ctrust_dequantize_blocks_ref(t, w.data(), yr.data(), nb);
        ASSERT_TRUE(same_bits(y.data(), yr.data(), int64_t(y.size()))) << ggml_type_name(t);
        // A corrupt mask (every bit set): both read the N kept values, then zeros, never past the block.
        const size_t head = form == QxForm::Zero ? 3 : 4;
        std::memset(w.data() + head, 0xFF, size_t(group + 7) / 8);
        ctrust_dequantize_blocks(t, w.data(), y.data(), 1);
        ctrust_dequantize_blocks_ref(t, w.data(), yr.data(), 1);
        ASSERT_TRUE(same_bits(y.data(), yr.data(), group)) << ggml_type_name(t) << " corrupt mask";
        ++cases;
      }
  // CTRUST_SPARSE rows (f32 values by mask): full, half and nearly empty rows, widths that are and are not
  // multiples of 8, and a corrupt mask with more bits than the capacity (the extra columns read as 0).
  for (auto [cols, capacity] : {std::pair{64, 32}, std::pair{61, 40}, std::pair{576, 288}, std::pair{8, 8}, std::pair{40, 3}})
    for (double keep_p : {1.0, 0.5, 0.05}) {
      const SparseParams sp{cols, capacity};
      const GgmlType t = sparse_type(cols, capacity);
      const size_t bs = size_t(cols + 7) / 8 + size_t(capacity) * 4;
      std::vector<uint8_t> w(bs * nb);
      std::bernoulli_distribution keep(keep_p);
      for (int i = 0; i < nb; ++i) {
        std::vector<float> row(static_cast<size_t>(cols), 0.0f);
        int stored = 0;
        for (float& v : row)
          if (stored < capacity && keep(rng)) {
            v = u(rng);
            ++stored;
          }
        ASSERT_TRUE(sparse_encode_row(sp, row.data(), w.data() + size_t(i) * bs));
      }
      std::vector<float> y(size_t(cols) * nb), yr(y.size());
      ctrust_dequantize_blocks(t, w.data(), y.data(), nb);
      ctrust_dequantize_blocks_ref(t, w.data(), yr.data(), nb);
      ASSERT_TRUE(same_bits(y.data(), yr.data(), int64_t(y.size()))) << ggml_type_name(t) << " p " << keep_p;
      std::memset(w.data(), 0xFF, size_t(cols + 7) / 8);
      ctrust_dequantize_blocks(t, w.data(), y.data(), 1);
      ctrust_dequantize_blocks_ref(t, w.data(), yr.data(), 1);
      ASSERT_TRUE(same_bits(y.data(), yr.data(), cols)) << ggml_type_name(t) << " corrupt mask";
      ++cases;
    }
  EXPECT_EQ(cases, 7 * 3 * 2 * 7 + 5 * 2 * 3 + 5 * 3);
}

TEST(CompressPacked, SparseRowHandCase) {
  // Row [0, 1.5, 0, -0.0, 2]: stored values at 1, 3, 4 (-0.0 is kept: its bits are not zero).
  const float w[5] = {0.0f, 1.5f, 0.0f, -0.0f, 2.0f};
  SparseParams p{5, 3};
  uint8_t b[1 + 12];
  ASSERT_TRUE(sparse_encode_row(p, w, b));
  EXPECT_EQ(b[0], 0x1A);
  float v;
  std::memcpy(&v, b + 1, 4);
  EXPECT_EQ(v, 1.5f);
  std::memcpy(&v, b + 5, 4);
  EXPECT_TRUE(v == 0.0f && std::signbit(v));
  std::memcpy(&v, b + 9, 4);
  EXPECT_EQ(v, 2.0f);
  float y[5];
  dequantize(sparse_type(5, 3), b, y, 5);
  EXPECT_TRUE(same_bits(y, w, 5));
  EXPECT_FALSE(sparse_encode_row(SparseParams{5, 2}, w, b));  // 3 values do not fit in 2 slots
  // A mask with more bits than slots is reported, and never read out of bounds.
  b[0] = 0x1F;
  EXPECT_THROW(check_ctrust_tensor(sparse_type(5, 3), b, sizeof b, "t"), Error);
  dequantize(sparse_type(5, 3), b, y, 5);
  EXPECT_EQ(y[4], 0.0f);
}

// RTN at 5 bits, group 32, fp16 scales packs into llama.cpp's Q5_0 (sym) / Q5_1 (asym), decoded by the
// ggml dequantizer to exactly the quantizer's values; other shapes go to CTRUST_QX, also exactly.
TEST(CompressPacked, RandomMatricesPackExactly) {
  const int out = 24, in = 192;
  auto W = test::randn(size_t(out) * in, 11, 0.05f);
  for (int j = 0; j < in; ++j) W[j] = std::fabs(W[j]);  // row 0 non-negative: asym minimum -0.0, levels near 0
  struct Case {
    QuantSpec s;
    bool ggml;
    GgmlType want;
  };
  const Case cases[] = {
      {{5, true, 32, true, false}, true, GgmlType::Q5_0},   {{5, false, 32, true, false}, true, GgmlType::Q5_1},
      {{4, false, 32, true, false}, true, GgmlType::Q4_1},  {{3, false, 64, true, false}, false, {}},
      {{2, true, 96, true, false}, false, {}},              {{6, false, 0, false, false}, false, {}},
      {{7, false, 48, false, true}, false, {}},             {{4, false, 32, false, false}, false, {}},
  };
  for (const Case& c : cases) {
    QuantResult q = rtn_quantize(W.data(), out, in, c.s);
    PackedTensor p = pack_quant(q);
    const std::string what = fmt::format("{}-bit {} g{} fp16 {} minmax {}", c.s.bits, c.s.sym ? "sym" : "asym",
                                         c.s.group, c.s.fp16_scales, c.s.minmax);
    ASSERT_NE(p.type, GgmlType::F32) << what;
    if (c.ggml) EXPECT_EQ(p.type, c.want) << what;
    else EXPECT_TRUE(is_ctrust_type(p.type)) << what << " " << ggml_type_name(p.type);
    EXPECT_EQ(p.bytes.size(), ggml_nbytes(p.type, int64_t(out) * in)) << what;
    std::vector<float> y(size_t(out) * in);
    dequantize(p.type, p.bytes.data(), y.data(), int64_t(out) * in);
    EXPECT_TRUE(same_bits(y.data(), q.w.data(), int64_t(out) * in)) << what;
  }
}

namespace {

struct Variant {
  const char* label;
  Recipe r;
};

Recipe quant_recipe(Method m, int bits, int group, bool sym = false, bool act_order = false,
                    const char* only = "^blk\\.[03]\\.") {
  Recipe r;
  r.method = m;
  r.bits = bits;
  r.group = group;
  r.sym = sym;
  r.act_order = act_order;
  r.only = only;  // two blocks keep the test short; every Linear kind is covered
  r.n_samples = 4;
  r.seq_len = 64;
  return r;
}

// Compresses SmolLM2 with r, saves, reloads; every compressed tensor is stored packed (type checked by the
// caller's predicate), reloads bit for bit, and the file is smaller than with F32 weights.
void round_trip(const Recipe& r, const std::function<bool(GgmlType)>& type_ok, const std::string& label) {
  auto m = open_model(test::smollm_q4_1());
  std::unique_ptr<Calibration> cal;
  if (method_needs_calibration(r.method))
    cal = std::make_unique<Calibration>(
        load_calibration(m->tok, default_calibration_file(), r.n_samples, r.seq_len, 3));
  CompressReport rep = compress_model(*m, r, cal.get());
  ASSERT_FALSE(rep.tensors.empty());
  const std::string path = test::scratch_dir() + "/packed-" + label + ".gguf";
  SaveOptions so;
  so.extra_meta = recipe_metadata(rep.recipe);
  save_gguf(m->file, path, so);
  LoadedModel back = load_model(path);
  size_t packed = 0, f32 = 0;
  for (const TensorReport& t : rep.tensors) {
    EXPECT_TRUE(type_ok(t.stored)) << label << " " << t.name << " stored " << ggml_type_name(t.stored);
    const Tensor& a = back.get(t.name);
    const Tensor& b = m->file.get(t.name);
    EXPECT_EQ(a.src_type, t.stored) << label << " " << t.name;
    ASSERT_TRUE(same_bits(a.data, b.data, a.numel())) << label << " " << t.name;
    packed += a.raw_bytes;
    f32 += size_t(a.numel()) * 4;
  }
  EXPECT_LT(packed, f32) << label;
  // The reloaded model computes the same logits as the compressed one in memory (inference modes from the recipe).
  auto rm = make_model(std::move(back));
  std::string js;
  for (const auto& kv : rm->file.meta)
    if (kv.key == kRecipeKey) js = kv.value.as_str();
  apply_inference_modes(*rm, recipe_from_string(js));
  const std::vector<int32_t> toks = m->tok.encode("The capital of France is Paris, and the river is", true);
  auto l0 = token_logprobs(*m, toks), l1 = token_logprobs(*rm, toks);
  ASSERT_EQ(l0.size(), l1.size());
  EXPECT_TRUE(same_bits(l0.data(), l1.data(), int64_t(l0.size()))) << label;
  std::filesystem::remove(path);
}

}  // namespace

TEST(CompressPacked, SmolLM2QuantizedRoundTrip) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not set up (scripts/setup.sh)";
  auto qx = [](int bits, QxForm form) {
    return [=](GgmlType t) {
      auto p = qx_params(t);
      return p && p->bits == bits && p->form == form;
    };
  };
  round_trip(quant_recipe(Method::RTN, 3, 64), qx(3, QxForm::Affine), "rtn3g64");
  round_trip(quant_recipe(Method::GPTQ, 3, 64), qx(3, QxForm::Affine), "gptq3g64");
  // 128 divides only ffn_down's 1536 inputs (the others have 576).
  round_trip(quant_recipe(Method::GPTQ, 4, 128, false, false, "^blk\\.[03]\\.ffn_down"), qx(4, QxForm::Affine),
             "gptq4g128");
  round_trip(quant_recipe(Method::RTN, 8, 0, true), qx(8, QxForm::Sym), "rtn8pc");
  round_trip(quant_recipe(Method::GPTQ, 4, 64, false, true), qx(4, QxForm::Affine), "gptq4g64act");
  round_trip(quant_recipe(Method::GPTQ, 5, 32), [](GgmlType t) { return t == GgmlType::Q5_1; }, "gptq5g32");
}

TEST(CompressPacked, SmolLM2PrunedAndInt8RoundTrip) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not set up (scripts/setup.sh)";
  auto sparse = [](GgmlType t) { return sparse_params(t).has_value(); };
  Recipe w = quant_recipe(Method::Wanda, 4, 32);
  round_trip(w, sparse, "wanda50");
  Recipe s = quant_recipe(Method::SparseGPT, 4, 32);
  s.prune_n = 2;
  s.prune_m = 4;
  round_trip(s, [](GgmlType t) { auto p = sparse_params(t); return p && p->capacity == p->cols / 2; }, "sparsegpt24");
  Recipe g = quant_recipe(Method::Magnitude, 4, 32);
  round_trip(g, sparse, "magnitude50");
  Recipe q = quant_recipe(Method::SmoothQuant, 8, 0);
  auto int8_rows = [](GgmlType t) { auto p = qx_params(t); return p && p->bits == 8 && p->form == QxForm::Sym && !p->f16; };
  round_trip(q, int8_rows, "smoothquant");
  // LLM.int8(): bitsandbytes' int8 rows (CB, SCB) are stored, like SmoothQuant's, and the Int8Outlier mode runs on
  // them after the reload (the round trip compares logits in that mode).
  Recipe i = quant_recipe(Method::LLMInt8, 8, 0);
  round_trip(i, int8_rows, "llm_int8");
  // The stored values are bitsandbytes' rounding, round(w * 127 / absmax), of the input's weights.
  auto orig = open_model(test::smollm_q4_1());
  auto m = open_model(test::smollm_q4_1());
  compress_model(*m, i, nullptr);
  const Tensor& before = orig->file.get("blk.3.ffn_down.weight");
  const Tensor& after = m->file.get("blk.3.ffn_down.weight");
  const QuantResult want = quantize_rows_absmax_int8(before.data, int(before.rows()), int(before.cols()), Int8Round::Multiply);
  EXPECT_TRUE(same_bits(after.data, want.w.data(), after.numel()));
  EXPECT_EQ(m->layers[3].w_down.mode, LinearMode::Int8Outlier);
}

// `ctrust compress --json` reports each tensor's packed type and the sizes; the file size is the real one.
TEST(CompressCli, ReportsPackedTypesAndSizes) {
  if (!std::filesystem::exists(test::ctrust_bin())) GTEST_SKIP() << "no ctrust binary";
  const std::string out = test::scratch_dir() + "/cli_packed_rtn3.gguf";
  test::CliResult r = test::run_ctrust(
      "compress -m " + test::stories_gguf() + " --method rtn --bits 3 --group-size 0 -o " + out + " --json", "packed");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_FALSE(j["tensors"].empty());
  for (const auto& t : j["tensors"])
    EXPECT_EQ(t["stored"].get<std::string>().rfind("ctrust_q3_affine_g", 0), 0u) << t.dump();
  const auto& s = j["sizes"];
  EXPECT_EQ(s["file_bytes"].get<uint64_t>(), std::filesystem::file_size(out));
  EXPECT_EQ(s["input_file_bytes"].get<uint64_t>(), std::filesystem::file_size(test::stories_gguf()));
  // 3 bits + one f16 scale and one f16 minimum per row: well under a tenth of f32.
  EXPECT_LT(s["compressed_tensors_stored_bytes"].get<double>(), 0.11 * s["compressed_tensors_f32_bytes"].get<double>());
  EXPECT_GT(s["memory_bytes_f32_mode"].get<uint64_t>(), s["compressed_tensors_f32_bytes"].get<uint64_t>());
  // Text output carries the same figures.
  test::CliResult t = test::run_ctrust(
      "compress -m " + test::stories_gguf() + " --method magnitude --nm 2:4 -o " + out, "packed_text");
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_NE(t.out.find("ctrust_sparse_c"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("weights in memory when loaded"), std::string::npos) << t.out;
  std::filesystem::remove(out);
}

// GPTQ act-order on stories260K: stored with its column permutation (<name>.perm), reloaded exactly in both
// compute modes (ctrust types are dequantized in the native mode too); a broken permutation is a load error.
TEST(CompressPacked, ActOrderPermutationOnStories) {
  auto m = open_model(test::stories_gguf());
  Recipe r;
  r.method = Method::GPTQ;
  r.bits = 4;
  r.group = 16;
  r.act_order = true;
  r.skip = "ffn_down";  // 172 inputs: 16 does not divide them
  Calibration cal = load_calibration(m->tok, default_calibration_file(), 4, 32, 5);
  CompressReport rep = compress_model(*m, r, &cal);
  int permuted = 0;
  for (const TensorReport& t : rep.tensors) {
    EXPECT_TRUE(qx_params(t.stored).has_value()) << t.name << " " << ggml_type_name(t.stored);
    permuted += !m->file.get(t.name).perm.empty();
  }
  EXPECT_GT(permuted, 0);
  const std::string path = test::scratch_dir() + "/stories-gptq-actorder.gguf";
  SaveOptions so;
  so.extra_meta = recipe_metadata(rep.recipe);
  save_gguf(m->file, path, so);
  for (ComputeMode mode : {ComputeMode::F32, ComputeMode::Native}) {
    LoadedModel back = load_gguf_model(path, mode);
    for (const TensorReport& t : rep.tensors) {
      const Tensor& a = back.get(t.name);
      ASSERT_TRUE(a.data) << t.name;
      EXPECT_EQ(a.perm, m->file.get(t.name).perm) << t.name;
      ASSERT_TRUE(same_bits(a.data, m->file.get(t.name).data, a.numel())) << t.name;
      std::vector<float> row(size_t(a.cols()));
      tensor_rows_f32(a, 1, 1, row.data());  // the raw path un-permutes as well
      ASSERT_TRUE(same_bits(row.data(), a.data + a.cols(), a.cols())) << t.name;
    }
  }
  // Duplicate an index of the first permutation: not a permutation any more.
  GgufFile f = read_gguf(path);
  const GgufTensorInfo* p = nullptr;
  for (const auto& ti : f.tensors)
    if (ti.name.ends_with(".perm")) p = &ti;
  ASSERT_TRUE(p);
  const size_t off = size_t(p->data - f.map->data());
  int32_t second;
  std::memcpy(&second, p->data + 4, 4);
  f = GgufFile{};
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(std::streamoff(off));
    io.write(reinterpret_cast<const char*>(&second), 4);
  }
  try {
    load_model(path);
    FAIL() << "a broken permutation loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a permutation"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

// In the native compute mode ctrust's types stay packed in memory and run on ops/qmatmul_ctrust.h: the same
// log-probabilities as the f32 mode up to the order of the f32 sums.
TEST(CompressPacked, NativeModeRunsCtrustTypesPacked) {
  for (const char* method : {"rtn", "magnitude"}) {
    auto m = open_model(test::stories_gguf());
    Recipe r;
    r.method = method_from_name(method);
    r.bits = 3;
    r.group = 0;
    r.prune_n = 2;
    r.prune_m = 4;
    CompressReport rep = compress_model(*m, r, nullptr);
    const std::string path = test::scratch_dir() + "/stories-native-" + method + ".gguf";
    save_gguf(m->file, path, SaveOptions{});
    auto f32 = open_model(path);
    LoadOptions lo;
    lo.compute = ComputeMode::Native;
    auto nat = open_model(path, lo);
    for (const TensorReport& t : rep.tensors) {
      const Tensor& x = nat->file.get(t.name);
      EXPECT_TRUE(is_ctrust_type(x.src_type)) << method << " " << t.name;
      EXPECT_EQ(x.data, nullptr) << method << " " << t.name;  // packed only
    }
    EXPECT_TRUE(is_ctrust_type(nat->layers[0].wq.wtype));
    const std::vector<int32_t> toks = f32->tok.encode("Once upon a time, there was a little girl named Lily.", true);
    auto a = token_logprobs(*f32, toks), b = token_logprobs(*nat, toks);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << method << " " << i;
    std::filesystem::remove(path);
  }
}

// SmoothQuant's and bitsandbytes' int8 weight roundings (Int8Round::Divide / Multiply) differ at half-way points:
// a hand case, and how often a real Q4_1 file's weights reach them (docs/correctness.md quotes this count).
TEST(CompressQuant, Int8RoundingsDifferAtHalfWays) {
  // absmax 0.87109375, w = -absmax / 2: w / (absmax / 127) is exactly -63.5 in f32 (ties to even: -64),
  // w * (127 / absmax) is -63.499996 (-63).
  const float w[2] = {0.87109375f, -0.435546875f};
  const QuantResult d = quantize_rows_absmax_int8(w, 1, 2, Int8Round::Divide);
  const QuantResult m = quantize_rows_absmax_int8(w, 1, 2, Int8Round::Multiply);
  EXPECT_FLOAT_EQ(d.w[1], -64 * (0.87109375f / 127));
  EXPECT_FLOAT_EQ(m.w[1], -63 * (0.87109375f / 127));
  EXPECT_EQ(d.w[0], m.w[0]);
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not set up (scripts/setup.sh)";
  auto model = open_model(test::smollm_q4_1());
  const Tensor& t = model->file.get("blk.27.attn_q.weight");
  const QuantResult a = quantize_rows_absmax_int8(t.data, int(t.rows()), int(t.cols()), Int8Round::Divide);
  const QuantResult b = quantize_rows_absmax_int8(t.data, int(t.rows()), int(t.cols()), Int8Round::Multiply);
  int64_t differ = 0;
  for (int64_t i = 0; i < t.numel(); ++i) differ += a.w[size_t(i)] != b.w[size_t(i)];
  std::printf("[ int8 ] SmolLM2 blk.27.attn_q: %lld of %lld weights round differently\n", (long long)differ,
              (long long)t.numel());
  EXPECT_GT(differ, 0);
  EXPECT_LT(differ, t.numel() / 1000);  // only at half-way points
}
