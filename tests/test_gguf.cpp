// GGUF reader/writer tests on the real files (stories260K v1 F32, SmolLM2-135M Q4_1 v3).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>

using namespace std::string_literals;

#include "base/error.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "test_paths.h"

using namespace ctrust;

namespace {

bool have(const std::string& p) { return std::filesystem::exists(p); }

}  // namespace

TEST(Gguf, ReadsStories260KVersion1) {
  GgufFile f = read_gguf(test::stories_gguf());
  EXPECT_EQ(f.version, 1u);
  EXPECT_EQ(f.alignment, 32u);
  EXPECT_EQ(f.get_str("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.embedding_length", 0), 64);
  EXPECT_EQ(f.get_int("llama.block_count", 0), 5);
  EXPECT_EQ(f.get_int("llama.feed_forward_length", 0), 172);
  EXPECT_EQ(f.get_int("llama.attention.head_count", 0), 8);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv", 0), 4);
  const GgufValue* toks = f.find("tokenizer.ggml.tokens");
  ASSERT_NE(toks, nullptr);
  EXPECT_EQ(toks->type, GgufType::ARRAY);
  EXPECT_EQ(toks->elem, GgufType::STRING);
  EXPECT_EQ(toks->arr.size(), 512u);
  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::F32);
  EXPECT_EQ(emb->ne, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(emb->nbytes, 64u * 512u * 4u);
  // The tensors fill the data section up to the end of the file.
  const uint8_t* end = nullptr;
  int64_t total = 0;
  for (const auto& t : f.tensors) {
    EXPECT_EQ(t.type, GgmlType::F32) << t.name;
    end = std::max(end, t.data + t.nbytes);
    total += t.numel();
  }
  EXPECT_EQ(end, f.map->data() + f.map->size());
  EXPECT_GT(total, 250000);
  EXPECT_LT(total, 300000);
}

TEST(Gguf, ReadsSmolLM2Version3) {
  if (!have(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched";
  GgufFile f = read_gguf(test::smollm_q4_1());
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.tensors.size(), 272u);
  EXPECT_EQ(f.kv.size(), 33u);
  EXPECT_EQ(f.get_str("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv", 0), 3);
  EXPECT_FLOAT_EQ((float)f.get_float("llama.rope.freq_base", 0), 100000.0f);
  EXPECT_FALSE(f.get_bool("tokenizer.ggml.add_bos_token", true));
  EXPECT_EQ(f.find("tokenizer.ggml.merges")->arr.size(), 48900u);
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->elem, GgufType::INT32);
  int n_q41 = 0, n_f32 = 0, n_q80 = 0;
  for (const auto& t : f.tensors) {
    n_q41 += t.type == GgmlType::Q4_1;
    n_f32 += t.type == GgmlType::F32;
    n_q80 += t.type == GgmlType::Q8_0;
  }
  EXPECT_EQ(n_q41, 210);
  EXPECT_EQ(n_f32, 61);
  EXPECT_EQ(n_q80, 1);
  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::Q8_0);
  EXPECT_EQ(emb->ne, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(emb->nbytes, 576u / 32 * 34 * 49152);
  // Typed getters name the key on a type mismatch.
  try {
    f.get_int("general.architecture", 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos) << e.what();
  }
}

TEST(Gguf, TypeTable) {
  EXPECT_EQ(ggml_type_from_name("Q4_1"), GgmlType::Q4_1);
  EXPECT_EQ(ggml_type_from_name("bf16"), GgmlType::BF16);
  EXPECT_THROW(ggml_type_from_name("q7_3"), Error);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q4_1, 64), 40u);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q6_K, 512), 420u);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q3_K, 256), 110u);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q2_K, 256), 84u);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q5_K, 256), 176u);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q4_K, 256), 144u);
  EXPECT_THROW(ggml_nbytes(GgmlType::Q8_0, 33), Error);
  EXPECT_EQ(ggml_type_info(5), nullptr);
  EXPECT_STREQ(ggml_type_name(GgmlType::Q6_K), "q6_k");
}

