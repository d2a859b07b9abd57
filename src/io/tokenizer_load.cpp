// Tokenizer data from GGUF metadata (tokenizer.ggml.*), llama2.c tokenizer .bin files and Hugging Face
// tokenizer.json. Defaults follow llama.cpp's llama_vocab::impl::load.
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
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
