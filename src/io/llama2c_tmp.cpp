// TEMPORARY (io helper): lets load_model link before the engine helper's src/io/llama2c.cpp is merged.
// DELETE THIS FILE when `git merge main` brings the real load_llama2c_model.
#include "base/error.h"
#include "io/model_file.h"

namespace ctrust {

LoadedModel load_llama2c_model(const std::string& path, const std::string& tokenizer_path) {
  fail("{}: llama2.c checkpoints are not supported in this build (tokenizer {})", path, tokenizer_path);
}

}  // namespace ctrust