// ---------------------------------------------------------------- load_gguf_model / load_model

TEST(GgufModel, LoadsStories260K) {
  LoadedModel m = load_model(test::stories_gguf());
  EXPECT_EQ(m.format, "gguf");
  const ModelConfig& c = m.cfg;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_ctx, 512);
  EXPECT_EQ(c.n_vocab, 512);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(c.rope_freq_scale, 1.0f);
  EXPECT_EQ(c.rope, RopeLayout::Interleaved);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(m.tok.model, "llama");
  EXPECT_EQ(m.tok.tokens.size(), 512u);
  EXPECT_EQ(m.tok.bos_id, 1);
  EXPECT_EQ(m.tok.eos_id, 2);
  EXPECT_EQ(m.meta.size(), 18u);
  // F32 tensors are zero-copy views of the mapped file.
  const Tensor& q = m.get("blk.2.attn_q.weight");
  EXPECT_EQ(q.ne, (std::vector<int64_t>{64, 64}));
  EXPECT_TRUE(q.owned.empty());
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(q.data), q.raw);
  EXPECT_GE(q.raw, m.map->data());
  EXPECT_LE(q.raw + q.raw_bytes, m.map->data() + m.map->size());
  EXPECT_EQ(m.get("blk.4.attn_k.weight").ne, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(m.get("blk.0.ffn_down.weight").ne, (std::vector<int64_t>{172, 64}));
  EXPECT_THROW(m.get("blk.5.attn_q.weight"), Error);
  EXPECT_EQ(c.tied_output, m.find("output.weight") == nullptr);
}

TEST(GgufModel, LoadsSmolLM2) {
  if (!have(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched";
  LoadedModel m = load_model(test::smollm_q4_1());
  const ModelConfig& c = m.cfg;
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.hidden_dim, 1536);
  EXPECT_EQ(c.n_ctx, 8192);
  EXPECT_EQ(c.n_vocab, 49152);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(m.tok.model, "gpt2");
  EXPECT_EQ(m.tensors.size(), 272u);
  const Tensor& e = m.get("token_embd.weight");
  EXPECT_EQ(e.src_type, GgmlType::Q8_0);
  EXPECT_EQ(e.owned.size(), 576u * 49152u);
  EXPECT_EQ(e.raw_bytes, 576u / 32 * 34 * 49152);
  // Spot check against a hand decode of the first Q8_0 block: value = int8 * f16 scale.
  uint16_t d16;
  std::memcpy(&d16, e.raw, 2);
  const float d = ggml_fp16_to_fp32(d16);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(e.data[j], (float)(int8_t)e.raw[2 + j] * d);
  const Tensor& w = m.get("blk.7.ffn_up.weight");
  EXPECT_EQ(w.src_type, GgmlType::Q4_1);
  EXPECT_EQ(w.ne, (std::vector<int64_t>{576, 1536}));
  // Q4_1 block 0 by hand: d, m, nibbles (low nibbles first half, high nibbles second half).
  uint16_t wd, wm;
  std::memcpy(&wd, w.raw, 2);
  std::memcpy(&wm, w.raw + 2, 2);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(w.data[j], (w.raw[4 + j] & 15) * ggml_fp16_to_fp32(wd) + ggml_fp16_to_fp32(wm));
    EXPECT_EQ(w.data[j + 16], (w.raw[4 + j] >> 4) * ggml_fp16_to_fp32(wd) + ggml_fp16_to_fp32(wm));
  }
}

TEST(GgufModel, MissingPath) {
  try {
    load_model("/nonexistent/model.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/model.gguf: no such file");
  }
}

// ---------------------------------------------------------------- writer

