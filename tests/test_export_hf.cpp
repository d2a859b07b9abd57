// `ctrust export-hf` (io/export_hf.h): AutoGPTQ / AutoAWQ packing against hand-computed words and a port of
// AutoGPTQ's own packing loop, unpacking, act-order g_idx, the zero-point recovery, bad inputs, and a real SmolLM2
// export reloaded by ctrust's Hugging Face loader (identical weights).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <random>

#include "base/error.h"
#include "compress/quant.h"
#include "compress/recipe.h"
#include "io/ctrust_types.h"
#include "io/export_hf.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "cli_run.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

uint16_t h(float v) { return ggml_fp32_to_fp16(v); }

IntQuantMatrix make_matrix(int64_t out, int64_t in, int bits, int group, uint32_t seed) {
  IntQuantMatrix m;
  m.out = out;
  m.in = in;
  m.bits = bits;
  m.group = group;
  std::mt19937 rng(seed);
  const int maxq = (1 << bits) - 1;
  m.q.resize(size_t(out * in));
  for (auto& v : m.q) v = uint8_t(rng() % (maxq + 1));
  m.scale.resize(size_t(out * m.n_groups()));
  m.zero.resize(size_t(out * m.n_groups()));
  for (auto& s : m.scale) s = h(0.001f * float(1 + rng() % 100));
  for (auto& z : m.zero) z = uint16_t(1 + rng() % maxq);  // 1..maxq: AutoGPTQ cannot store 0
  m.g_idx.resize(size_t(in));
  for (int64_t i = 0; i < in; ++i) m.g_idx[i] = int32_t(i / group);
  return m;
}

// AutoGPTQ 0.7.1's QuantLinear.pack (qlinear_cuda.py), ported loop for loop: intweight [in][out] -> qweight
// [in / 32 * bits][out]. The reference twin of pack_gptq's bit stream.
std::vector<uint32_t> autogptq_pack_rows(const std::vector<uint32_t>& intweight, int64_t in, int64_t out, int bits) {
  std::vector<uint32_t> qweight(size_t(in / 32 * bits * out), 0);
  auto row_of = [&](int64_t r) { return qweight.data() + r * out; };
  auto iw = [&](int64_t i, int64_t o) { return intweight[i * out + o]; };
  int64_t i = 0, row = 0;
  while (row < in / 32 * bits) {
    if (bits == 2 || bits == 4 || bits == 8) {
      for (int64_t j = i; j < i + 32 / bits; ++j)
        for (int64_t o = 0; o < out; ++o) row_of(row)[o] |= iw(j, o) << (bits * (j - i));
      i += 32 / bits;
      row += 1;
    } else {  // 3 bits
      for (int64_t j = i; j < i + 10; ++j)
        for (int64_t o = 0; o < out; ++o) row_of(row)[o] |= iw(j, o) << (3 * (j - i));
      i += 10;
      for (int64_t o = 0; o < out; ++o) row_of(row)[o] |= iw(i, o) << 30;
      row += 1;
      for (int64_t o = 0; o < out; ++o) row_of(row)[o] |= (iw(i, o) >> 2) & 1;
      i += 1;
      for (int64_t j = i; j < i + 10; ++j)
        for (int64_t o = 0; o < out; ++o) row_of(row)[o] |= iw(j, o) << (3 * (j - i) + 1);
      i += 10;
      for (int64_t o = 0; o < out; ++o) row_of(row)[o] |= iw(i, o) << 31;
      row += 1;
      for (int64_t o = 0; o < out; ++o) row_of(row)[o] |= (iw(i, o) >> 1) & 3;
      i += 1;
      for (int64_t j = i; j < i + 10; ++j)
        for (int64_t o = 0; o < out; ++o) row_of(row)[o] |= iw(j, o) << (3 * (j - i) + 2);
      i += 10;
      row += 1;
    }
  }
  return qweight;
}

}  // namespace

