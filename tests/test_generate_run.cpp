// `ctrust generate` as a library call (pipeline/generate_run.h) and the stop-string helpers it shares with
// generate(), generate_batch() and the trust runs (model/model.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/error.h"
#include "model/model.h"
#include "pipeline/generate_run.h"
#include "report/toxicity_text.h"
#include "test_paths.h"

using namespace ctrust;

TEST(StopStrings, StreamHoldsBackAPossibleStartAndCutsAtTheFirst) {
  StopStringStream s({"<|user|>", "END"});  // the longest is 8 bytes: that many stay held back
  EXPECT_EQ(s.push("Hello"), "");
  EXPECT_EQ(s.push(" wor"), "H");
  EXPECT_EQ(s.push("ld <|us"), "ello wo");  // "<|us" might begin "<|user|>": held back
  EXPECT_EQ(s.push("er|> more"), "rld ");   // a piece running past the stop string: nothing of it is shown
  EXPECT_EQ(s.push("x"), "");
  EXPECT_EQ(s.finish(), "");
  EXPECT_EQ(s.text(), "Hello world ");
  StopStringStream t({"END"});
  EXPECT_EQ(t.push("abcdef"), "abc");
  EXPECT_EQ(t.push("gE"), "de");
  EXPECT_EQ(t.finish(), "fgE");  // no stop string came: the held-back rest
  StopStringStream none({});
  EXPECT_EQ(none.push("abc"), "abc");    // no stop strings: nothing is held back
  EXPECT_EQ(none.finish(), "");
  // Each stop string in turn, in order; an empty one is ignored.
  EXPECT_EQ(cut_at_stop_strings("a END b <|user|> c", {"", "<|user|>", "END"}), "a ");
  EXPECT_EQ(longest_stop_string({"ab", "abcd", ""}), 4u);
  // Only a match that ends inside the newest piece is new.
  EXPECT_TRUE(new_stop_string("xxENDyy", 3, 3, {"END"}));   // piece "Dyy": END ends inside it
  EXPECT_FALSE(new_stop_string("ENDxxxxyy", 2, 3, {"END"}));  // an old match (the scan starts 5 bytes back)
}

TEST(GenerateRun, StreamEqualsTheTextAndStopsAtAStopString) {
  auto m = open_model(test::stories_gguf());
  GenerateRunOptions o;
  o.prompt = "Once upon a time";
  o.gen.max_tokens = 40;
  std::string streamed;
  const GenerateRunResult r = generate_run(*m, test::stories_gguf(), o, [&](const std::string& s) { streamed += s; });
  ASSERT_EQ(r.tokens.size(), 40u);  // stories260K greedy does not stop early on this prompt
  EXPECT_EQ(streamed, o.prompt + r.text);  // the prompt, then the pieces: their concatenation is the decoded text
  EXPECT_EQ(r.chat_template, "");
  EXPECT_EQ(r.compute, "f32");
  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j["n_tokens"], 40);
  EXPECT_EQ(j["text"], r.text);
  EXPECT_FALSE(j.contains("chat_template"));
  // A stop string taken from the middle of that text: generation stops at the token completing it, and neither
  // the text nor the stream shows it or anything after it.
  ASSERT_GT(r.text.size(), 30u);
  const std::string stop = r.text.substr(20, 4);
  const size_t at = r.text.find(stop);
  o.gen.stop_strings = {stop};
  streamed.clear();
  const GenerateRunResult c = generate_run(*m, test::stories_gguf(), o, [&](const std::string& s) { streamed += s; });
  EXPECT_EQ(c.text, r.text.substr(0, at));
  EXPECT_EQ(streamed, o.prompt + c.text);
  EXPECT_LT(c.tokens.size(), r.tokens.size());
  EXPECT_EQ(std::vector<int32_t>(r.tokens.begin(), r.tokens.begin() + c.tokens.size()), c.tokens);
  // A chat prompt is not shown; an unknown template name is an error.
  o.chat_template = "chatml";
  o.gen.stop_strings.clear();
  streamed.clear();
  const GenerateRunResult t = generate_run(*m, test::stories_gguf(), o, [&](const std::string& s) { streamed += s; });
  EXPECT_EQ(t.chat_template, "chatml");
  EXPECT_EQ(streamed, t.text);
  o.chat_template = "nope";
  EXPECT_THROW(generate_run(*m, test::stories_gguf(), o), Error);
}

TEST(ToxicityText, TextCsvAndJsonOfAHandFilledResult) {
  ToxicityEvalResult r;
  r.scorer_name = "ctrust-tox v1";
  r.continuations = 100;
  r.prompts = 50;
  r.excluded_continuations = 2;
  ToxicityEvalRow row;
  row.scorer = "ctrust-tox";
  row.set = "continuations";
  row.held_out = true;
  row.stats.n = 100;
  row.stats.positives = 30;
  row.stats.auc = 0.95;
  row.auc_lo = 0.93;
  row.auc_hi = 0.97;
  row.stats.bins = {{0.0, 0.1, 60, 0.04, 0.05, 0.0}};
  row.seed_auc = {0.951, 0.949};
  ToxicityEvalRow plain;
  plain.scorer = "tox-block";
  plain.set = "prompts";
  r.rows = {row, plain};
  r.delta_auc = 0.0123;
  ToxicityEvalOptions opt;
  opt.folds = 4;
  opt.seeds = 2;
  const std::string text = toxicity_eval_text(r, opt);
  EXPECT_NE(text.find("scorer evaluated: ctrust-tox v1\n"), std::string::npos);
  EXPECT_NE(text.find("4-fold CV grouped by record, 2 seeds"), std::string::npos);
  EXPECT_NE(text.find("0.950 [0.930,0.970]"), std::string::npos);
  EXPECT_NE(text.find("seeds: AUC [0.949..0.951]"), std::string::npos);
  EXPECT_NE(text.find("continuations: +0.0123 ["), std::string::npos);
  EXPECT_NE(text.find("reliability of ctrust-tox (held out), continuations:"), std::string::npos);
  const std::string csv = toxicity_eval_csv(r);
  const size_t nl = csv.find('\n');
  EXPECT_EQ(csv.substr(0, 31), "scorer,set,held_out,n,positives");
  EXPECT_EQ(csv.substr(nl + 1, csv.find('\n', nl + 1) - nl - 1),
            "ctrust-tox,continuations,1,100,30,0.95,0.93,0.97,0,0,0,0,0,0,0,0,0,0,0.949,0.951,,,,");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
  const nlohmann::json j = toxicity_eval_json(r, opt);
  EXPECT_EQ(j["folds"], 4);
  EXPECT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["rows"][0]["auc_ci"][1], 0.97);
  EXPECT_EQ(j["rows"][0]["reliability"][0]["n"], 60);
  EXPECT_EQ(j["delta_auc_vs_log_odds_mean"]["value"], 0.0123);
  EXPECT_EQ(j["simulation"]["prompts"], opt.sim_prompts);
}