namespace {

std::vector<GgufKV> every_value_type() {
  std::vector<GgufKV> kv;
  auto add = [&](std::string k, GgufType t, auto setter) {
    GgufValue v;
    v.type = t;
    setter(v);
    kv.push_back({std::move(k), std::move(v)});
  };
  add("test.u8", GgufType::UINT8, [](GgufValue& v) { v.u = 250; });
  add("test.i8", GgufType::INT8, [](GgufValue& v) { v.i = -128; });
  add("test.u16", GgufType::UINT16, [](GgufValue& v) { v.u = 65535; });
  add("test.i16", GgufType::INT16, [](GgufValue& v) { v.i = -30000; });
  add("test.u64", GgufType::UINT64, [](GgufValue& v) { v.u = 0xfedcba9876543210ull; });
  add("test.i64", GgufType::INT64, [](GgufValue& v) { v.i = INT64_MIN + 1; });
  add("test.f64", GgufType::FLOAT64, [](GgufValue& v) { v.f = 3.141592653589793; });
  kv.push_back({"test.f32", GgufValue::f32(-0.1f)});
  kv.push_back({"test.bool", GgufValue::boolean(true)});
  kv.push_back({"test.empty_str", GgufValue::str("")});
  kv.push_back({"test.utf8", GgufValue::str("h\xc3\xa9llo \xe2\x96\x81 \0x"s)});
  kv.push_back({"test.i32s", GgufValue::i32_array({1, -2, 3})});
  kv.push_back({"test.empty_arr", GgufValue::str_array({})});
  GgufValue nested;
  nested.type = GgufType::ARRAY;
  nested.elem = GgufType::ARRAY;
  nested.arr = {GgufValue::f32_array({1.5f, 2.5f}), GgufValue::f32_array({}), GgufValue::f32_array({-1})};
  kv.push_back({"test.nested", nested});
  return kv;
}

}  // namespace

TEST(GgufWriter, RoundTripsStoriesInEveryWritableType) {
  using namespace std::string_literals;
  GgufFile src = read_gguf(test::stories_gguf());
  std::vector<GgufKV> kv = src.kv;
  for (auto& e : every_value_type()) kv.push_back(e);
  const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                            GgmlType::Q4_1};
  std::vector<GgufWriteTensor> wt;
  size_t k = 0;
  for (const auto& t : src.tensors) {
    GgufWriteTensor w{t.name, t.ne, GgmlType::F32};
    // 1-D tensors raw (copied); matrices quantized to each writable type in turn.
    if (t.ne.size() == 1) {
      w.raw = t.data;
    } else {
      // ffn_down rows (172) are no multiple of 32: only F32/F16/BF16 fit.
      w.type = t.ne[0] % 32 == 0 ? types[k++ % 6] : types[k++ % 3];
      w.f32 = reinterpret_cast<const float*>(t.data);
    }
    wt.push_back(w);
  }
  const std::string out = test::scratch_dir() + "/stories_all_types.gguf";
  write_gguf(out, kv, wt, 64);
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
  GgufFile back = read_gguf(out);
  EXPECT_EQ(back.version, 3u);
  EXPECT_EQ(back.alignment, 64u);
  ASSERT_EQ(back.kv.size(), kv.size() + 1);  // + general.alignment
  for (size_t i = 0; i < kv.size(); ++i) EXPECT_EQ(back.kv[i], kv[i]) << kv[i].key;
  EXPECT_EQ(back.kv.back().key, "general.alignment");
  EXPECT_EQ(back.find("test.utf8")->s.size(), 13u);  // the NUL byte is kept
  ASSERT_EQ(back.tensors.size(), src.tensors.size());
  std::set<GgmlType> seen;
  for (size_t i = 0; i < wt.size(); ++i) {
    const GgufTensorInfo& b = back.tensors[i];
    EXPECT_EQ(b.name, wt[i].name);
    EXPECT_EQ(b.ne, wt[i].ne);
    EXPECT_EQ(b.type, wt[i].type);
    EXPECT_EQ(b.offset % 64, 0u);
    seen.insert(b.type);
    std::vector<uint8_t> expect(ggml_nbytes(b.type, b.numel()));
    if (wt[i].raw) std::memcpy(expect.data(), wt[i].raw, expect.size());
    else quantize(b.type, wt[i].f32, expect.data(), b.numel());
    ASSERT_EQ(b.nbytes, expect.size());
    EXPECT_EQ(std::memcmp(b.data, expect.data(), expect.size()), 0) << b.name;
  }
  EXPECT_EQ(seen.size(), 6u);
}

