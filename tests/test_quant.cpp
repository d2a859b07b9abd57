// ggml types against the gguf Python package (tests/golden/dequant_golden.*, made by
// scripts/ref/make_dequant_golden.py): dequantization of real SmolLM2 rows and of random blocks of every
// type, and the reference quantizers; all compared bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap.h"
#include "io/gguf.h"
#include "test_paths.h"

using namespace ctrust;

namespace {

struct Golden {
  nlohmann::json doc;
  std::vector<uint8_t> bin;
};

const Golden& golden() {
  static Golden g = [] {
    Golden g;
    std::ifstream j(test::golden_dir() + "/dequant_golden.json");
    EXPECT_TRUE(j.good());
    g.doc = nlohmann::json::parse(j);
    std::ifstream b(test::golden_dir() + "/dequant_golden.bin", std::ios::binary);
    g.bin.assign(std::istreambuf_iterator<char>(b), {});
    return g;
  }();
  return g;
}

// Index of the first differing float (bitwise), or -1.
int64_t first_diff(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, 4) != 0) return i;
  return -1;
}

}  // namespace

TEST(Quant, DequantRealSmolLM2RowsMatchGgufPy) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched";
  const Golden& g = golden();
  MappedFile model(test::smollm_q4_1());
  ASSERT_EQ(model.size(), g.doc["model_bytes"].get<size_t>());
  int n_cases = 0;
  std::set<std::string> types;
  for (const auto& c : g.doc["cases"]) {
    if (c["kind"] != "real") continue;
    const GgmlType t = ggml_type_from_name(c["type"].get<std::string>());
    const int64_t n = c["n"];
    const size_t off = c["src_offset"], nbytes = c["src_bytes"];
    ASSERT_EQ(ggml_nbytes(t, n), nbytes);
    ASSERT_LE(off + nbytes, model.size());
    std::vector<float> out(n);
    dequantize(t, model.data() + off, out.data(), n);
    const float* exp = reinterpret_cast<const float*>(g.bin.data() + c["expect_offset"].get<size_t>());
    int64_t d = first_diff(out.data(), exp, n);
    EXPECT_EQ(d, -1) << c["tensor"] << " row " << c["row"] << " at " << d << ": " << out[d < 0 ? 0 : d]
                     << " vs " << exp[d < 0 ? 0 : d];
    types.insert(c["type"].get<std::string>());
    ++n_cases;
  }
  EXPECT_EQ(n_cases, 9);
  EXPECT_EQ(types, (std::set<std::string>{"q8_0", "q4_1", "f32"}));
}

TEST(Quant, DequantSyntheticBlocksMatchGgufPy) {
  const Golden& g = golden();
  std::set<std::string> types;
  for (const auto& c : g.doc["cases"]) {
    if (c["kind"] != "synthetic") continue;
    const std::string name = c["type"];
    const GgmlType t = ggml_type_from_name(name);
    const int64_t n = c["n"];
    const uint8_t* src = g.bin.data() + c["src_offset"].get<size_t>();
    ASSERT_EQ(ggml_nbytes(t, n), c["src_bytes"].get<size_t>());
    // Copy to an odd address: blocks inside GGUF files are not aligned to their fields.
    std::vector<uint8_t> buf(c["src_bytes"].get<size_t>() + 1);
    std::memcpy(buf.data() + 1, src, buf.size() - 1);
    std::vector<float> out(n);
    dequantize(t, buf.data() + 1, out.data(), n);
    const float* exp = reinterpret_cast<const float*>(g.bin.data() + c["expect_offset"].get<size_t>());
    int64_t d = first_diff(out.data(), exp, n);
    EXPECT_EQ(d, -1) << name << " at " << d << ": " << out[d < 0 ? 0 : d] << " vs " << exp[d < 0 ? 0 : d];
    types.insert(name);
  }
  EXPECT_EQ(types, (std::set<std::string>{"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k",
                                          "q4_k", "q5_k", "q6_k"}));
}

