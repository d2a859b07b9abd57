// The report of `ctrust info`: a loaded model's summary (format, architecture and config, tokenizer, parameters,
// tensor bytes and bits per weight, tensor types, metadata, the compression recipe) as JSON (`--json`) and text.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "io/model_file.h"
#include "io/tokenizer.h"

namespace ctrust {

nlohmann::json model_info_json(const LoadedModel& m);
std::string model_info_text(const LoadedModel& m);

// `ctrust tokenize`: the ids and their pieces (JSON: ids, pieces, n_tokens; text: "     id -> 'piece'" lines and
// the count).
nlohmann::json tokens_json(const Tokenizer& tok, const std::vector<int32_t>& ids);
std::string tokens_text(const Tokenizer& tok, const std::vector<int32_t>& ids);

}  // namespace ctrust
