// Chat templates against golden strings rendered with jinja2 from the official templates
// (scripts/ref/trust_chat_golden.py -> tests/golden/trust/chat_templates.json).
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/gguf.h"
#include "io/tokenizer.h"
#include "test_paths.h"
#include "trust/chat.h"

using namespace ctrust;

namespace {

nlohmann::json load_golden() {
  std::ifstream f(test::golden_dir() + "/trust/chat_templates.json");
  EXPECT_TRUE(f.good());
  return nlohmann::json::parse(f);
}

std::vector<ChatMessage> to_messages(const nlohmann::json& a) {
  std::vector<ChatMessage> m;
  for (const auto& x : a) m.push_back({x.at("role").get<std::string>(), x.at("content").get<std::string>()});
  return m;
}

}  // namespace

TEST(TrustChat, DetectsAndRendersEveryGoldenTemplate) {
  auto g = load_golden();
  int n = 0;
  for (const auto& [name, entry] : g.at("templates").items()) {
    ChatTemplate t = detect_chat_template(entry.at("jinja").get<std::string>());
    std::string expect_name = name == "qwen2" || name == "qwen2.5" ? "chatml" : name;
    EXPECT_EQ(t.name, expect_name) << name;
    for (const auto& c : entry.at("cases")) {
      std::string got = render_chat(t, to_messages(c.at("messages")), c.at("add_generation_prompt").get<bool>());
      EXPECT_EQ(got, c.at("text").get<std::string>()) << "template " << name;
      ++n;
    }
  }
  EXPECT_EQ(n, 32);
}

TEST(TrustChat, ChatMLDefaultSystemComesFromTemplateText) {
  auto g = load_golden();
  ChatTemplate smol = detect_chat_template(g["templates"]["chatml"]["jinja"].get<std::string>());
  EXPECT_EQ(smol.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  ChatTemplate qwen = detect_chat_template(g["templates"]["qwen2"]["jinja"].get<std::string>());
  EXPECT_EQ(qwen.default_system, "You are a helpful assistant.");
  // Qwen2.5's template (from its GGUF): a tool-use branch opens a system turn without a literal prompt first.
  ChatTemplate qwen25 = detect_chat_template(g["templates"]["qwen2.5"]["jinja"].get<std::string>());
  EXPECT_EQ(qwen25.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  // By name: smollm2 equals the detected SmolLM2 template.
  ChatTemplate byname = chat_template_by_name("smollm2");
  std::vector<ChatMessage> m = {{"user", "hi"}};
  EXPECT_EQ(render_chat(byname, m, true), render_chat(smol, m, true));
}

// The template read from the real Qwen2.5-Coder file's metadata (optional file).
TEST(TrustChat, QwenGgufMetadataTemplateIsChatML) {
  CTRUST_REQUIRE_QWEN("0.5b");
  TokenizerData d = tokenizer_from_gguf(read_gguf(test::qwen_q4_k_m("0.5b")));
  ChatTemplate t = detect_chat_template(d.chat_template);
  EXPECT_EQ(t.format, ChatFormat::ChatML);
  EXPECT_EQ(render_chat(t, {{"user", "hi"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.stop_strings, std::vector<std::string>{"<|im_end|>"});
}

TEST(TrustChat, RawFormatForBaseModels) {
  ChatTemplate t = detect_chat_template("");
  EXPECT_EQ(t.name, "raw");
  std::vector<ChatMessage> m = {{"system", "Be nice."}, {"user", "Once upon a time"}};
  EXPECT_EQ(render_chat(t, m, true), "Be nice.\n\nOnce upon a time\n");
  std::vector<ChatMessage> m2 = {{"system", ""}, {"user", "Q"}, {"assistant", "A"}, {"user", "Q2"}};
  EXPECT_EQ(render_chat(t, m2, false), "Q\nA\nQ2");
}

TEST(TrustChat, UnknownNameListsKnownOnes) {
  try {
    chat_template_by_name("alpaca");
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string w = e.what();
    EXPECT_NE(w.find("unknown chat template 'alpaca'"), std::string::npos) << w;
    EXPECT_NE(w.find("llama3"), std::string::npos) << w;
    EXPECT_NE(w.find("vicuna"), std::string::npos) << w;
  }
  EXPECT_THROW(detect_chat_template("{{ messages }} something else"), Error);
}

TEST(TrustChat, Llama2AndGemmaRequireAlternation) {
  std::vector<ChatMessage> bad = {{"user", "a"}, {"user", "b"}};
  EXPECT_THROW(render_chat(chat_template_by_name("llama2"), bad, true), Error);
  EXPECT_THROW(render_chat(chat_template_by_name("gemma"), bad, true), Error);
  EXPECT_NO_THROW(render_chat(chat_template_by_name("chatml"), bad, true));
}

TEST(TrustChat, StopStringsEndTheAssistantTurn) {
  EXPECT_EQ(chat_template_by_name("chatml").stop_strings.at(0), "<|im_end|>");
  EXPECT_EQ(chat_template_by_name("llama3").stop_strings.at(0), "<|eot_id|>");
  EXPECT_TRUE(chat_template_by_name("raw").stop_strings.empty());
}
