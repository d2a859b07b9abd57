// The remote backend's options (--backend openai ...), shared by eval, trust and kld.
#include <cstdlib>
#include <memory>

#include "backend/openai.h"
#include "base/error.h"
#include "cli/common.h"
#include "eval/remote_score.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include <filesystem>

namespace ctrust::cli {

void add_remote(CLI::App* app, RemoteArgs& r) {
  app->add_option("--backend", r.backend,
                  "local (ctrust's engine, default) or openai (a model served by vLLM / llama.cpp's server; "
                  "docs/remote.md)")
      ->check(CLI::IsMember({"local", "openai"}));
  app->add_option("--base-url", r.base_url, "openai backend: the server's URL (http://host:port/v1)");
  app->add_option("--api-key-env", r.api_key_env,
                  "openai backend: environment variable holding the API key (sent as a bearer token)");
  app->add_option("--served-model", r.served_model, "openai backend: the model's name on the server");
  app->add_option("--max-inflight", r.max_inflight, "openai backend: requests in flight at once (default 4)")
      ->check(CLI::Range(1, 1024));
  app->add_option("--timeout", r.timeout, "openai backend: seconds per request (default 600)")
      ->check(CLI::Range(1.0, 86400.0));
  app->add_option("--retries", r.retries,
                  "openai backend: retries of a request after a connection error, 429 or 5xx (default 4; "
                  "exponential backoff from 0.5 s)")
      ->check(CLI::Range(0, 20));
  app->add_option("--logprobs-mode", r.logprobs_mode,
                  "openai backend: prompt_logprobs, echo-tokens or echo-text instead of the probe's choice")
      ->check(CLI::IsMember({"prompt_logprobs", "echo-tokens", "echo-text"}));
}

std::unique_ptr<OpenAIBackend> open_backend(const RemoteArgs& r, const Tokenizer& tok, bool needs_logprobs) {
  OpenAIOptions o;
  o.base_url = r.base_url;
  o.model = r.served_model;
  o.max_inflight = r.max_inflight;
  o.http.timeout_seconds = r.timeout;
  o.http.retries = r.retries;
  o.force_mode = r.logprobs_mode;
  if (!r.api_key_env.empty()) {
    const char* k = std::getenv(r.api_key_env.c_str());
    if (!k || !*k) fail("--api-key-env {}: the environment variable is not set", r.api_key_env);
    o.http.bearer = k;
  }
  auto b = std::make_unique<OpenAIBackend>(o);
  b->probe(needs_logprobs);
  const bool checked = check_tokenizers_agree(*b, tok);
  fmt::print(stderr, "openai backend: {} serves '{}' ({}; prompt log-probabilities: {}; tokenizer {})\n", r.base_url,
             r.served_model, b->server_kind(), b->mode(),
             checked ? "agrees with the local one on the sample" : "not checked: the server has no tokenize endpoint");
  return b;
}

// The model that supplies the tokenizer (and the context length, chat template) of a remote run: --tokenizer FILE
// (a GGUF file or Hugging Face folder of the served model), loaded without dequantizing.
std::unique_ptr<Model> open_tokenizer_model(const std::string& cmd, const std::string& tokenizer,
                                            const std::string& model) {
  if (!model.empty()) fail("{}: -m/--model is a local model; with --backend openai the model is --served-model", cmd);
  if (tokenizer.empty())
    fail("{}: --backend openai needs --tokenizer FILE (the served model's GGUF file or Hugging Face folder: its "
         "tokenizer builds the requests and is checked against the server's)", cmd);
  if (!std::filesystem::exists(tokenizer)) fail("{}: tokenizer file not found", tokenizer);
  return open_model(tokenizer, LoadOptions{"", ComputeMode::Native});
}

}  // namespace ctrust::cli
