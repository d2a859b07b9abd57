// Chat templates in plain C++ (no Jinja engine): the prompt formats of the common instruction-tuned model
// families, rendered exactly as their official Jinja templates render (see tests/golden/trust/ and
// scripts/ref/trust_chat_golden.py). A model's template is recognized from markers in its
// TokenizerData::chat_template text, or chosen by name.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace ctrust {

struct ChatMessage {
  std::string role;     // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFormat { Raw, ChatML, Llama2, Vicuna, Zephyr, Gemma, Llama3 };

struct ChatTemplate {
  ChatFormat format = ChatFormat::Raw;
  std::string name;            // "chatml", "llama2", ...
  std::string default_system;  // inserted when the conversation has no system message (ChatML, Vicuna)
  std::string bos_text;        // BOS written into the text by the template ("<s>", "<bos>", ...), or empty
  std::string eos_text;        // end-of-turn text the template writes after assistant turns
  // Strings that end an assistant turn: generation stops there.
  std::vector<std::string> stop_strings;
};

// Known names: raw, chatml, qwen2, smollm2, llama2, vicuna, zephyr, gemma, llama3.
// Unknown name -> Error listing the known ones.
ChatTemplate chat_template_by_name(std::string_view name);
std::vector<std::string> chat_template_names();

// Recognizes a Jinja chat template by its markers ("<|im_start|>", "[INST]", "<start_of_turn>", ...).
// Empty text -> Raw (plain concatenation, for base models such as stories260K). ChatML templates keep the
// default system prompt they insert (SmolLM2: "You are a helpful AI assistant named SmolLM, ...").
// Unrecognized non-empty text -> Error naming the known templates (choose one by name).
ChatTemplate detect_chat_template(std::string_view jinja_text);

// Renders the conversation; add_generation_prompt appends the assistant header.
// Llama-2 and Gemma require user/assistant alternation after an optional system message (Error otherwise,
// as their official templates raise).
// Raw format: "<system>\n\n" + user/assistant contents joined by "\n" (+ "\n" before generation).
std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

}  // namespace ctrust
