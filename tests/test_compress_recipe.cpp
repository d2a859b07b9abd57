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
  EXPECT_EQ(method_from_name("int8"), Method::LLMInt8);  // the issue's spelling
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

// Recipe rules (issue 12, point 3): in order, each sets the keys it names, so per key the last matching rule
// wins; globs match the whole name, re: searches; a rule's plain grid drops an inherited type.
TEST(CompressRecipe, RulesLastMatchWinsPerKey) {
  const Recipe r = recipe_from_string(R"({"method": "gptq", "bits": 4, "group": 32, "type": "q4_k",
    "tensor_types": [["attn_v", "q6_k"]],
    "rules": [
      {"match": "blk.*.attn_*", "bits": 8, "sym": true},
      {"match": "re:attn_[qk]", "group": 64},
      {"match": "blk.1?.ffn_down.weight", "method": "sparsegpt", "sparsity": "2:4", "bits": 3},
      {"match": "re:^blk\\.(0|29)\\.", "skip": true},
      {"match": "blk.0.attn_q.weight", "skip": false},
      {"match": "output.weight", "skip": false, "type": "q8_0"}
    ]})");
  ASSERT_EQ(r.rules.size(), 6u);
  EXPECT_NO_THROW(validate_recipe(r));
  EXPECT_TRUE(recipe_needs_calibration(r));
  // Round trip keeps the rules (as the file's metadata shows them).
  EXPECT_EQ(recipe_to_string(recipe_from_string(recipe_to_string(r))), recipe_to_string(r));
  const auto j = recipe_to_json(r);
  EXPECT_EQ(j["rules"][2]["sparsity"], "2:4");
  EXPECT_EQ(j["rules"][0]["match"], "blk.*.attn_*");

  Recipe q = recipe_for_tensor(r, "blk.3.attn_q.weight");
  EXPECT_EQ(q.bits, 8);
  EXPECT_TRUE(q.sym);
  EXPECT_EQ(q.group, 64);    // the later rule
  EXPECT_EQ(q.type, "");     // bits named without a type: the plain grid, not q4_k
  EXPECT_TRUE(q.rules.empty());
  Recipe v = recipe_for_tensor(r, "blk.3.attn_v.weight");
  EXPECT_EQ(v.group, 32);
  EXPECT_EQ(v.bits, 8);
  EXPECT_EQ(v.type, "");     // the rule's grid wins over tensor_types' q6_k (rules come last)
  Recipe up = recipe_for_tensor(r, "blk.3.ffn_up.weight");
  EXPECT_EQ(up.type, "q4_k");  // no rule: the global type
  EXPECT_EQ(up.bits, 4);
  EXPECT_EQ(tensor_type(r, "blk.3.ffn_up.weight"), "q4_k");
  Recipe d = recipe_for_tensor(r, "blk.12.ffn_down.weight");
  EXPECT_EQ(d.method, Method::SparseGPT);
  EXPECT_EQ(d.prune_n, 2);
  EXPECT_EQ(d.prune_m, 4);
  EXPECT_TRUE(d.prune_quant);
  EXPECT_EQ(d.bits, 3);
  EXPECT_EQ(d.type, "");
  EXPECT_EQ(recipe_for_tensor(r, "blk.2.ffn_down.weight").method, Method::GPTQ);  // glob: "1?" is two characters
  EXPECT_TRUE(tensor_selected(r, "blk.3.attn_q.weight"));
  EXPECT_FALSE(tensor_selected(r, "blk.0.attn_k.weight"));
  EXPECT_FALSE(tensor_selected(r, "blk.29.ffn_up.weight"));
  EXPECT_TRUE(tensor_selected(r, "blk.0.attn_q.weight"));  // a later rule un-skips it
  EXPECT_TRUE(tensor_selected(r, "output.weight"));        // only an explicit skip: false selects it
  EXPECT_FALSE(tensor_selected(r, "token_embd.weight"));
  EXPECT_EQ(recipe_for_tensor(r, "output.weight").type, "q8_0");

  Recipe s;
  set_sparsity(s, "2:4");
  EXPECT_EQ(s.prune_n, 2);
  EXPECT_EQ(s.prune_m, 4);
  set_sparsity(s, "0.7");
  EXPECT_EQ(s.sparsity, 0.7);
  EXPECT_EQ(s.prune_m, 0);
  EXPECT_THROW(set_sparsity(s, "half"), Error);
  EXPECT_THROW(set_sparsity(s, "2:4:8"), Error);
}

TEST(CompressRecipe, RuleErrors) {
  auto err = [](const std::string& js) {
    try {
      validate_recipe(recipe_from_string(js));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto has = [](const std::string& s, const char* what) { return s.find(what) != std::string::npos; };
  EXPECT_TRUE(has(err(R"({"rules": [{"bits": 4}]})"), "has no 'match'"));
  EXPECT_TRUE(has(err(R"({"rules": [{"match": "x", "bitz": 4}]})"), "unknown key 'bitz'"));
  EXPECT_TRUE(has(err(R"({"rules": [{"match": "x", "bits": "4"}]})"), "wrong type"));
  EXPECT_TRUE(has(err(R"({"rules": [{"match": "x", "bits": 9}]})"), "bits must be 2..8"));
  EXPECT_TRUE(has(err(R"({"rules": [{"match": "re:blk.(0", "bits": 4}]})"), "invalid rule regex"));
  EXPECT_TRUE(has(err(R"({"rules": [{"match": "x", "method": "awq"}]})"), "cannot be set per tensor"));
  EXPECT_TRUE(has(err(R"({"method": "awq", "rules": [{"match": "x", "method": "rtn"}]})"), "works on whole blocks"));
  EXPECT_TRUE(has(err(R"({"rules": [{"match": "x", "type": "q7_k"}]})"), "unsupported output type"));
  EXPECT_TRUE(has(err(R"({"rules": [{"match": "x", "sparsity": "4:2"}]})"), "invalid N:M"));
  EXPECT_TRUE(has(err(R"({"rules": [{"match": "x", "sparsity": "most"}]})"), "neither a fraction nor N:M"));
  EXPECT_TRUE(has(err(R"({"rules": {"match": "x"}})"), "must be an array"));
  EXPECT_TRUE(has(err(R"({"method": "sparsegpt", "bits": 4, "grid": "minmax"})"), "--grid applies to rtn, gptq and awq only"));
  EXPECT_EQ(err(R"({"method": "awq", "rules": [{"match": "blk.0.*", "bits": 8}, {"match": "x", "skip": true}]})"),
            "no error");
  // Files: unreadable, not JSON (the path is named).
  EXPECT_THROW(recipe_from_file(ctrust::test::scratch_dir() + "/missing.json"), Error);
  const std::string p = ctrust::test::scratch_dir() + "/bad-recipe.json";
  { std::ofstream(p) << "{\"method\": "; }
  try {
    recipe_from_file(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "bad-recipe.json")) << e.what();
  }
}
