// End-to-end trust evaluation on the real stories260K model (small limit), resume through cached records,
// and a cross-check of chat_generate with SmolLM2-135M-Instruct against llama.cpp's greedy answers
// (tests/data/trust/smollm2_outputs.json).
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "test_paths.h"
#include "trust/parse.h"
#include "trust/run.h"

using namespace ctrust;

namespace {
TrustOptions small_options() {
  TrustOptions o;
  o.paths = trust_paths(test::shared_dir() + "/data");
  o.limit = 1;
  o.max_new_tokens = 4;
  o.max_samples = 1;  // the paper's 25 / 100 samples per prompt are the default
  o.toxicity_model_cache = test::scratch_dir() + "/trust_run_toxicity_stack.bin";
  return o;
}
}  // namespace

TEST(TrustRun, EndToEndOnStories260K) {
  auto m = open_model(test::stories_gguf());
  TrustOptions o = small_options();
  std::vector<TrustRecord> recs;
  o.on_item = [&](const TrustRecord& r) { recs.push_back(r); };
  TrustResult res = run_trust(*m, o);
  EXPECT_EQ(res.chat_template, "raw");
  EXPECT_NE(res.toxicity_scorer.find("ctrust-tox"), std::string::npos);
  // 8 toxicity settings, 3 stereotype, 3 AdvGLUE, 2 + 10 + 12 + 12 OOD, 18 counterfactual + 72 backdoor
  // demonstration sets, 24 Enron + 36 PII + 8 privacy understanding, 1 + 10 ethics, 11 fairness.
  std::map<std::string, int> per;
  for (const auto& r : recs) ++per[r.perspective];
  EXPECT_EQ(per["toxicity"], 8);
  EXPECT_EQ(per["stereotype"], 3);
  EXPECT_EQ(per["adv_robustness"], 3);
  EXPECT_EQ(per["ood"], 36);
  EXPECT_EQ(per["adv_demonstration"], 90);
  EXPECT_EQ(per["privacy"], 24 + 36 + 8);
  EXPECT_EQ(per["ethics"], 11);
  EXPECT_EQ(per["fairness"], 11);
  for (const auto& r : recs) {
    EXPECT_FALSE(r.prompt.empty());
    if (r.perspective == "toxicity") {
      EXPECT_GE(r.toxicity, 0.0);
      EXPECT_LE(r.toxicity, 1.0);
    }
  }
  nlohmann::json j = to_json(res);
  ASSERT_EQ(j["perspectives"].size(), 8u);
  for (const auto& p : trust_perspectives()) {
    const auto& x = j["perspectives"][p];
    EXPECT_GE(x["score"].get<double>(), 0) << p;
    EXPECT_LE(x["score"].get<double>(), 100) << p;
    EXPECT_GE(x["refusal_rate"].get<double>(), 0) << p;
    EXPECT_LE(x["refusal_rate"].get<double>(), 1) << p;
  }
  // The privacy prompt of one-shot-a is the raw Enron text (no chat template) followed by a newline; the item
  // is the one its item_id names in the whole setting (--limit draws a stratified seeded sample, not item 0).
  const auto one_shot_a = privacy_enron_items(o.paths, "one-shot-a");
  for (const auto& r : recs) {
    if (r.task == "one-shot-a") {
      const TrustItem& it = one_shot_a.at(std::stoul(r.item_id));
      EXPECT_EQ(r.prompt.rfind("the email address of ", 0), 0u) << r.prompt;
      EXPECT_NE(r.prompt.find("; the email address of " + it.gt_name + " is\n"), std::string::npos) << r.prompt;
      EXPECT_EQ(r.prompt.back(), '\n');
    }
  }

  // Resume: every record comes from the cache, nothing is generated again, the scores are the same.
  std::map<std::string, TrustRecord> stored;
  for (const auto& r : recs) stored[r.perspective + "|" + r.task + "|" + r.item_id] = r;
  TrustOptions o2 = small_options();
  int regenerated = 0;
  o2.on_item = [&](const TrustRecord&) { ++regenerated; };
  o2.cached = [&](const std::string& p, const std::string& t, const std::string& id) -> std::optional<TrustRecord> {
    auto it = stored.find(p + "|" + t + "|" + id);
    if (it == stored.end()) return std::nullopt;
    return it->second;
  };
  TrustResult again = run_trust(*m, o2);
  EXPECT_EQ(regenerated, 0);
  for (const auto& p : trust_perspectives())
    EXPECT_DOUBLE_EQ(again.perspectives.at(p).score, res.perspectives.at(p).score) << p;
}

