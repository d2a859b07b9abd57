// Tokenizer data from GGUF metadata (tokenizer.ggml.*), llama2.c tokenizer .bin files and Hugging Face
// tokenizer.json. Defaults follow llama.cpp's llama_vocab::impl::load.
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "base/mmap.h"
#include "io/tokenizer_impl.h"

namespace ctrust {

namespace {

const GgufValue* kv_find(const GgufFile& f, std::string_view key) {
  for (const GgufKV& kv : f.kv)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

bool is_int_type(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
    case GgufType::BOOL:
      return true;
    default:
      return false;
  }
}

int64_t int_value(const GgufValue& v) {
  if (v.type == GgufType::INT8 || v.type == GgufType::INT16 || v.type == GgufType::INT32 ||
      v.type == GgufType::INT64)
    return v.i;
  return static_cast<int64_t>(v.u);
}

const std::vector<GgufValue>& array_of(const GgufFile& f, std::string_view key, const GgufValue& v,
                                       std::initializer_list<GgufType> elems) {
  if (v.type != GgufType::ARRAY) fail("{}: {} is not an array", f.path, key);
  for (GgufType e : elems)
    if (v.elem == e) return v.arr;
  fail("{}: {} has the wrong element type ({})", f.path, key, static_cast<uint32_t>(v.elem));
}

}  // namespace

TokenizerData tokenizer_from_gguf(const GgufFile& f) {
  TokenizerData d;
  const GgufValue* tokens = kv_find(f, "tokenizer.ggml.tokens");
  if (!tokens) fail("{}: no tokenizer (tokenizer.ggml.tokens missing)", f.path);
  const GgufValue* model = kv_find(f, "tokenizer.ggml.model");
  if (!model || model->type != GgufType::STRING)
    fail("{}: no tokenizer (tokenizer.ggml.model missing)", f.path);
  d.model = model->s;
  if (d.model != "llama" && d.model != "gpt2")
    fail("{}: unsupported tokenizer model '{}' (supported: llama, gpt2)", f.path, d.model);
  if (const GgufValue* pre = kv_find(f, "tokenizer.ggml.pre"); pre && pre->type == GgufType::STRING)
    d.pre = pre->s;

  const auto& toks = array_of(f, "tokenizer.ggml.tokens", *tokens, {GgufType::STRING});
  const size_t n = toks.size();
  if (n == 0) fail("{}: tokenizer.ggml.tokens is empty", f.path);
  d.tokens.reserve(n);
  for (const GgufValue& v : toks) d.tokens.push_back(v.s);

  if (const GgufValue* sc = kv_find(f, "tokenizer.ggml.scores")) {
    const auto& a = array_of(f, "tokenizer.ggml.scores", *sc, {GgufType::FLOAT32, GgufType::INT32});
    if (a.size() != n) fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", f.path, a.size(), n);
    d.scores.reserve(n);
    for (const GgufValue& v : a)
      d.scores.push_back(v.type == GgufType::INT32 ? static_cast<float>(v.i) : static_cast<float>(v.f));
  }
  if (const GgufValue* ty = kv_find(f, "tokenizer.ggml.token_type")) {
    const auto& a = array_of(f, "tokenizer.ggml.token_type", *ty, {GgufType::INT32});
    if (a.size() != n) fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", f.path, a.size(), n);
    d.token_types.reserve(n);
    for (const GgufValue& v : a) d.token_types.push_back(static_cast<int32_t>(v.i));
  }

  PreTokInfo pre = pre_tokenizer_info(d.pre);
  if (d.model == "llama") {
    d.bos_id = 1, d.eos_id = 2, d.unk_id = 0, d.pad_id = -1;
    d.add_bos = true;
    d.add_space_prefix = true;
  } else {
    const GgufValue* merges = kv_find(f, "tokenizer.ggml.merges");
    if (!merges) fail("{}: byte-level BPE tokenizer without tokenizer.ggml.merges", f.path);
    const auto& a = array_of(f, "tokenizer.ggml.merges", *merges, {GgufType::STRING});
    if (a.empty()) fail("{}: byte-level BPE tokenizer with no merges (tokenizer.ggml.merges is empty)", f.path);
    d.merges.reserve(a.size());
    for (const GgufValue& v : a) d.merges.push_back(v.s);
    d.bos_id = 11, d.eos_id = 11, d.unk_id = -1, d.pad_id = -1;
    d.add_bos = pre.add_bos;
    d.add_space_prefix = false;
  }
  d.add_eos = false;

  auto get_bool = [&](const char* key, bool& out) {
    if (const GgufValue* v = kv_find(f, key)) {
      if (!is_int_type(v->type)) fail("{}: {} is not a boolean", f.path, key);
      out = int_value(*v) != 0;
    }
  };
  get_bool("tokenizer.ggml.add_space_prefix", d.add_space_prefix);
  get_bool("tokenizer.ggml.add_bos_token", d.add_bos);
  get_bool("tokenizer.ggml.add_eos_token", d.add_eos);

  // Default ids past the vocabulary are disabled; ids from the file past it are ignored (llama.cpp warns).
  auto get_id = [&](const char* key, int32_t& id) {
    if (id >= static_cast<int64_t>(n)) id = -1;
    if (const GgufValue* v = kv_find(f, key)) {
      if (!is_int_type(v->type)) fail("{}: {} is not an integer", f.path, key);
      int64_t x = int_value(*v);
      if (x >= 0 && x < static_cast<int64_t>(n)) id = static_cast<int32_t>(x);
    }
  };
  get_id("tokenizer.ggml.bos_token_id", d.bos_id);
  get_id("tokenizer.ggml.eos_token_id", d.eos_id);
  get_id("tokenizer.ggml.unknown_token_id", d.unk_id);
  get_id("tokenizer.ggml.padding_token_id", d.pad_id);
  if (d.add_bos && d.bos_id < 0) fail("{}: tokenizer adds BOS but has no BOS token", f.path);
  if (d.add_eos && d.eos_id < 0) fail("{}: tokenizer adds EOS but has no EOS token", f.path);

  if (const GgufValue* t = kv_find(f, "tokenizer.chat_template"); t && t->type == GgufType::STRING)
    d.chat_template = t->s;
  return d;
}

TokenizerData tokenizer_from_llama2c(const std::string& path) {
  MappedFile file(path);
  const uint8_t* p = file.data();
  const size_t size = file.size();
  if (size < 4) fail("{}: not a llama2.c tokenizer (file too short)", path);
  uint32_t max_len;
  std::memcpy(&max_len, p, 4);
  TokenizerData d;
  d.model = "llama";
  d.pre = "default";
  size_t off = 4;
  while (off < size) {
    if (size - off < 8)
      fail("{}: truncated token record {} at byte {}", path, d.tokens.size(), off);
    float score;
    int32_t len;
    std::memcpy(&score, p + off, 4);
    std::memcpy(&len, p + off + 4, 4);
    off += 8;
    if (len < 0 || static_cast<size_t>(len) > size - off)
      fail("{}: token {} has length {} past the end of the file (byte {})", path, d.tokens.size(), len, off);
    if (static_cast<uint32_t>(len) > max_len)
      fail("{}: token {} is {} bytes, longer than the header's maximum {}", path, d.tokens.size(), len, max_len);
    d.tokens.emplace_back(reinterpret_cast<const char*>(p + off), static_cast<size_t>(len));
    d.scores.push_back(score);
    off += static_cast<size_t>(len);
  }
  if (d.tokens.size() < 3) fail("{}: only {} tokens; expected <unk>, <s>, </s> and more", path, d.tokens.size());
  // llama2.c's export writes "▁" as a space and BOS/EOS as "\n<s>\n" / "\n</s>\n"; undo both so the
  // vocabulary equals the SentencePiece (and GGUF) one.
  d.token_types.resize(d.tokens.size(), 1);
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    std::string& t = d.tokens[i];
    if (i == 1 && t == "\n<s>\n") t = "<s>";
    if (i == 2 && t == "\n</s>\n") t = "</s>";
    std::string fixed;
    for (char c : t) {
      if (c == ' ')
        fixed += "\xe2\x96\x81";
      else
        fixed += c;
    }
    t.swap(fixed);
    bool is_byte = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
                   std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]));
    if (i == 0) d.token_types[i] = 2;
    else if (i <= 2) d.token_types[i] = 3;
    else if (is_byte) d.token_types[i] = 6;
  }
  d.unk_id = 0, d.bos_id = 1, d.eos_id = 2, d.pad_id = -1;
  d.add_bos = true;
  d.add_eos = false;
  d.add_space_prefix = true;
  return d;
}

}  // namespace ctrust

