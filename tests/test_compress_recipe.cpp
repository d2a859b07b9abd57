// Recipe JSON round trip, option validation and tensor selection.
#include <gtest/gtest.h>

#include <fstream>

#include "base/error.h"
#include "compress/recipe.h"
#include "test_paths.h"

using namespace ctrust;

TEST(CompressRecipe, JsonRoundTrip) {
  Recipe r;
  r.method = Method::AWQ;
  r.bits = 3;
  r.group = 64;
  r.act_order = true;
  r.seed = 1234567890123ull;
  r.calib_file = "wiki.valid.tokens";
  r.calib_hash = "00112233aabbccdd";
  r.skip = "ffn_down";
  std::string s = recipe_to_string(r);
  Recipe b = recipe_from_string(s);
  EXPECT_EQ(recipe_to_string(b), s);
  EXPECT_EQ(b.method, Method::AWQ);
  EXPECT_EQ(b.bits, 3);
  EXPECT_EQ(b.seed, 1234567890123ull);
  EXPECT_EQ(b.ctrust_version, CTRUST_VERSION);
  auto j = nlohmann::json::parse(s);
  EXPECT_EQ(j["method"], "awq");
  EXPECT_EQ(j["group"], 64);
  EXPECT_EQ(j["grid"], "gptq");
  r.minmax = true;
  EXPECT_TRUE(recipe_from_string(recipe_to_string(r)).minmax);
  EXPECT_EQ(nlohmann::json::parse(recipe_to_string(r))["grid"], "minmax");
  EXPECT_THROW(recipe_from_string("{\"grid\": \"zero\"}"), Error);
  EXPECT_THROW(recipe_from_string("{\"bits\": \"four\"}"), Error);
  EXPECT_THROW(recipe_from_string("{\"bitz\": 4}"), Error);
  EXPECT_THROW(recipe_from_string("{\"method\": \"zip\"}"), Error);
  EXPECT_THROW(recipe_from_string("not json"), Error);
  for (const char* m : {"rtn", "gptq", "awq", "smoothquant", "llm_int8", "magnitude", "wanda", "sparsegpt"})
    EXPECT_STREQ(method_name(method_from_name(m)), m);
  EXPECT_EQ(method_from_name("int8"), Method::LLMInt8);  // the spelling
}

TEST(CompressRecipe, ValidationErrors) {
  auto bad = [](auto edit) {
    Recipe r;
    edit(r);
    EXPECT_THROW(validate_recipe(r), Error);
  };
  EXPECT_NO_THROW(validate_recipe(Recipe{}));
  bad([](Recipe& r) { r.bits = 1; });
  bad([](Recipe& r) { r.bits = 9; });
  bad([](Recipe& r) { r.group = -1; });
  bad([](Recipe& r) { r.method = Method::SparseGPT; r.sparsity = 1.0; });
  bad([](Recipe& r) { r.method = Method::Magnitude; r.sparsity = -0.5; });
  bad([](Recipe& r) { r.method = Method::Wanda; r.prune_n = 5; r.prune_m = 4; });
  bad([](Recipe& r) { r.method = Method::SmoothQuant; r.alpha = 1.5; });
  bad([](Recipe& r) { r.method = Method::LLMInt8; r.threshold = 0; });
  bad([](Recipe& r) { r.damp = -1; });
  bad([](Recipe& r) { r.n_samples = 0; });
  bad([](Recipe& r) { r.skip = "blk.(0"; });
  try {
    Recipe r;
    r.bits = 12;
    validate_recipe(r);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bits must be 2..8"), std::string::npos);
  }
}

TEST(CompressRecipe, TensorChecks) {
  Recipe r;
  r.group = 128;
  EXPECT_NO_THROW(validate_tensor(r, "blk.0.attn_q.weight", 576, 1536, 2));
  EXPECT_THROW(validate_tensor(r, "blk.0.attn_q.weight", 576, 576, 2), Error);  // 128 does not divide 576
  r.group = 0;
  EXPECT_NO_THROW(validate_tensor(r, "blk.0.attn_q.weight", 576, 576, 2));
  EXPECT_THROW(validate_tensor(r, "blk.0.attn_norm.weight", 576, 1, 1), Error);   // 1-D
  EXPECT_THROW(validate_tensor(r, "token_embd.weight", 49152, 576, 2), Error);    // GPTQ needs block inputs
  r.method = Method::RTN;
  EXPECT_NO_THROW(validate_tensor(r, "token_embd.weight", 49152, 576, 2));
  r.method = Method::SparseGPT;
  r.prune_n = 4;
  r.prune_m = 8;
  EXPECT_THROW(validate_tensor(r, "blk.3.ffn_down.weight", 64, 172, 2), Error);  // 8 does not divide 172
  EXPECT_THROW(validate_calibration_size(Recipe{}, 100, "calib.txt"), Error);
  EXPECT_NO_THROW(validate_calibration_size(Recipe{}, 32 * 256, "calib.txt"));
}

TEST(CompressRecipe, Selection) {
  Recipe r;
  EXPECT_TRUE(tensor_selected(r, "blk.0.attn_q.weight"));
  EXPECT_FALSE(tensor_selected(r, "output.weight"));
  EXPECT_FALSE(tensor_selected(r, "token_embd.weight"));
  r.skip = "ffn_down|blk\\.1\\.";
  EXPECT_FALSE(tensor_selected(r, "blk.0.ffn_down.weight"));
  EXPECT_FALSE(tensor_selected(r, "blk.1.attn_k.weight"));
  EXPECT_TRUE(tensor_selected(r, "blk.10.attn_k.weight"));
  r.skip.clear();
  r.only = "^output\\.weight$";
  EXPECT_TRUE(tensor_selected(r, "output.weight"));
  EXPECT_FALSE(tensor_selected(r, "blk.0.attn_q.weight"));
}

TEST(CompressRecipe, FileHash) {
  std::string p = ctrust::test::scratch_dir() + "/hash.txt";
  { std::ofstream(p) << "a"; }
  EXPECT_EQ(file_hash(p), "af63dc4c8601ec8c");  // FNV-1a 64 of "a"
  EXPECT_THROW(file_hash(p + ".missing"), Error);
}
