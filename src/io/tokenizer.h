// Tokenizers, exact to llama.cpp: SentencePiece-style BPE with byte fallback ("llama") and byte-level BPE
// with merges and a pre-tokenizer regex ("gpt2": GPT-2, SmolLM2, Llama 3, Qwen2).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/model_file.h"

namespace ctrust {

struct TokenizerImpl;

class Tokenizer {
 public:
  Tokenizer();
  explicit Tokenizer(const TokenizerData& data);  // throws Error on inconsistent data
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_bos: prepend BOS if the tokenizer's add_bos flag says so (llama.cpp's add_special);
  // parse_special: text like "<|im_start|>" becomes its control token.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const;
  // Concatenated pieces, as text: llama.cpp's llama_detokenize(remove_special = false,
  // unparse_special = false): control/unknown tokens render as nothing, the leading space of the first
  // token is dropped when the vocabulary adds a space prefix (SPM) unless BOS comes first, and byte-level
  // BPE vocabularies apply llama.cpp's clean_up_tokenization_spaces passes when their pre-tokenizer does.
  std::string decode(std::span<const int32_t> ids) const;
  // llama_detokenize with both of its flags: remove_special drops a leading BOS / trailing EOS that the
  // vocabulary adds; unparse_special renders control tokens as their text.
  std::string detokenize(std::span<const int32_t> ids, bool remove_special, bool unparse_special) const;
  std::string piece(int32_t id) const;  // one token as text (byte tokens as bytes, control tokens as their text)
  int n_vocab() const;
  int32_t bos() const;
  int32_t eos() const;
  bool adds_bos() const;
  const TokenizerData& data() const;
  // Hash of the vocabulary and merges: two models can be compared token by token only if equal.
  uint64_t fingerprint() const;

 private:
  std::unique_ptr<TokenizerImpl> impl_;
};

// Loaders of tokenizer data from other sources.
TokenizerData tokenizer_from_gguf(const GgufFile& f);                 // tokenizer.ggml.* keys
TokenizerData tokenizer_from_json(const std::string& tokenizer_json_path);  // Hugging Face tokenizer.json
TokenizerData tokenizer_from_llama2c(const std::string& tok_bin_path);      // llama2.c tokenizer .bin

}  // namespace ctrust