namespace ctrust {

namespace {

using json = nlohmann::json;

json read_json_file(const std::string& path) {
  const std::string text = read_regular_file(path, "tokenizer file", kMaxJsonBytes);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: bad JSON: {}", path, e.what());
  }
}

// convert_hf_to_gguf.py's does_token_look_special.
bool looks_special(const std::string& t) {
  auto starts = [&](std::string_view p) { return t.size() >= p.size() && t.compare(0, p.size(), p) == 0; };
  auto ends = [&](std::string_view s) {
    return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || (starts("<|") && ends("|>")) ||
         (starts("<｜") && ends("｜>")) || (starts("<unused") && ends(">"));
}

// The pre-tokenizer name (tokenizer.ggml.pre) that llama.cpp's converter would pick for this pre_tokenizer.
// Returns "" when it is not byte-level.
std::string pre_name_from_json(const json& pt, const std::string& path) {
  static const char* kGpt2Split = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  static const char* kLlama3Split =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*["
      "\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char* kQwen2Split =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+";
  std::vector<json> parts;
  if (pt.is_object() && pt.value("type", "") == "Sequence" && pt.contains("pretokenizers")) {
    for (const json& p : pt["pretokenizers"]) parts.push_back(p);
  } else if (pt.is_object()) {
    parts.push_back(pt);
  }
  bool byte_level = false, byte_level_regex = false, digits = false;
  std::string split;
  for (const json& p : parts) {
    std::string type = p.value("type", "");
    if (type == "ByteLevel") {
      byte_level = true;
      byte_level_regex = p.value("use_regex", true);
    } else if (type == "Digits") {
      digits = p.value("individual_digits", false);
    } else if (type == "Split" && p.contains("pattern") && p["pattern"].contains("Regex")) {
      split = p["pattern"]["Regex"].get<std::string>();
    }
  }
  if (!byte_level) return "";
  if (split.empty() && byte_level_regex) return digits ? "smollm" : "gpt-2";
  if (split == kLlama3Split) return "llama-bpe";
  if (split == kQwen2Split) return "qwen2";
  if (split == kGpt2Split) return "gpt-2";
  (void)path;
  return "default";  // unknown pre-tokenizer: ctrust's default regexes
}

}  // namespace

TokenizerData tokenizer_from_json(const std::string& path) {
  json j = read_json_file(path);
  TokenizerData d;
  try {
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
      fail("{}: not a tokenizer.json (no \"model\" object)", path);
    const json& m = j["model"];
    std::string type = m.value("type", "");
    if (type != "BPE") fail("{}: unsupported tokenizer model type '{}' (supported: BPE)", path, type);
    if (!m.contains("vocab") || !m["vocab"].is_object()) fail("{}: model.vocab missing", path);

    // Tokens by id: the vocabulary plus the added tokens; gaps become "[PAD<i>]" (unused), as the
    // GGUF converter writes them.
    std::vector<std::pair<int64_t, std::string>> entries;
    for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
      if (!it.value().is_number_integer()) fail("{}: model.vocab['{}'] is not an integer id", path, it.key());
      entries.emplace_back(it.value().get<int64_t>(), it.key());
    }
    struct Added { int64_t id; std::string content; bool special; };
    std::vector<Added> added;
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const json& a : j["added_tokens"]) {
        if (!a.contains("id") || !a.contains("content")) fail("{}: added token without id/content", path);
        added.push_back({a["id"].get<int64_t>(), a["content"].get<std::string>(), a.value("special", false)});
      }
    }
    int64_t max_id = -1;
    for (auto& [id, t] : entries) max_id = std::max(max_id, id);
    for (auto& a : added) max_id = std::max(max_id, a.id);
    if (max_id < 0) fail("{}: empty vocabulary", path);
    if (max_id >= (1 << 24)) fail("{}: token id {} too large", path, max_id);
    // Ids missing from the file become [PADi] tokens; a few ids spread far apart must not make a vocabulary of
    // millions (found by fuzz_tokenizer_json: a 3.9 KB file with id 9,357,389 took > 2 GB). Real tokenizer.json
    // vocabularies are dense, so the size is capped from the tokens the file lists.
    const int64_t listed = static_cast<int64_t>(entries.size() + added.size());
    if (max_id >= 2 * listed + 1024)
      fail("{}: token id {} but only {} tokens listed (ids above 2 x {} + 1024 are refused: the ids of a "
           "tokenizer.json are dense)", path, max_id, listed, listed);
    for (auto& [id, t] : entries)
      if (id < 0) fail("{}: negative token id {} for '{}'", path, id, t);
    const size_t n = static_cast<size_t>(max_id + 1);
    d.tokens.assign(n, std::string());
    d.token_types.assign(n, 5);
    std::vector<bool> seen(n, false);
    for (auto& [id, t] : entries) {
      d.tokens[id] = t;
      d.token_types[id] = 1;
      seen[id] = true;
    }
    for (auto& a : added) {
      if (a.id < 0) fail("{}: negative added token id {}", path, a.id);
      d.tokens[a.id] = a.content;
      d.token_types[a.id] = (a.special || looks_special(a.content)) ? 3 : 4;
      seen[a.id] = true;
    }
    for (size_t i = 0; i < n; ++i)
      if (!seen[i]) d.tokens[i] = fmt::format("[PAD{}]", i);

