// Internals of the tokenizers (src/io/tokenizer*.cpp only). Mirrors llama.cpp's llama-vocab.cpp:
// token attributes, the special-token cache, the SPM and BPE sessions, the pre-tokenizer regexes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/tokenizer.h"

namespace ctrust {

// llama_token_attr bits (llama.h).
enum TokAttr : uint32_t {
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
};

// Transparent string hashing so maps keyed by std::string can be searched with a string_view.
struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
struct StrEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};
using StrIdMap = std::unordered_map<std::string, int32_t, StrHash, StrEq>;

// What llama.cpp derives from tokenizer.ggml.pre (llama_vocab::impl::load + llm_tokenizer_bpe).
struct PreTokInfo {
  std::vector<std::string> regexes;  // applied one after the other, each splitting the previous pieces
  bool ignore_merges = false;        // a whole pre-token that is a vocab entry is emitted as is
  bool clean_spaces = true;          // detokenize: clean_up_tokenization_spaces
  bool add_bos = false;              // default of add_bos_token when the file does not say
  bool known = true;                 // false: unknown name, the "default" regexes are used
};
PreTokInfo pre_tokenizer_info(std::string_view pre);

// Compiled pre-tokenizer: PCRE2 regexes (UTF + UCP, JIT when available).
struct PreTokenizer;
struct PreTokenizerDeleter {
  void operator()(PreTokenizer* p) const;
};
std::unique_ptr<PreTokenizer, PreTokenizerDeleter> make_pre_tokenizer(const std::vector<std::string>& regexes);
// Splits `text` (valid UTF-8, as produced by llama_text_from_utf8) into pre-tokens: appends [begin, end)
// byte ranges to `out`.
void pre_tokenize(const PreTokenizer& pt, std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& out);

// llama.cpp's unicode_cpts_from_utf8 followed by unicode_cpt_to_utf8: invalid sequences become U+FFFD,
// overlong forms are re-encoded canonically. (Code points above U+10FFFF, on which llama.cpp throws,
// also become U+FFFD.)
std::string llama_text_from_utf8(std::string_view s);
size_t utf8_len(uint8_t lead);  // llama.cpp unicode_len_utf8: by the high 4 bits of the lead byte
void append_utf8(std::string& out, uint32_t cp);

// GPT-2 byte <-> unicode map.
const std::string& gpt2_byte_to_utf8(uint8_t b);
// Returns -1 if `ch` (one UTF-8 character) is not the image of a byte.
int gpt2_utf8_to_byte(std::string_view ch);

struct BpeMerges {
  StrIdMap sym_ids;                          // every string that appears in a merge
  std::unordered_map<uint64_t, int32_t> rank;  // (left sym id << 32 | right sym id) -> merge rank
};

struct TokenizerImpl {
  TokenizerData d;
  bool is_bpe = false;
  StrIdMap tok2id;              // llama.cpp token_to_id (later duplicates win)
  std::vector<uint32_t> attr;   // TokAttr bits per token
  std::vector<int32_t> special; // cache_special_tokens: control/user-defined/unknown, longest text first
  std::vector<std::string> piece_cache;  // token_to_piece(id, special = true)
  std::vector<std::string> texts;        // token texts as llama.cpp stores them (empty -> "[EMPTY_i]")
  // SPM
  int32_t byte_tok[256];
  // BPE
  BpeMerges merges;
  PreTokInfo pre;
  std::unique_ptr<PreTokenizer, PreTokenizerDeleter> pretok;
  uint64_t fingerprint = 0;

  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  int32_t find(std::string_view s) const {
    auto it = tok2id.find(s);
    return it == tok2id.end() ? -1 : it->second;
  }
};

void build_bpe(TokenizerImpl& t);  // merges + pre-tokenizer

}  // namespace ctrust
