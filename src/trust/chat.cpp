#include "trust/chat.h"

#include "base/error.h"

namespace ctrust {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

const char* kVicunaSystem =
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.";

// Messages after an optional leading system message; checks user/assistant alternation when asked.
struct Split {
  const ChatMessage* system = nullptr;
  size_t first = 0;
};

Split split_system(const std::vector<ChatMessage>& m) {
  Split s;
  if (!m.empty() && m[0].role == "system") {
    s.system = &m[0];
    s.first = 1;
  }
  return s;
}

void check_alternation(const ChatTemplate& t, const std::vector<ChatMessage>& m, size_t first) {
  for (size_t i = first; i < m.size(); ++i) {
    bool want_user = (i - first) % 2 == 0;
    if ((m[i].role == "user") != want_user)
      fail("chat template '{}': conversation roles must alternate user/assistant/user/assistant/... "
           "(message {} has role '{}')", t.name, i, m[i].role);
  }
}

std::string render_chatml(const ChatTemplate& t, const std::vector<ChatMessage>& m, bool gen) {
  std::string out;
  for (size_t i = 0; i < m.size(); ++i) {
    if (i == 0 && m[0].role != "system" && !t.default_system.empty())
      out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
    out += "<|im_start|>" + m[i].role + "\n" + m[i].content + "<|im_end|>\n";
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama2(const ChatTemplate& t, const std::vector<ChatMessage>& m, bool gen) {
  Split s = split_system(m);
  check_alternation(t, m, s.first);
  std::string out;
  for (size_t i = s.first; i < m.size(); ++i) {
    std::string content = m[i].content;
    if (i == s.first && s.system) content = "<<SYS>>\n" + s.system->content + "\n<</SYS>>\n\n" + content;
    if (m[i].role == "user")
      out += t.bos_text + "[INST] " + strip(content) + " [/INST]";
    else if (m[i].role == "assistant")
      out += " " + strip(content) + " " + t.eos_text;
  }
  (void)gen;  // the Llama-2 template has no generation header: the model answers after "[/INST]"
  return out;
}

std::string render_vicuna(const ChatTemplate& t, const std::vector<ChatMessage>& m, bool gen) {
  Split s = split_system(m);
  std::string out = (s.system ? s.system->content : t.default_system) + " ";
  for (size_t i = s.first; i < m.size(); ++i) {
    if (m[i].role == "user") out += "USER: " + m[i].content + " ";
    else if (m[i].role == "assistant") out += "ASSISTANT: " + m[i].content + t.eos_text;
  }
  if (gen) out += "ASSISTANT:";
  return out;
}

std::string render_zephyr(const ChatTemplate& t, const std::vector<ChatMessage>& m, bool gen) {
  std::string out;
  for (const auto& msg : m) {
    if (msg.role == "user" || msg.role == "system" || msg.role == "assistant")
      out += "<|" + msg.role + "|>\n" + msg.content + t.eos_text + "\n";
  }
  if (gen && !m.empty()) out += "<|assistant|>\n";
  return out;
}

std::string render_gemma(const ChatTemplate& t, const std::vector<ChatMessage>& m, bool gen) {
  Split s = split_system(m);
  check_alternation(t, m, s.first);
  std::string out = t.bos_text;
  for (size_t i = s.first; i < m.size(); ++i) {
    std::string role = m[i].role == "assistant" ? "model" : m[i].role;
    out += "<start_of_turn>" + role + "\n";
    if (i == s.first && s.system) out += s.system->content + "\n\n";
    out += strip(m[i].content) + "<end_of_turn>\n";
  }
  if (gen) out += "<start_of_turn>model\n";
  return out;
}

std::string render_llama3(const ChatTemplate& t, const std::vector<ChatMessage>& m, bool gen) {
  std::string out;
  for (size_t i = 0; i < m.size(); ++i) {
    if (i == 0) out += t.bos_text;
    out += "<|start_header_id|>" + m[i].role + "<|end_header_id|>\n\n" + strip(m[i].content) + "<|eot_id|>";
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_raw(const std::vector<ChatMessage>& m, bool gen) {
  std::string out;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i].role == "system") {
      if (!m[i].content.empty()) out += m[i].content + "\n\n";
      continue;
    }
    if (!out.empty() && out.back() != '\n') out += "\n";
    out += m[i].content;
  }
  if (gen && !out.empty() && out.back() != '\n') out += "\n";
  return out;
}

}  // namespace

std::vector<std::string> chat_template_names() {
  return {"raw", "chatml", "qwen2", "smollm2", "llama2", "vicuna", "zephyr", "gemma", "llama3"};
}

ChatTemplate chat_template_by_name(std::string_view name) {
  ChatTemplate t;
  t.name = std::string(name);
  if (name == "raw") {
    t.format = ChatFormat::Raw;
  } else if (name == "chatml" || name == "qwen2" || name == "smollm2") {
    t.format = ChatFormat::ChatML;
    t.eos_text = "<|im_end|>";
    if (name == "qwen2") t.default_system = "You are a helpful assistant.";
    if (name == "smollm2") t.default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
  } else if (name == "llama2") {
    t.format = ChatFormat::Llama2;
    t.bos_text = "<s>";
    t.eos_text = "</s>";
  } else if (name == "vicuna") {
    t.format = ChatFormat::Vicuna;
    t.default_system = kVicunaSystem;
    t.eos_text = "</s>";
  } else if (name == "zephyr") {
    t.format = ChatFormat::Zephyr;
    t.eos_text = "</s>";
  } else if (name == "gemma") {
    t.format = ChatFormat::Gemma;
    t.bos_text = "<bos>";
    t.eos_text = "<end_of_turn>";
  } else if (name == "llama3") {
    t.format = ChatFormat::Llama3;
    t.bos_text = "<|begin_of_text|>";
    t.eos_text = "<|eot_id|>";
  } else {
    std::string known;
    for (const auto& n : chat_template_names()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown chat template '{}' (known: {})", name, known);
  }
  if (!t.eos_text.empty()) t.stop_strings.push_back(t.eos_text);
  if (t.format == ChatFormat::Vicuna) t.stop_strings.push_back("USER:");
  if (t.format == ChatFormat::Zephyr) t.stop_strings.push_back("<|user|>");
  return t;
}

ChatTemplate detect_chat_template(std::string_view j) {
  if (strip(j).empty()) return chat_template_by_name("raw");
  if (contains(j, "<|im_start|>")) {
    ChatTemplate t = chat_template_by_name("chatml");
    // A ChatML template that inserts a default system turn carries it as a literal:
    // '<|im_start|>system\n<default><|im_end|>' (the \n may be a real newline or the two characters \n).
    // The first such literal counts; other system heads may come first (Qwen2.5's tool-use branch writes
    // '<|im_start|>system\n' alone, then its default prompt only in the branch without tools).
    for (std::string_view head : {"<|im_start|>system\n", "<|im_start|>system\\n"}) {
      for (size_t p = j.find(head); p != std::string_view::npos && t.default_system.empty();
           p = j.find(head, p + 1)) {
        size_t b = p + head.size();
        size_t e = j.find("<|im_end|>", b);
        std::string_view lit = e == std::string_view::npos ? std::string_view() : j.substr(b, e - b);
        // Only a plain literal (no Jinja expression inside) is a default prompt.
        if (!lit.empty() && !contains(lit, "{") && !contains(lit, "'") && !contains(lit, "+"))
          t.default_system = std::string(lit);
      }
    }
    return t;
  }
  if (contains(j, "<|start_header_id|>")) return chat_template_by_name("llama3");
  if (contains(j, "<start_of_turn>")) return chat_template_by_name("gemma");
  if (contains(j, "<|user|>") && contains(j, "<|assistant|>")) return chat_template_by_name("zephyr");
  if (contains(j, "[INST]")) return chat_template_by_name("llama2");
  if (contains(j, "USER:") && contains(j, "ASSISTANT:")) return chat_template_by_name("vicuna");
  std::string known;
  for (const auto& n : chat_template_names()) known += (known.empty() ? "" : ", ") + n;
  fail("unrecognized chat template in the model file ({} characters, starts '{}'); choose one by name: {}",
       j.size(), std::string(j.substr(0, 40)), known);
}

std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& m, bool gen) {
  switch (t.format) {
    case ChatFormat::ChatML: return render_chatml(t, m, gen);
    case ChatFormat::Llama2: return render_llama2(t, m, gen);
    case ChatFormat::Vicuna: return render_vicuna(t, m, gen);
    case ChatFormat::Zephyr: return render_zephyr(t, m, gen);
    case ChatFormat::Gemma: return render_gemma(t, m, gen);
    case ChatFormat::Llama3: return render_llama3(t, m, gen);
    case ChatFormat::Raw: break;
  }
  return render_raw(m, gen);
}

}  // namespace ctrust