TEST(Quant, QuantizeMatchesGgufPyReference) {
  const Golden& g = golden();
  std::set<std::string> types;
  for (const auto& c : g.doc["cases"]) {
    if (c["kind"] != "quantize") continue;
    const std::string name = c["type"];
    const GgmlType t = ggml_type_from_name(name);
    const int64_t n = c["n"];
    const float* x = reinterpret_cast<const float*>(g.bin.data() + c["input_offset"].get<size_t>());
    const size_t nbytes = c["expect_bytes"];
    ASSERT_EQ(ggml_nbytes(t, n), nbytes);
    std::vector<uint8_t> out(nbytes);
    quantize(t, x, out.data(), n);
    const uint8_t* exp = g.bin.data() + c["expect_offset"].get<size_t>();
    size_t d = 0;
    while (d < nbytes && out[d] == exp[d]) ++d;
    EXPECT_EQ(d, nbytes) << name << ": first differing byte " << d << " of " << nbytes;
    types.insert(name);
  }
  EXPECT_EQ(types, (std::set<std::string>{"q8_0", "q4_0", "q4_1", "f16", "bf16"}));
}

TEST(Quant, QuantizeDequantizeRoundTripError) {
  // Hand-checkable bounds per block with scale d: rounding error d/2 (Q4_0: up to d, its +8 side clips),
  // plus the f16 rounding of the stored scale/min (relative 2^-11) times the largest quant.
  std::vector<float> x(4096);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * (float)i) * (1.0f + (float)(i % 7));
  const float e16 = 1.0f / 2048;
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::F16, GgmlType::BF16}) {
    std::vector<uint8_t> q(ggml_nbytes(t, (int64_t)x.size()));
    quantize(t, x.data(), q.data(), (int64_t)x.size());
    std::vector<float> y(x.size());
    dequantize(t, q.data(), y.data(), (int64_t)x.size());
    for (size_t b = 0; b < x.size(); b += 32) {
      float mn = x[b], mx = x[b], amax = 0;
      for (size_t j = b; j < b + 32; ++j)
        mn = std::min(mn, x[j]), mx = std::max(mx, x[j]), amax = std::max(amax, std::fabs(x[j]));
      float tol = t == GgmlType::Q8_0   ? amax / 127 * (0.5f + 127 * e16)
                  : t == GgmlType::Q4_1 ? (mx - mn) / 15 * (0.5f + 15 * e16) + std::fabs(mn) * e16
                  : t == GgmlType::Q4_0 ? amax / 8 * (1.0f + 8 * e16)
                  : t == GgmlType::F16  ? amax * e16
                                        : amax / 256;
      tol *= 1.001f;
      for (size_t j = b; j < b + 32; ++j) ASSERT_LE(std::fabs(y[j] - x[j]), tol) << ggml_type_name(t) << " " << j;
    }
  }
}

TEST(Quant, Fp16Conversions) {
  EXPECT_EQ(ggml_fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(ggml_fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(ggml_fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(ggml_fp16_to_fp32(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(ggml_fp16_to_fp32(0x7c00)));
  // Every f16 value survives f16 -> f32 -> f16; ties round to even.
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN
    ASSERT_EQ(ggml_fp32_to_fp16(ggml_fp16_to_fp32((uint16_t)h)), h) << h;
  }
  EXPECT_EQ(ggml_fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(ggml_fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(ggml_fp32_to_fp16(65520.0f), 0x7c00);                          // overflow -> inf
  EXPECT_EQ(ggml_fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);             // tie with 0 -> 0
  EXPECT_EQ(ggml_fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(ggml_fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(ggml_bf16_to_fp32(0xbf80), -1.0f);
}

TEST(Quant, RejectsBadCalls) {
  std::vector<float> x(40);
  std::vector<uint8_t> q(100);
  EXPECT_THROW(quantize(GgmlType::Q4_0, x.data(), q.data(), 40), Error);   // not a multiple of 32
  EXPECT_THROW(quantize(GgmlType::Q6_K, x.data(), q.data(), 256), Error);  // no quantizer for Q6_K
  EXPECT_THROW(dequantize(GgmlType::Q8_K, q.data(), x.data(), 256), Error);
  EXPECT_THROW(dequantize(GgmlType::Q4_1, q.data(), x.data(), 31), Error);
}
