// TEMPORARY (owned by the io helper): minimal tokenizer_from_gguf / tokenizer_from_json so that the model
// loaders link and can be tested before the tokenizer helper's src/io/tokenizer*.cpp is merged.
// DELETE THIS FILE when `git merge main` brings the real implementations (duplicate symbols otherwise).
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/tokenizer.h"

namespace ctrust {

TokenizerData tokenizer_from_gguf(const GgufFile& f) {
  TokenizerData t;
  const GgufValue* toks = f.find("tokenizer.ggml.tokens");
  if (!toks) fail("{}: no tokenizer (tokenizer.ggml.tokens missing)", f.path);
  if (toks->type != GgufType::ARRAY || toks->elem != GgufType::STRING)
    fail("{}: tokenizer.ggml.tokens is not an array of strings", f.path);
  t.model = f.get_str("tokenizer.ggml.model", "llama");
  t.pre = f.get_str("tokenizer.ggml.pre", "default");
  for (const auto& v : toks->arr) t.tokens.push_back(v.s);
  if (const GgufValue* s = f.find("tokenizer.ggml.scores"))
    for (const auto& v : s->arr) t.scores.push_back((float)v.as_float());
  if (const GgufValue* s = f.find("tokenizer.ggml.token_type"))
    for (const auto& v : s->arr) t.token_types.push_back((int32_t)v.as_int());
  if (const GgufValue* s = f.find("tokenizer.ggml.merges"))
    for (const auto& v : s->arr) t.merges.push_back(v.as_str());
  t.bos_id = (int32_t)f.get_int("tokenizer.ggml.bos_token_id", -1);
  t.eos_id = (int32_t)f.get_int("tokenizer.ggml.eos_token_id", -1);
  t.unk_id = (int32_t)f.get_int("tokenizer.ggml.unknown_token_id", -1);
  t.pad_id = (int32_t)f.get_int("tokenizer.ggml.padding_token_id", -1);
  t.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", t.model == "llama");
  t.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
  t.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", t.model == "llama");
  t.chat_template = f.get_str("tokenizer.chat_template");
  return t;
}

TokenizerData tokenizer_from_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: no such file", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
  TokenizerData t;
  const auto& model = j.at("model");
  const auto& vocab = model.at("vocab");
  t.tokens.resize(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    size_t id = it.value().get<size_t>();
    if (id >= t.tokens.size()) fail("{}: token id {} out of range", path, id);
    t.tokens[id] = it.key();
  }
  bool byte_level = j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object() &&
                    j["pre_tokenizer"].value("type", "") == "ByteLevel";
  t.model = byte_level ? "gpt2" : "llama";
  if (model.contains("merges"))
    for (const auto& mg : model["merges"])
      t.merges.push_back(mg.is_string() ? mg.get<std::string>()
                                        : mg.at(0).get<std::string>() + " " + mg.at(1).get<std::string>());
  t.token_types.assign(t.tokens.size(), 1);
  if (j.contains("added_tokens"))
    for (const auto& a : j["added_tokens"]) {
      size_t id = a.at("id").get<size_t>();
      if (id >= t.tokens.size()) t.tokens.resize(id + 1), t.token_types.resize(id + 1, 1);
      t.tokens[id] = a.at("content").get<std::string>();
      t.token_types[id] = a.value("special", false) ? 3 : 4;
    }
  t.add_space_prefix = !byte_level;
  t.add_bos = !byte_level;
  return t;
}

}  // namespace ctrust
