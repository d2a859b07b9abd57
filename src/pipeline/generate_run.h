// `ctrust generate` as a library call: the prompt (plain, or one user turn in the model's chat template: special
// tokens parsed, BOS unless the template writes it; generation then stops at the template's end-of-turn text,
// which is not shown), generation (model/model.h), its text cut at the stop strings, timing.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace ctrust {

struct GenerateRunOptions {
  std::string prompt;
  bool chat = false;          // the prompt as a user turn in the model's chat template
  std::string chat_template;  // a template name (implies chat); "" = detected from tokenizer.chat_template
  GenerateOptions gen;        // max_tokens, temperature, top_p, seed (the template's stop strings are added)
};

struct GenerateRunResult {
  std::string prompt;         // as given
  std::string chat_template;  // the template's name, "" = plain prompt
  std::string compute;        // the model's compute mode (f32 | native)
  std::vector<int32_t> tokens;  // generated (EOS not included)
  std::string text;             // the tokens decoded, cut at the first stop string
  double seconds = 0;           // generation (prefill + decode)
  int threads = 0;              // OpenMP threads
  double tokens_per_s() const { return tokens.empty() ? 0.0 : tokens.size() / seconds; }
  // prompt, compute, text, tokens, n_tokens, seconds, tokens_per_s, threads, [chat_template], omp_wait_policy, gomp_spincount
  nlohmann::json to_json() const;
};

// model_path names the model in errors. on_text (optional) receives what a terminal shows, in order: the prompt
// (empty for a chat prompt), then the generated pieces as they become safe to show (StopStringStream), then the
// rest cut at the stop strings. Error: an unknown template name, an empty prompt with no BOS token to start from.
GenerateRunResult generate_run(const Model& m, const std::string& model_path, const GenerateRunOptions& o,
                               const std::function<void(const std::string&)>& on_text = {});

}  // namespace ctrust