TEST(ExportHf, GptqPackingHandCase) {
  // 4 bits, 32 x 32, group 16: q[o][i] = (o + i) % 16, zero[o][g] = 1 + (o + g) % 15.
  IntQuantMatrix m = make_matrix(32, 32, 4, 16, 1);
  for (int64_t o = 0; o < 32; ++o)
    for (int64_t i = 0; i < 32; ++i) m.q[o * 32 + i] = uint8_t((o + i) % 16);
  for (int64_t o = 0; o < 32; ++o)
    for (int g = 0; g < 2; ++g) m.zero[o * 2 + g] = uint16_t(1 + (o + g) % 15);
  GptqTensors t = pack_gptq(m, "hand");
  ASSERT_EQ(t.qweight.size(), 4u * 32);   // [32 * 4 / 32][32]
  ASSERT_EQ(t.qzeros.size(), 2u * 4);     // [2][32 * 4 / 32]
  EXPECT_EQ(uint32_t(t.qweight[0 * 32 + 0]), 0x76543210u);  // inputs 0..7 of output 0, input 0 lowest
  EXPECT_EQ(uint32_t(t.qweight[1 * 32 + 0]), 0xFEDCBA98u);  // inputs 8..15
  EXPECT_EQ(uint32_t(t.qweight[0 * 32 + 1]), 0x87654321u);  // output 1
  EXPECT_EQ(uint32_t(t.qweight[3 * 32 + 31]), 0xEDCBA987u); // inputs 24..31 of output 31: (31 + 24) % 16 = 7, 8, ..
  // qzeros: zero - 1 of outputs 0..7 of group 0 = 0..7; group 1, outputs 8..15: (o + 1) % 15 = 9..14, 0, 1.
  EXPECT_EQ(uint32_t(t.qzeros[0 * 4 + 0]), 0x76543210u);
  EXPECT_EQ(uint32_t(t.qzeros[1 * 4 + 1]), 0x10EDCBA9u);
  EXPECT_EQ(t.scales[1 * 32 + 5], m.scale[5 * 2 + 1]);      // scales [group][out]
  EXPECT_EQ(t.g_idx[17], 1);
}

TEST(ExportHf, GptqPackingEqualsAutoGptqLoopEveryWidth) {
  for (int bits : {2, 3, 4, 8}) {
    SCOPED_TRACE(bits);
    IntQuantMatrix m = make_matrix(64, 96, bits, 32, 7 + bits);
    GptqTensors t = pack_gptq(m, "rand");
    std::vector<uint32_t> iw(size_t(96 * 64));
    for (int64_t i = 0; i < 96; ++i)
      for (int64_t o = 0; o < 64; ++o) iw[i * 64 + o] = m.q[o * 96 + i];
    std::vector<uint32_t> ref = autogptq_pack_rows(iw, 96, 64, bits);
    ASSERT_EQ(t.qweight.size(), ref.size());
    EXPECT_EQ(0, std::memcmp(t.qweight.data(), ref.data(), ref.size() * 4));
    // qzeros: the same loop along the outputs (transposed), of zero - 1.
    std::vector<uint32_t> iz(size_t(64 * 3));  // [out][groups] as rows of the port
    for (int64_t o = 0; o < 64; ++o)
      for (int64_t g = 0; g < 3; ++g) iz[o * 3 + g] = m.zero[o * 3 + g] - 1u;
    std::vector<uint32_t> zref = autogptq_pack_rows(iz, 64, 3, bits);  // [64 / 32 * bits][3]
    for (int64_t g = 0; g < 3; ++g)
      for (int64_t w = 0; w < 64 / 32 * bits; ++w)
        EXPECT_EQ(uint32_t(t.qzeros[g * (64 / 32 * bits) + w]), zref[w * 3 + g]) << "group " << g << " word " << w;
    IntQuantMatrix u = unpack_gptq(t, 64, 96, bits, 32);
    EXPECT_EQ(u.q, m.q);
    EXPECT_EQ(u.zero, m.zero);
    EXPECT_EQ(u.scale, m.scale);
    EXPECT_FALSE(u.act_order);
  }
}

