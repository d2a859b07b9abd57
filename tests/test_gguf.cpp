// GGUF reader/writer tests on the real files (stories260K v1 F32, SmolLM2-135M Q4_1 v3).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "io/gguf.h"
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
