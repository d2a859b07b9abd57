// Calibration data for the compression methods: a text file, cleaned of WikiText's artifacts, tokenized, and
// sampled into N sequences of L tokens -- as plain-text windows (the GPTQ reference's sampling) or as chat
// conversations rendered by a caller-supplied formatter (the model's chat template; src/cli supplies it,
// since chat templates live in a later stage).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer.h"

namespace ctrust {

struct Calibration {
  std::string file;
  std::string hash;                        // file_hash(file)
  std::vector<std::vector<int32_t>> seqs;  // N sequences of L tokens
};

// ../shared/data/wikitext-2-tokens/wiki.valid.tokens (CTRUST_SHARED, else beside the source tree).
std::string default_calibration_file();

// WikiText's tokenized text without its artifacts: every sentence that contains "<unk>" is dropped (a
// sentence ends after " . ", " ! " or " ? ", as WikiText writes them; a line left empty is dropped), and the
// escapes " @-@ ", " @,@ ", " @.@ " become "-", ",", ".". A text without these markers is returned unchanged.
std::string clean_calibration_text(std::string_view text);

// The paragraphs of a (cleaned) text for chat samples: its non-empty lines, without WikiText's headings
// (" = Title = ", " = = Section = = "), trimmed.
std::vector<std::string> calibration_paragraphs(std::string_view text);

// Renders consecutive paragraphs as one conversation (alternating user / assistant turns) in the model's chat
// template and returns its token ids (special tokens parsed, BOS as the template wants it).
using CalibChatFormatter = std::function<std::vector<int32_t>(const std::vector<std::string>& turns)>;

struct CalibOptions {
  int n = 32;          // sequences ...
  int len = 256;       // ... of this many tokens
  uint64_t seed = 0;
  bool clean = true;   // clean_calibration_text before tokenizing
  CalibChatFormatter chat;  // set: chat samples (see load_calibration)
};

// Plain text (o.chat empty): tokenizes the whole (cleaned) text without BOS, as the GPTQ reference, checks it
// holds >= N x L tokens, and takes N windows of L tokens at uniformly random starts drawn with
// std::mt19937_64(seed).
// Chat (o.chat set): sample i starts at a paragraph drawn uniformly with std::mt19937_64(seed); that paragraph
// and the following ones (wrapping around) are the turns of one conversation, user first, added until the
// rendered conversation has >= L tokens; its first L tokens are the sample. Throws Error if the whole text
// cannot fill L tokens.
Calibration load_calibration(const Tokenizer& tok, const std::string& file, const CalibOptions& o);
// The plain-text form with the default clean-up.
Calibration load_calibration(const Tokenizer& tok, const std::string& file, int n, int len, uint64_t seed);

}  // namespace ctrust