TEST(ExportHf, AwqPackingHandCase) {
  // 4 bits, 16 outputs x 32 inputs, group 32: q[o][i] = o, zero[o] = 15 - o.
  IntQuantMatrix m = make_matrix(16, 32, 4, 32, 3);
  for (int64_t o = 0; o < 16; ++o) {
    for (int64_t i = 0; i < 32; ++i) m.q[o * 32 + i] = uint8_t(o);
    m.zero[o] = uint16_t(15 - o);
  }
  AwqTensors t = pack_awq(m, "hand");
  ASSERT_EQ(t.qweight.size(), 32u * 2);  // [in][out / 8]
  // Word k holds outputs 8k + {0, 2, 4, 6, 1, 3, 5, 7} in nibbles 0..7.
  EXPECT_EQ(uint32_t(t.qweight[0]), 0x75316420u);
  EXPECT_EQ(uint32_t(t.qweight[1]), 0xFDB9ECA8u);
  EXPECT_EQ(uint32_t(t.qweight[31 * 2 + 1]), 0xFDB9ECA8u);
  EXPECT_EQ(uint32_t(t.qzeros[0]), 0x8ACE9BDFu);  // zeros not minus 1: 15, 13, 11, 9, 14, 12, 10, 8
  EXPECT_EQ(uint32_t(t.qzeros[1]), 0x02461357u);
  IntQuantMatrix u = unpack_awq(t, 16, 32, 4, 32);
  EXPECT_EQ(u.q, m.q);
  EXPECT_EQ(u.zero, m.zero);
  EXPECT_EQ(u.scale, m.scale);
  IntQuantMatrix r = make_matrix(64, 128, 4, 64, 11);
  IntQuantMatrix ru = unpack_awq(pack_awq(r, "rand"), 64, 128, 4, 64);
  EXPECT_EQ(ru.q, r.q);
  EXPECT_EQ(ru.zero, r.zero);
  EXPECT_EQ(ru.dequantize(), r.dequantize());
}

