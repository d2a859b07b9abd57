// Calibration text (issue 12, point 6): WikiText clean-up, the default sample without <unk>, chat-formatted
// samples, the recipe fields and the CLI options.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "cli_run.h"
#include "compress/calib.h"
#include "compress/recipe.h"
#include "model/model.h"
#include "test_paths.h"
#include "trust/chat.h"

using namespace ctrust;

namespace {

const Model& smollm() {
  static std::unique_ptr<Model> m = open_model(test::smollm_q4_1());
  return *m;
}

int count(const std::string& s, std::string_view what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(CompressCalib, CleanDropsUnkSentencesAndUndoesEscapes) {
  // Hand-made WikiText lines: headings, a paragraph with <unk> in its second sentence, a line made only of
  // <unk> sentences, the three escapes.
  const std::string in =
      " \n = Homarus = \n \n A lobster of 0 @.@ 7 kg . It has a <unk> claw . The cost is 1 @,@ 000 pounds ! \n"
      " The <unk> is blue . \n = = <unk> = = \n A well @-@ known species ? Yes . \n";
  const std::string want =
      " \n = Homarus = \n \n A lobster of 0.7 kg . The cost is 1,000 pounds ! \n"
      " A well-known species ? Yes . \n";
  EXPECT_EQ(clean_calibration_text(in), want);
  // A text without the markers is unchanged; the last line without a newline is kept.
  EXPECT_EQ(clean_calibration_text("plain text.\nno newline"), "plain text.\nno newline");
  EXPECT_EQ(calibration_paragraphs(want),
            (std::vector<std::string>{"A lobster of 0.7 kg . The cost is 1,000 pounds !",
                                      "A well-known species ? Yes ."}));
}

// The default calibration sample (32 x 256 from wiki.valid.tokens, seed 0) holds no <unk> and no WikiText
// escape; the raw text does (so the check can fail).
TEST(CompressCalib, DefaultSampleHasNoUnk) {
  const Tokenizer& tok = smollm().tok;
  Calibration c = load_calibration(tok, default_calibration_file(), 32, 256, 0);
  ASSERT_EQ(c.seqs.size(), 32u);
  std::string all;
  for (const auto& s : c.seqs) {
    ASSERT_EQ(s.size(), 256u);
    all += tok.decode(s) + "\n";
  }
  EXPECT_EQ(count(all, "<unk>"), 0);
  EXPECT_EQ(count(all, "unk>"), 0);
  EXPECT_EQ(count(all, " @-@ "), 0);
  EXPECT_EQ(count(all, " @,@ "), 0);
  EXPECT_EQ(count(all, " @.@ "), 0);
  EXPECT_GT(count(all, " . "), 100);  // still WikiText: its sentences

  CalibOptions raw;
  raw.clean = false;
  Calibration r = load_calibration(tok, default_calibration_file(), raw);
  std::string rall;
  for (const auto& s : r.seqs) rall += tok.decode(s) + "\n";
  EXPECT_GT(count(rall, "<unk>"), 50);
  EXPECT_GT(count(rall, " @-@ "), 5);
  EXPECT_EQ(r.hash, c.hash);  // the hash is the file's
}

// Chat samples: each is a conversation in the model's template (ChatML for SmolLM2), L tokens, seeded.
TEST(CompressCalib, ChatSamplesUseTheTemplate) {
  const Model& m = smollm();
  const ChatTemplate t = detect_chat_template(m.tok.data().chat_template);
  ASSERT_EQ(t.format, ChatFormat::ChatML);
  CalibOptions o;
  o.n = 6;
  o.len = 300;
  o.seed = 3;
  o.chat = [&](const std::vector<std::string>& turns) {
    std::vector<ChatMessage> msgs;
    for (size_t i = 0; i < turns.size(); ++i) msgs.push_back({i % 2 ? "assistant" : "user", turns[i]});
    return m.tok.encode(render_chat(t, msgs, false), false, true);
  };
  Calibration a = load_calibration(m.tok, default_calibration_file(), o),
              b = load_calibration(m.tok, default_calibration_file(), o);
  ASSERT_EQ(a.seqs.size(), 6u);
  EXPECT_EQ(a.seqs, b.seqs);
  const std::vector<int32_t> head = m.tok.encode("<|im_start|>system\n", false, true);
  const std::vector<int32_t> user = m.tok.encode("<|im_start|>user\n", false, true);
  int distinct_starts = 0;
  std::string prev;
  for (const auto& s : a.seqs) {
    ASSERT_EQ(s.size(), 300u);
    EXPECT_TRUE(std::equal(head.begin(), head.end(), s.begin()));
    const std::string text = m.tok.decode(s);
    EXPECT_NE(std::search(s.begin(), s.end(), user.begin(), user.end()), s.end());  // decode() drops control tokens
    EXPECT_EQ(text.find("<unk>"), std::string::npos);
    EXPECT_EQ(text.find(" = = "), std::string::npos);  // headings are not turns
    distinct_starts += text != prev;
    prev = text;
  }
  EXPECT_EQ(distinct_starts, 6);
  o.seed = 4;
  EXPECT_NE(load_calibration(m.tok, default_calibration_file(), o).seqs, a.seqs);
  // A text too short for one sample is an Error, not a hang.
  const std::string small = test::scratch_dir() + "/calib_chat_small.txt";
  std::ofstream(small) << "One short paragraph .\nAnother one .\n";
  EXPECT_THROW(load_calibration(m.tok, small, o), Error);
}

TEST(CompressCalib, RecipeRecordsTheCalibrationText) {
  Recipe r;
  r.calib_chat = "chatml";
  r.calib_clean = true;
  Recipe b = recipe_from_json(recipe_to_json(r));
  EXPECT_TRUE(b.calib_clean);
  EXPECT_EQ(b.calib_chat, "chatml");
  r.calib_clean = false;
  EXPECT_FALSE(recipe_from_json(recipe_to_json(r)).calib_clean);
  // Recipes written before the clean-up existed have no key: their calibration was the raw text.
  nlohmann::json old = recipe_to_json(Recipe{});
  old.erase("calib_clean");
  old.erase("calib_chat");
  old.erase("awq_qkv_loss");
  old.erase("awq_feed");
  EXPECT_FALSE(recipe_from_json(old).calib_clean);
  // ... and the AWQ search of before issue 12.
  EXPECT_FALSE(recipe_from_json(old).awq_attn_loss);
  EXPECT_FALSE(recipe_from_json(old).awq_fp_feed);
  EXPECT_TRUE(recipe_from_json(recipe_to_json(Recipe{})).awq_attn_loss);
  EXPECT_TRUE(recipe_from_json(recipe_to_json(Recipe{})).awq_fp_feed);
  Recipe o;
  o.awq_attn_loss = false;
  o.awq_fp_feed = false;
  EXPECT_EQ(recipe_to_json(o)["awq_qkv_loss"], "qkv");
  EXPECT_EQ(recipe_to_json(o)["awq_feed"], "quantized");
  EXPECT_FALSE(recipe_from_json(recipe_to_json(o)).awq_attn_loss);
  EXPECT_FALSE(recipe_from_json(recipe_to_json(o)).awq_fp_feed);
  EXPECT_THROW(recipe_from_json(nlohmann::json{{"awq_qkv_loss", "output"}}), Error);
  EXPECT_THROW(recipe_from_json(nlohmann::json{{"awq_feed", "int4"}}), Error);
  EXPECT_THROW(recipe_from_json(nlohmann::json{{"calib_clean", "yes"}}), Error);
}

TEST(CompressCalib, CliRejectsBadChatOptions) {
  const std::string out = test::scratch_dir() + "/calib_cli.gguf";
  auto r = test::run_ctrust("compress -m " + test::smollm_q4_1() + " --method gptq --calib-chat=nonsense -o " + out,
                            "calib_cli");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("ctrust: error:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nonsense"), std::string::npos) << r.err;
  for (const char* bad : {"--awq-qkv-loss output", "--awq-feed int4"}) {
    r = test::run_ctrust("compress -m " + test::stories_gguf() + " --method awq " + bad + " -o " + out, "calib_cli");
    EXPECT_NE(r.status, 0) << bad;
    EXPECT_NE(r.err.find("ctrust: error: unknown AWQ"), std::string::npos) << r.err;
  }
  // stories260K has no chat template.
  r = test::run_ctrust("compress -m " + test::stories_gguf() + " --method gptq --group-size 0 --calib-chat -o " + out,
                       "calib_cli");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("has no chat template"), std::string::npos) << r.err;
}

// The CLI records the calibration choices in the recipe it writes (stories260K: fast).
TEST(CompressCalib, CliRecordsCleanAndRaw) {
  const std::string out = test::scratch_dir() + "/calib_cli_raw.gguf";
  for (bool raw : {false, true}) {
    auto r = test::run_ctrust("compress -m " + test::stories_gguf() +
                                  " --method gptq --group-size 0 --nsamples 2 --seqlen 32 --json -t 1 -o " + out +
                                  (raw ? " --calib-raw" : ""),
                              "calib_cli");
    ASSERT_EQ(r.status, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["recipe"]["calib_clean"].get<bool>(), !raw);
    EXPECT_EQ(j["recipe"]["calib_chat"].get<std::string>(), "");
  }
}