TEST(GgufWriter, SmolLM2RawCopyAndF32) {
  if (!have(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched";
  GgufFile src = read_gguf(test::smollm_q4_1());
  const std::string raw_out = test::scratch_dir() + "/smollm_raw_copy.gguf";
  const std::string f32_out = test::scratch_dir() + "/smollm_f32_copy.gguf";
  std::vector<GgufWriteTensor> raw, f32;
  std::vector<std::vector<float>> deq(src.tensors.size());
  for (size_t i = 0; i < src.tensors.size(); ++i) {
    const auto& t = src.tensors[i];
    raw.push_back({t.name, t.ne, t.type, nullptr, t.data});
    deq[i].resize(t.numel());
    dequantize(t.type, t.data, deq[i].data(), t.numel());
    f32.push_back({t.name, t.ne, GgmlType::F32, deq[i].data(), nullptr});
  }
  write_gguf(raw_out, src.kv, raw);
  {
    GgufFile b = read_gguf(raw_out);
    EXPECT_EQ(b.kv, src.kv);
    ASSERT_EQ(b.tensors.size(), src.tensors.size());
    for (size_t i = 0; i < b.tensors.size(); ++i) {
      EXPECT_EQ(b.tensors[i].name, src.tensors[i].name);
      EXPECT_EQ(b.tensors[i].offset, src.tensors[i].offset);  // same layout as llama.cpp's writer
      ASSERT_EQ(b.tensors[i].nbytes, src.tensors[i].nbytes);
      EXPECT_EQ(std::memcmp(b.tensors[i].data, src.tensors[i].data, b.tensors[i].nbytes), 0) << b.tensors[i].name;
    }
  }
  std::filesystem::remove(raw_out);
  write_gguf(f32_out, src.kv, f32);
  {
    GgufFile b = read_gguf(f32_out);
    EXPECT_EQ(b.kv, src.kv);
    ASSERT_EQ(b.tensors.size(), src.tensors.size());
    for (size_t i = 0; i < b.tensors.size(); ++i) {
      EXPECT_EQ(b.tensors[i].type, GgmlType::F32);
      EXPECT_EQ(b.tensors[i].ne, src.tensors[i].ne);
      ASSERT_EQ(b.tensors[i].nbytes, deq[i].size() * 4);
      EXPECT_EQ(std::memcmp(b.tensors[i].data, deq[i].data(), b.tensors[i].nbytes), 0) << b.tensors[i].name;
    }
  }
  std::filesystem::remove(f32_out);
}

TEST(GgufWriter, RejectsBadInput) {
  std::vector<float> x(64, 1.0f);
  const std::string out = test::scratch_dir() + "/bad_write.gguf";
  auto expect_error = [&](const std::vector<GgufKV>& kv, const std::vector<GgufWriteTensor>& t, const char* what) {
    try {
      write_gguf(out, kv, t);
      FAIL() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
  };
  expect_error({}, {{"a", {64}, GgmlType::F32, x.data()}, {"a", {64}, GgmlType::F32, x.data()}}, "duplicate tensor");
  expect_error({}, {{"a", {64}, GgmlType::Q6_K, x.data()}}, "cannot quantize");
  expect_error({}, {{"a", {48}, GgmlType::Q8_0, x.data()}}, "not a multiple");
  expect_error({}, {{"a", {64}, GgmlType::F32}}, "exactly one");
  expect_error({{"k", GgufValue::u32(1)}, {"k", GgufValue::u32(2)}}, {}, "duplicate metadata key");
  GgufValue mixed = GgufValue::i32_array({1});
  mixed.arr.push_back(GgufValue::str("x"));
  expect_error({{"k", mixed}}, {}, "array of int32 holds a string");
}
