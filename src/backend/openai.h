// A model served by an OpenAI-compatible server (vLLM, llama.cpp's llama-server, llama-cpp-python's server):
// the completions API (/v1/completions) for prompt log-probabilities and for generation, /v1/models to check the
// served model, and the server's tokenizer endpoint where there is one. docs/remote.md.
//
// Prompt log-probabilities, chosen per server by a probe at start-up (probe()) and recorded with the run:
//  * "prompt_logprobs": vLLM's extension (`prompt_logprobs: k`): token ids in, per-token {id: logprob} out;
//  * "echo-tokens": `echo: true, logprobs: k, max_tokens: 1` with the prompt as token ids (vLLM, OpenAI spec);
//  * "echo-text": the same with the prompt as text, for servers that only take text (llama-cpp-python); the
//    server's tokens must be ours, which is checked on every request (count and text of each token).
// The first prompt token has no log-probability in any of them.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/http.h"

namespace ctrust {

struct OpenAIOptions {
  std::string base_url;       // e.g. http://127.0.0.1:8000/v1 (a missing /v1 is added)
  std::string api_key;        // sent as a bearer token when not empty (read from --api-key-env VAR by the CLI)
  std::string model;          // --served-model: the name the server serves the model under
  int max_inflight = 4;       // requests in flight at once
  HttpOptions http;
  std::string force_mode;     // "" = probe; else one of the modes above (tests)
};

struct SamplingParams {
  int max_tokens = 128;
  double temperature = 0;     // 0 = greedy
  double top_p = 1;
  uint64_t seed = 0;
  std::vector<std::string> stop;
};

// Log-probabilities of the prompt's tokens: entry i (i >= 1) for token i given tokens [0, i); entry 0 is unused.
struct PromptLogprobs {
  std::vector<double> logp;                               // log p(token i)
  std::vector<double> top_logp;                           // the largest log-probability at position i
  std::vector<std::vector<std::pair<int32_t, double>>> top;  // top-k (id, logprob), when asked with ids known
};

class OpenAIBackend {
 public:
  // Token text of id (as the local tokenizer decodes one token), for echo-text's checks and for mapping the
  // string keys of top_logprobs to ids; set by the caller before scoring.
  using PieceFn = std::function<std::string(int32_t)>;
  // The id whose text is exactly this (nullopt: none, or several): maps the echo APIs' string-keyed
  // alternatives back to ids (kld's top-k).
  using IdFn = std::function<std::optional<int32_t>(const std::string&)>;

  explicit OpenAIBackend(OpenAIOptions opt);
  // Checks the server (reachable, serves `model`) and picks the log-probability mode. Throws Error with what the
  // server answered. Needs_logprobs = false: generation only (a server without prompt log-probs is fine).
  void probe(bool needs_logprobs);
  const std::string& mode() const { return mode_; }          // "prompt_logprobs" / "echo-tokens" / "echo-text" / "none"
  const std::string& server_kind() const { return kind_; }   // "vllm", "llama.cpp", "llama-cpp-python", "unknown"
  const OpenAIOptions& options() const { return opt_; }
  const HttpClient& http() const { return http_; }
  nlohmann::json settings() const;  // {"backend": "openai", "base_url", "served_model", "logprobs": mode, "server"}

  // Log-probabilities of tokens[1..]; text is the same prompt as text (echo-text mode: tokens[0] is BOS if
  // `bos` is true, and the text is what follows it). top_k > 0 also returns the top-k alternatives.
  PromptLogprobs prompt_logprobs(const std::vector<int32_t>& tokens, const std::string& text, bool bos, int top_k,
                                 const PieceFn& piece, const IdFn& id_of = {}) const;
  // Generated text for a text prompt (the server adds BOS as its tokenizer does).
  std::string complete(const std::string& prompt, const SamplingParams& p) const;
  // The server's tokenizer: token ids of text (with the model's BOS if add_bos); nullopt when the server has no
  // tokenize endpoint.
  std::optional<std::vector<int32_t>> tokenize(const std::string& text, bool add_bos) const;

 private:
  nlohmann::json post(const std::string& path, const nlohmann::json& body, const char* what) const;
  PromptLogprobs parse_echo(const nlohmann::json& choice, const std::vector<int32_t>& tokens, bool bos,
                            const std::string& text, int top_k, const PieceFn& piece, const IdFn& id_of) const;
  OpenAIOptions opt_;
  HttpClient http_;
  std::string mode_ = "none", kind_ = "unknown";
};

// The first request's error message for a server's non-2xx answer: status, and the server's own message.
std::string server_error(const std::string& url, const HttpResponse& r);

}  // namespace ctrust