TEST(ExportHf, NeoxRowOrderUndoesTheGgufPermutation) {
  // Two heads of 4 rows: GGUF (interleaved) rows h*4 + {0,1,2,3} hold HF rows h*4 + {0,2,1,3}.
  EXPECT_EQ(interleaved_to_neox_rows(8, 2), (std::vector<int64_t>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_THROW(interleaved_to_neox_rows(6, 4), Error);
}

namespace {

// A CTRUST_QX tensor of `rows` x `cols` with act-order storage: stored column k is column perm[k].
struct QxFixture {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // matrix order
  Tensor t;
};
QxFixture qx_tensor(const QxParams& p, int64_t rows, int64_t cols, const std::vector<int32_t>& perm,
                    const std::vector<int>& q_stored, const std::vector<float>& d, const std::vector<float>& zm) {
  QxFixture f;
  const int64_t ng = cols / p.group;
  const size_t bb = qx_block_bytes(p);
  f.bytes.resize(size_t(rows * ng) * bb);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < ng; ++g)
      qx_encode_block(p, d[r * ng + g], zm[r * ng + g], q_stored.data() + r * cols + g * p.group,
                      f.bytes.data() + size_t(r * ng + g) * bb);
  std::vector<float> stored(size_t(rows * cols));
  dequantize(qx_type(p), f.bytes.data(), stored.data(), rows * cols);
  f.values.resize(stored.size());
  if (perm.empty()) f.values = stored;
  else unpermute_columns(stored.data(), f.values.data(), rows, cols, perm);
  f.t.ne = {cols, rows};
  f.t.src_type = qx_type(p);
  f.t.raw = f.bytes.data();
  f.t.raw_bytes = f.bytes.size();
  f.t.perm = perm;
  f.t.data = f.values.data();
  return f;
}

}  // namespace

TEST(ExportHf, ActOrderPermutationBecomesGIdx) {
  QxParams p{4, 2, QxForm::Zero, true};
  const std::vector<int32_t> perm = {3, 0, 2, 1};  // stored 0 = column 3, ...: groups {3, 0} and {2, 1}
  const std::vector<int> q = {1, 2, 3, 4, 5, 6, 7, 8};  // two rows, stored order
  QxFixture f = qx_tensor(p, 2, 4, perm, q, {0.5f, 0.25f, 1.0f, 2.0f}, {3, 4, 5, 6});
  double dev = -1;
  IntQuantMatrix m = int_quant_from_tensor(f.t, "t", &dev);
  EXPECT_EQ(dev, 0.0);
  EXPECT_TRUE(m.act_order);
  EXPECT_EQ(m.g_idx, (std::vector<int32_t>{0, 1, 1, 0}));
  EXPECT_EQ(m.q, (std::vector<uint8_t>{2, 4, 3, 1, 6, 8, 7, 5}));
  EXPECT_EQ(m.dequantize(), f.values);
  // GPTQ keeps g_idx; unpacking gives the same matrix. AWQ has no act-order.
  IntQuantMatrix big = make_matrix(32, 64, 4, 32, 5);
  std::mt19937 rng(2);
  std::shuffle(big.g_idx.begin(), big.g_idx.end(), rng);
  big.act_order = true;
  IntQuantMatrix u = unpack_gptq(pack_gptq(big, "ao"), 32, 64, 4, 32);
  EXPECT_TRUE(u.act_order);
  EXPECT_EQ(u.g_idx, big.g_idx);
  EXPECT_EQ(u.dequantize(), big.dequantize());
  EXPECT_THROW(pack_awq(big, "ao"), Error);
}

TEST(ExportHf, AffineGridsGiveTheirZeroPointOrAClearError) {
  QxParams p{4, 4, QxForm::Affine, true};
  // m = fp16(-z d) for z = 5, d = 0.1 (fp16): the compressor's affine form; exported as (q - 5) * d.
  const float d = ggml_fp16_to_fp32(h(0.1f));
  const float mn = ggml_fp16_to_fp32(h(-5.0f * d));
  QxFixture f = qx_tensor(p, 1, 4, {}, {0, 5, 9, 15}, {d}, {mn});
  double dev = -1;
  IntQuantMatrix m = int_quant_from_tensor(f.t, "t", &dev);
  EXPECT_EQ(m.zero[0], 5);
  EXPECT_FALSE(m.sym);
  EXPECT_GE(dev, 0.0);
  EXPECT_LE(dev, std::fabs(double(mn) + 5.0 * d) + 1e-6);  // half an fp16 unit of m at most
  EXPECT_EQ(m.value(0, 1), 0.0f);                          // 0 is exactly on the exported grid
  // A minmax (ggml Q4_1) minimum is no zero point.
  QxFixture g = qx_tensor(p, 1, 4, {}, {0, 5, 9, 15}, {d}, {-0.537f});
  try {
    int_quant_from_tensor(g.t, "blk.0.attn_q.weight");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no integer zero point"), std::string::npos) << e.what();
  }
}

TEST(ExportHf, BadInputsGiveClearErrors) {
  auto expect_error = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error (expected '" << needle << "')";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // f32 scales; 5 bits for GPTQ; AWQ at 3 bits; zero point 0 for GPTQ; shapes AutoGPTQ cannot pack.
  QxFixture f32s = qx_tensor(QxParams{4, 4, QxForm::Sym, false}, 1, 4, {}, {1, 2, 3, 4}, {0.3f}, {0});
  expect_error([&] { int_quant_from_tensor(f32s.t, "w"); }, "f32 scales");
  IntQuantMatrix m5 = make_matrix(32, 32, 5, 32, 1);
  expect_error([&] { pack_gptq(m5, "w"); }, "AutoGPTQ packs 2, 3, 4 or 8 bits");
  IntQuantMatrix m3 = make_matrix(32, 32, 3, 32, 1);
  expect_error([&] { pack_awq(m3, "w"); }, "4-bit only");
  IntQuantMatrix z0 = make_matrix(32, 32, 4, 32, 1);
  z0.zero[7] = 0;
  expect_error([&] { pack_gptq(z0, "w"); }, "zero point 0");
  EXPECT_NO_THROW(pack_awq(z0, "w"));  // AWQ stores the zero point itself
  IntQuantMatrix odd = make_matrix(48, 32, 4, 32, 1);
  expect_error([&] { pack_gptq(odd, "w"); }, "divisible by 32");
  // A K-quant and a 5-bit ggml tensor.
  std::vector<uint8_t> kq(ggml_nbytes(GgmlType::Q4_K, 256), 0);
  Tensor t;
  t.ne = {256, 1};
  t.src_type = GgmlType::Q4_K;
  t.raw = kq.data();
  t.raw_bytes = kq.size();
  expect_error([&] { int_quant_from_tensor(t, "w"); }, "K-quants have sub-block scales");
  std::vector<uint8_t> q5(ggml_nbytes(GgmlType::Q5_0, 32), 0);
  t.ne = {32, 1};
  t.src_type = GgmlType::Q5_0;
  t.raw = q5.data();
  t.raw_bytes = q5.size();
  expect_error([&] { int_quant_from_tensor(t, "w"); }, "5-bit grid");
  expect_error([] { hf_quant_format_from_name("exl2"); }, "unknown export format");
}

// compress --zero-point: the asymmetric fp16 grid in the GPTQ form (q - z) * s, stored as CTRUST_QX zp with an f16
// scale (exportable exactly); the recipe keeps it, and it contradicts --grid minmax.
TEST(ExportHf, ZeroPointRecipeAndGrid) {
  Recipe r;
  r.method = Method::RTN;
  r.zero_point = true;
  EXPECT_TRUE(recipe_from_json(recipe_to_json(r)).zero_point);
  Recipe d;
  d.method = Method::RTN;
  EXPECT_FALSE(recipe_to_json(d).contains("zero_point"));  // old recipes unchanged
  r.minmax = true;
  EXPECT_THROW(validate_recipe(r), Error);
  QuantSpec s;
  s.bits = 4;
  s.group = 8;
  s.fp16_scales = true;
  s.zero_point = true;
  std::vector<float> w = {-0.3f, -0.1f, 0.0f, 0.05f, 0.2f, 0.4f, 0.7f, 1.0f};
  QuantResult q = rtn_quantize(w.data(), 1, 8, s);
  PackedTensor p = pack_quant(q);
  auto qp = qx_params(p.type);
  ASSERT_TRUE(qp.has_value()) << ggml_type_name(p.type);
  EXPECT_EQ(qp->form, QxForm::Zero);
  EXPECT_TRUE(qp->f16);
  std::vector<float> back(8);
  Tensor t;
  t.ne = {8, 1};
  t.src_type = p.type;
  t.raw = p.bytes.data();
  t.raw_bytes = p.bytes.size();
  t.data = q.w.data();
  double dev = -1;
  IntQuantMatrix m = int_quant_from_tensor(t, "w", &dev);
  EXPECT_EQ(dev, 0.0);
  EXPECT_EQ(m.dequantize(), q.w);
}

namespace {

// The matrix of GGUF tensor `name` in Hugging Face row order (q/k of llama files un-permuted).
std::vector<float> hf_order(const LoadedModel& g, const std::string& name) {
  const Tensor& t = g.get(name);
  std::vector<float> v(size_t(t.numel()));
  tensor_rows_f32(t, 0, t.rows(), v.data());
  const bool q = name.ends_with("attn_q.weight"), k = name.ends_with("attn_k.weight");
  if (!q && !k) return v;
  const auto src = interleaved_to_neox_rows(t.rows(), q ? g.cfg.n_heads : g.cfg.n_kv_heads);
  std::vector<float> p(v.size());
  for (int64_t r = 0; r < t.rows(); ++r) std::copy_n(v.begin() + src[r] * t.cols(), t.cols(), p.begin() + r * t.cols());
  return p;
}

}  // namespace

// RTN 4-bit group 64 on SmolLM2 (every block Linear), zero-point form: export as GPTQ and AWQ, reload the folders
// with ctrust's Hugging Face loader: every weight bit for bit, and the model's log-probabilities as the GGUF's.
TEST(ExportHf, SmolLM2ExportReloadsIdentically) {
  if (!fs::exists(test::smollm_f32())) GTEST_SKIP() << "SmolLM2 not set up (scripts/setup.sh)";
  if (!fs::exists(test::ctrust_bin())) GTEST_SKIP() << "no ctrust binary";
  const std::string dir = test::scratch_dir() + "/export-hf";
  fs::create_directories(dir);
  const std::string gguf = dir + "/rtn4g64zp.gguf";
  test::CliResult r = test::run_ctrust("compress -m " + test::smollm_f32() +
                                           " --method rtn --bits 4 --group-size 64 --zero-point -t 1 -o " + gguf,
                                       "exporthf_compress");
  ASSERT_EQ(r.status, 0) << r.err;
  LoadedModel g = load_gguf_model(gguf);
  ASSERT_TRUE(qx_params(g.get("blk.0.attn_q.weight").src_type).has_value());
  EXPECT_EQ(qx_params(g.get("blk.0.attn_q.weight").src_type)->form, QxForm::Zero);
  auto base = make_model(load_gguf_model(gguf));
  const std::vector<int32_t> toks = base->tok.encode("The capital of France is Paris, and the river is", true);
  const std::vector<float> lp0 = token_logprobs(*base, toks);
  for (HfQuantFormat f : {HfQuantFormat::Gptq, HfQuantFormat::Awq}) {
    const std::string out = dir + (f == HfQuantFormat::Gptq ? "/gptq" : "/awq");
    HfExportOptions o;
    o.format = f;
    HfExportResult res = export_hf(g, out, o);
    SCOPED_TRACE(res.format);
    EXPECT_EQ(res.n_quantized, 210);
    EXPECT_EQ(res.max_dev, 0.0);
    EXPECT_EQ(res.group, 64);
    SafetensorsFile sf = read_safetensors(out + "/model.safetensors");
    const SafetensorsTensor* qw = sf.find("model.layers.0.self_attn.k_proj.qweight");
    ASSERT_NE(qw, nullptr);
    EXPECT_EQ(qw->dtype, "I32");
    if (f == HfQuantFormat::Gptq) {
      EXPECT_EQ(qw->shape, (std::vector<int64_t>{576 * 4 / 32, 192}));
      EXPECT_NE(sf.find("model.layers.0.self_attn.k_proj.g_idx"), nullptr);
    } else {
      EXPECT_EQ(qw->shape, (std::vector<int64_t>{576, 192 / 8}));
    }
    EXPECT_EQ(sf.find("lm_head.weight"), nullptr);  // tied
    LoadedModel back = load_hf_model(out);
    for (const auto& [name, t] : g.tensors) {
      const Tensor& b = back.get(name);
      ASSERT_EQ(b.numel(), t.numel()) << name;
      const std::vector<float> want = hf_order(g, name);
      EXPECT_EQ(0, std::memcmp(b.data, want.data(), want.size() * 4)) << name;
    }
    auto bm = make_model(std::move(back));
    const std::vector<float> lp1 = token_logprobs(*bm, toks);
    ASSERT_EQ(lp1.size(), lp0.size());
    for (size_t i = 0; i < lp0.size(); ++i) EXPECT_NEAR(lp1[i], lp0[i], 1e-4) << i;  // RoPE pairs: sum order only
  }
  // The tokenizer written from the GGUF reads back as the same vocabulary.
  LoadedModel back = load_hf_model(dir + "/gptq");
  EXPECT_EQ(back.tok.tokens, g.tok.tokens);
  EXPECT_EQ(back.tok.merges, g.tok.merges);
  EXPECT_EQ(back.tok.pre, g.tok.pre);
  // The CLI: a llama.cpp Q4_1 file has no integer zero points (a clear error, nothing written).
  test::CliResult e = test::run_ctrust("export-hf -m " + test::smollm_q4_1() + " -o " + dir + "/q41", "exporthf_q41");
  EXPECT_NE(e.status, 0);
  EXPECT_NE(e.err.find("no integer zero point"), std::string::npos) << e.err;
  EXPECT_FALSE(fs::exists(dir + "/q41/model.safetensors"));
  test::CliResult tf = test::run_ctrust("export-hf -m " + gguf + " -o " + dir + "/tf --tokenizer-from " + dir + "/none",
                                        "exporthf_tokfrom");
  EXPECT_NE(tf.status, 0);
  EXPECT_NE(tf.err.find("no tokenizer files"), std::string::npos) << tf.err;
  EXPECT_FALSE(fs::exists(dir + "/tf/model.safetensors"));
  // The HF loader names a quantization it does not read.
  {
    nlohmann::json cj = nlohmann::json::parse(std::ifstream(dir + "/gptq/config.json"));
    cj["quantization_config"]["quant_method"] = "exl2";
    std::ofstream(dir + "/gptq/config.json") << cj.dump();
    try {
      load_hf_model(dir + "/gptq");
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("quant_method 'exl2' is not supported"), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}
