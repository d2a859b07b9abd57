// Saving a LoadedModel as GGUF (version 3): metadata from the model's own keys plus what its config and
// tokenizer say, tensors in a chosen type. Used by `ctrust convert` and by compression.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "io/model_file.h"

namespace ctrust {

struct SaveOptions {
  // Type for 2-D weight matrices; nullopt keeps each tensor's source type when its raw bytes are available
  // and ctrust can write that type, else F32. 1-D tensors (norms, biases) are always written as F32.
  std::optional<GgmlType> type;
  std::vector<GgufKV> extra_meta;  // added or replacing keys (e.g. ctrust.recipe)
};

// The metadata a GGUF file of this model carries: the model's meta with the architecture, hyper-parameter
// and tokenizer keys rewritten from cfg and tok (so llama2.c and Hugging Face sources get complete files).
std::vector<GgufKV> gguf_metadata(const LoadedModel& m);

void save_gguf(const LoadedModel& m, const std::string& path, const SaveOptions& opt = {});

}  // namespace ctrust
