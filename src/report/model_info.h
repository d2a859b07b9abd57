// The report of `ctrust info`: a loaded model's summary (format, architecture and config, tokenizer, parameters,
// tensor bytes and bits per weight, tensor types, metadata, the compression recipe) as JSON (`--json`) and text.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "io/model_file.h"

namespace ctrust {

nlohmann::json model_info_json(const LoadedModel& m);
std::string model_info_text(const LoadedModel& m);

}  // namespace ctrust