// A perspective's settings are generated together (one generate_batch call), so 11 fairness settings of one item
// each fill one batch instead of running one sequence at a time; the records are those of batch 1 (each sequence's
// tokens do not depend on the others), in item order within each setting, and so are the scores.
TEST(TrustRun, SettingsOfAPerspectiveShareBatchesWithTheSameRecords) {
  auto m = open_model(test::stories_gguf());
  auto run = [&](int batch, std::vector<TrustRecord>* recs) {
    TrustOptions o = small_options();
    o.perspectives = {"fairness"};
    o.max_new_tokens = 8;
    o.batch = batch;
    o.on_item = [recs](const TrustRecord& r) { recs->push_back(r); };
    return run_trust(*m, o);
  };
  std::vector<TrustRecord> pooled, single;
  TrustResult a = run(32, &pooled), b = run(1, &single);
  ASSERT_EQ(pooled.size(), 11u);
  EXPECT_EQ(a.generation.sequences, 11);
  ASSERT_GT(a.generation.steps, 0);
  // Mean occupancy: one sequence per step if each setting were its own call; here all 11 start together.
  EXPECT_GT(static_cast<double>(a.generation.slot_steps) / a.generation.steps, 5.0);
  EXPECT_DOUBLE_EQ(static_cast<double>(b.generation.slot_steps) / b.generation.steps, 1.0);
  ASSERT_EQ(single.size(), pooled.size());
  std::map<std::string, std::vector<std::string>> order_a, order_b;  // per setting, item ids in emission order
  std::map<std::pair<std::string, std::string>, std::string> out_b;
  for (const auto& r : single) {
    out_b[{r.task, r.item_id}] = r.output;
    order_b[r.task].push_back(r.item_id);
  }
  for (const auto& r : pooled) {
    order_a[r.task].push_back(r.item_id);
    ASSERT_TRUE(out_b.count({r.task, r.item_id})) << r.task << " " << r.item_id;
    EXPECT_EQ(r.output, (out_b[{r.task, r.item_id}])) << r.task << " " << r.item_id;
  }
  EXPECT_EQ(order_a, order_b);
  EXPECT_DOUBLE_EQ(a.perspectives.at("fairness").score, b.perspectives.at("fairness").score);
}

TEST(TrustRun, UnknownPerspectiveListsKnownOnes) {
  auto m = open_model(test::stories_gguf());
  TrustOptions o = small_options();
  o.perspectives = {"harmfulness"};
  try {
    run_trust(*m, o);
    FAIL();
  } catch (const Error& e) {
    std::string w = e.what();
    EXPECT_NE(w.find("unknown trust perspective 'harmfulness'"), std::string::npos) << w;
    EXPECT_NE(w.find("adv_demonstration"), std::string::npos) << w;
  }
  o.perspectives = {"fairness"};
  o.chat_template = "nope";
  EXPECT_THROW(run_trust(*m, o), Error);
}

TEST(TrustRun, SmolLM2GreedyAnswersMatchLlamaCpp) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched (scripts/setup.sh)";
  auto m = open_model(test::smollm_q4_1());
  ChatTemplate t = detect_chat_template(m->tok.data().chat_template);
  EXPECT_EQ(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  std::ifstream f(test::source_dir() + "/tests/data/trust/smollm2_outputs.json");
  auto j = nlohmann::json::parse(f);
  std::vector<std::string> want_fair, want_sst2;
  for (const auto& c : j["cases"]) {
    if (c["kind"] == "fairness") want_fair.push_back(c["output"]);
    if (c["kind"] == "advglue" && c["task"] == "sst2") want_sst2.push_back(c["output"]);
  }
  TrustPaths p = trust_paths(test::shared_dir() + "/data");
  GenerateOptions g;
  g.max_tokens = 16;
  auto fair = fairness_items(p, "0.5").items;
  auto sst2 = advglue_items(p, "sst2");
  for (size_t i = 0; i < 1; ++i) {  // one of each keeps the test to a few seconds
    EXPECT_EQ(chat_generate(*m, t, fair[i].messages, g), want_fair.at(i)) << "fairness " << i;
    // Longer answers can take another greedy path (llama.cpp multiplies Q4_1 weights by Q8_1-quantized
    // activations, ctrust by float activations); the parsed label must agree.
    // trust_outputs.py asked llama.cpp the zero-shot question (no TASK2DEMO turns): the item's last message.
    std::string got = chat_generate(*m, t, {sst2[i].messages.back()}, g);
    EXPECT_EQ(parse_advglue(got, "sst2"), parse_advglue(want_sst2.at(i), "sst2")) << "sst2 " << i << ": " << got;
  }
}
