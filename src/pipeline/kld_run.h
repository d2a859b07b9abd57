// `ctrust kld` as a library call: a model's token-level KL divergence against a base model on a text
// (llama.cpp's --kl-divergence statistics, eval/kld.h): the two models in lockstep, or against a compact baseline
// saved by an earlier run (--save-base / --load-base), or against a served model (--backend openai: the server's
// top-k log-probabilities, a lower bound of the full KL). Text: report/eval_text.h (kld_text, kld_saved_text).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "eval/kld.h"
#include "model/model.h"

namespace ctrust {

class OpenAIBackend;

struct KldRunOptions {
  std::string base;       // base model (lockstep, or the model a baseline is saved from)
  std::string model;      // the model compared ("" with save_base: only save the baseline)
  std::string tokenizer;  // llama2.c tokenizer .bin (both models)
  std::string file;       // the text
  std::string save_base, load_base;
  std::string save_tokens;  // per-token results of the comparison (KldTokens, for `kld --paired`)
  std::string compute = "f32";
  int ctx = 512, chunks = -1;
  int top_k = 0;  // saved baseline: log-probs kept per token (0: 256 local, 20 served); lockstep: also the top-k error
  // A served base model (--backend openai): its name, the model that supplies the tokenizer when `model` is empty,
  // and the connection (made once the local tokenizer is loaded: the server's tokenizer is checked against it).
  std::string served_model;
  std::function<std::unique_ptr<Model>()> open_tokenizer;
  std::function<std::unique_ptr<OpenAIBackend>(const Tokenizer&)> connect;
  // A progress callback for each pass over the chunks; notices (what the KL means) on the caller's stderr.
  std::function<std::function<void(int, int)>()> progress;
  std::function<void(const std::string&)> notice;
  bool remote() const { return !served_model.empty(); }
};

// A baseline written by save_base.
struct KldSaved {
  std::string base, file, path;
  bool served = false;  // the base is a served model
  int top_k = 0, n_ctx = 0, n_chunks = 0, n_vocab = 0;
  int64_t n_tokens = 0;      // scored tokens
  int64_t text_tokens = 0;   // tokens of the text
  uint64_t bytes = 0;        // the file's size
  double llama_cpp_bytes() const;  // llama.cpp's 16-bit file of the same baseline
  nlohmann::json to_json() const;
};

struct KldRunResult {
  std::optional<KldSaved> saved;
  std::optional<KldStats> stats;  // absent when only a baseline was saved
  std::string base;               // the base as shown: a model, a saved baseline, or "<served> (served, top-k)"
  std::string base_json;          // the base as --json names it (a model, a baseline file, the served name)
  std::string model, file, compute;
  nlohmann::json backend;  // the served model's settings (null for a local base)
  nlohmann::json to_json() const;  // the statistics (KldStats::to_json) with base, model, file, compute[, backend]
};

// Checks the options first (before any model is loaded; Error says what is wrong), then runs. on_saved (optional)
// is called as soon as a baseline is written, before the compared model is loaded.
KldRunResult kld_run(const KldRunOptions& o, const std::function<void(const KldSaved&)>& on_saved = {});

}  // namespace ctrust
