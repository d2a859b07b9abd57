// Fingerprints that decide whether two runs used the same model: a hash of every weight (as the engine
// sees it: f32 values, or in the native compute mode the storage-type bytes and type of the matrices kept
// quantized — so the two modes of one file have different fingerprints), the shapes, the inference modes of the
// linears and the compression recipe text.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "model/model.h"
#include "store/store.h"

namespace ctrust {

class OpenAIBackend;

// 64-bit hash of bytes (not cryptographic; fast: ~several GB/s).
uint64_t hash_bytes(const void* data, size_t n, uint64_t seed = 0);
// "16 hex digits"; recipe = how the model was derived (e.g. "gptq w4 g128"; "" for a plain file).
std::string model_fingerprint(const Model& m, std::string_view recipe = "");
std::string tokenizer_fingerprint(const Model& m);
// The recipe a file written by `ctrust compress` carries (GGUF metadata "ctrust.recipe", compact JSON); "" if none.
// Recorded in a run's settings.recipe when the user gives no --recipe (ctrust runs shows it).
std::string file_recipe(const Model& m);
std::string hex64(uint64_t v);

// The model part of a run's identity (eval and trust runs): name (default: the model file's stem), model path,
// model and tokenizer fingerprints. A served model (remote) is "<base_url> <model>", fingerprinted by its name,
// the recipe and the local tokenizer.
void set_run_model(RunInfo& run, const Model& m, const std::string& model_path, const std::string& name,
                   const std::string& recipe, const OpenAIBackend* remote);

}  // namespace ctrust