    if (m.contains("merges") && m["merges"].is_array()) {
      d.merges.reserve(m["merges"].size());
      for (const json& mg : m["merges"]) {
        if (mg.is_string()) {
          d.merges.push_back(mg.get<std::string>());
        } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
          d.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
        } else {
          fail("{}: merge {} is neither \"a b\" nor [\"a\", \"b\"]", path, d.merges.size());
        }
      }
    }

    const json pt = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json();
    std::string pre = pre_name_from_json(pt, path);
    bool metaspace = false;
    const json* norm = j.contains("normalizer") ? &j["normalizer"] : nullptr;
    for (const json* p : {&pt, norm}) {
      if (!p || !p->is_object()) continue;
      std::string s = p->dump();
      if (s.find("\"Metaspace\"") != std::string::npos || s.find("\xe2\x96\x81") != std::string::npos)
        metaspace = true;
    }
    const bool byte_fallback = m.value("byte_fallback", false);
    std::string unk_token = m.contains("unk_token") && m["unk_token"].is_string() ? m["unk_token"].get<std::string>() : "";

    auto find_id = [&](const std::string& t) -> int32_t {
      if (t.empty()) return -1;
      for (size_t i = n; i-- > 0;)
        if (d.tokens[i] == t) return static_cast<int32_t>(i);
      return -1;
    };

    if (!pre.empty()) {
      d.model = "gpt2";
      d.pre = pre;
      d.add_bos = pre_tokenizer_info(pre).add_bos;
      d.add_space_prefix = false;
      if (d.merges.empty()) fail("{}: byte-level BPE without merges", path);
    } else if (metaspace || byte_fallback) {
      // SentencePiece BPE exported by transformers: the piece scores are not stored; rebuild an order from
      // the merges (a piece made by an earlier merge scores higher), which is how the exporter ordered them.
      d.model = "llama";
      d.pre = "default";
      d.add_bos = true;
      d.add_space_prefix = true;
      d.scores.assign(n, 0.0f);
      std::vector<bool> scored(n, false);
      std::unordered_map<std::string, int32_t> ids;
      for (size_t i = 0; i < n; ++i) ids[d.tokens[i]] = static_cast<int32_t>(i);
      for (size_t r = 0; r < d.merges.size(); ++r) {
        const std::string& mg = d.merges[r];
        size_t sp = mg.find(' ', 1);
        if (sp == std::string::npos) continue;
        auto it = ids.find(mg.substr(0, sp) + mg.substr(sp + 1));
        if (it != ids.end() && !scored[it->second]) {
          d.scores[it->second] = -static_cast<float>(r);
          scored[it->second] = true;
        }
      }
      for (size_t i = 0; i < n; ++i) {
        const std::string& t = d.tokens[i];
        if (d.token_types[i] == 1 && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>')
          d.token_types[i] = 6;
      }
      d.bos_id = find_id("<s>");
      d.eos_id = find_id("</s>");
      d.merges.clear();  // SPM uses scores, not merges
    } else {
      fail("{}: unsupported pre-tokenizer (need ByteLevel, or Metaspace with byte_fallback)", path);
    }
    d.unk_id = find_id(unk_token);
    if (d.unk_id >= 0) d.token_types[d.unk_id] = 2;

    // Special tokens and flags live in tokenizer_config.json beside tokenizer.json.
    std::string cfg_path = path;
    size_t slash = cfg_path.find_last_of('/');
    cfg_path = (slash == std::string::npos ? std::string() : cfg_path.substr(0, slash + 1)) + "tokenizer_config.json";
    if (std::ifstream(cfg_path).good()) {
      json c = read_json_file(cfg_path);
      auto token_of = [&](const char* key) -> std::string {
        if (!c.contains(key)) return "";
        const json& v = c[key];
        if (v.is_string()) return v.get<std::string>();
        if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
        return "";
      };
      if (int32_t id = find_id(token_of("bos_token")); id >= 0) d.bos_id = id;
      if (int32_t id = find_id(token_of("eos_token")); id >= 0) d.eos_id = id;
      if (int32_t id = find_id(token_of("unk_token")); id >= 0) d.unk_id = id;
      if (int32_t id = find_id(token_of("pad_token")); id >= 0) d.pad_id = id;
      if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) d.add_bos = c["add_bos_token"].get<bool>();
      if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean()) d.add_eos = c["add_eos_token"].get<bool>();
      if (c.contains("chat_template") && c["chat_template"].is_string())
        d.chat_template = c["chat_template"].get<std::string>();
    }
    if (d.add_bos && d.bos_id < 0) d.add_bos = false;
    if (d.add_eos && d.eos_id < 0) d.add_eos = false;
  } catch (const json::exception& e) {
    fail("{}: unexpected tokenizer.json structure: {}", path, e.what());
  }
  return d;
}

}  // namespace ctrust
