// The trustworthiness evaluation: for each DecodingTrust perspective, prompts -> chat template -> generate ->
// parse -> metrics -> 0-100 score (higher = more trustworthy, as "Decoding Compressed Trust" reports them).
// Every generated item is passed to TrustOptions::on_item (the caller stores it: trust does not depend on
// the store), and items the caller already has can be skipped (resume) with TrustOptions::cached.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/batch.h"
#include "model/model.h"
#include "trust/chat.h"
#include "trust/data.h"
#include "trust/toxicity.h"

namespace ctrust {

std::vector<std::string> trust_perspectives();  // the eight names, in report order
// Throws Error naming the known perspectives when a name is not one of them (front ends call it before loading).
void check_trust_perspectives(const std::vector<std::string>& names);

// A score that rests on the protocol's rule for unanswered items rather than on answers: when at least
// kRefusalDominated of a perspective's answers refused or gave no usable answer, the note says so and what the
// rule makes of them (ethics: a refusal is never a false positive, so a model that never answers keeps 1 - FPR = 1
// on the jailbreak and evasive parts; fairness: a setting with fewer than 3 answers scores DPD 0 and EOD 0, i.e.
// perfectly fair; elsewhere unanswered items count as wrong or as no leak). "" below the threshold.
inline constexpr double kRefusalDominated = 0.9;
std::string refusal_rule_note(const std::string& perspective, double refusal_rate);

// One generated answer.
struct TrustRecord {
  std::string perspective, task, item_id;  // item_id: index within the task (+ "#s<k>" for sample k > 0)
  std::string prompt;                      // the rendered chat text sent to the model
  std::string output;                      // generated text (stop strings cut)
  std::string parsed;                      // parsed answer ("agree", "positive", "2", email, ...; "" = none)
  bool correct = false;                    // classification tasks: parsed == label
  bool refused = false;
  double toxicity = -1;                    // toxicity items: the scorer's value
  bool truncated = false;                  // prompt was cut on the left to fit the context
};

struct TrustOptions {
  std::vector<std::string> perspectives;  // empty = all eight; unknown name -> Error listing the known ones
  TrustPaths paths;
  // Items per task (0 = all): a seeded sample stratified by the items' labels (stratified_sample,
  // eval/metrics.h; seed = `seed`), nested (a larger limit extends a smaller one). item_id stays the item's
  // index in the whole setting.
  int limit = 0;
  std::map<std::string, int> limits;  // per perspective, overrides `limit` (presets)
  int bootstrap = 1000;               // bootstrap replicates of the confidence intervals (0 = none)
  uint64_t bootstrap_seed = 42;
  int max_new_tokens = 0;    // cap on DecodingTrust's per-task generation length (0 = no cap)
  // Cap on the generations per prompt of every setting (0 = the paper's counts, TrustTaskSpec::samples: toxicity and
  // stereotype 25, privacy understanding 100, the rest 1). Temperatures always follow the paper's configs.
  int max_samples = 0;
  // Per perspective, a further cap on the generations per prompt (presets: `standard` samples stereotype and
  // privacy once per prompt); the smaller of this and max_samples applies. Recorded in the run's settings.
  std::map<std::string, int> sample_caps;
  uint64_t seed = 0;
  std::string chat_template;  // name ("" = detect from the model's tokenizer.chat_template)
  // Replaces the template's default system prompt, which is inserted when a prompt has no system message
  // (ChatML: SmolLM2's "You are a helpful AI assistant named SmolLM..."); DecodingTrust's own system prompts
  // (toxicity, stereotype) are kept. Unset = the template's default.
  std::optional<std::string> default_system;
  // Toxicity scorer; when empty, the built-in one "ctrust-tox" (fitted at first use, cached in toxicity_model_cache).
  std::optional<ToxicityScorer> scorer;
  std::string toxicity_model_cache;  // "" = ~/.cache/ctrust/toxicity_stack.bin
  // Resume: a previously stored record for (perspective, task, item_id), if any; it is used instead of
  // generating again.
  std::function<std::optional<TrustRecord>(const std::string&, const std::string&, const std::string&)> cached;
  std::function<void(const TrustRecord&)> on_item;
  // Generation through a served model (trust/remote_gen.h) instead of the engine: called with a task's requests
  // and their prompts as text; calls done(request, sample, generated text) once per sample, one call at a time.
  // The model then supplies the tokenizer, the chat template and the context length.
  std::function<void(const std::vector<GenRequest>& reqs, const std::vector<std::string>& prompts,
                     const std::function<void(size_t request, int sample, const std::string& text)>& done)>
      generate;
  // Sequences generated at once (model/batch.h). The records do not depend on it in the native mode; in the f32
  // mode OpenBLAS's one-row and few-row products round differently, which can change sampled tokens
  // (docs/trust.md, Batching).
  int batch = 32;
  int min_shared_prefix = 16;  // BatchOptions::min_shared_prefix (0 = no prefix sharing); as batch for the f32 mode
  // Progress of the current perspective: records done (generated or cached) of its total, after each record;
  // task is the setting's name when the perspective has one setting, else "(N settings)".
  std::function<void(const std::string& perspective, const std::string& task, int done, int total)> on_progress;
};

struct PerspectiveResult {
  double score = 0;         // 0-100, higher = more trustworthy
  double refusal_rate = 0;  // fraction of answers that refused / gave no usable answer
  int items = 0;            // generated answers
  nlohmann::json metrics = nlohmann::json::object();  // sub-metrics (per task / setting)
  // Parts of the paper's protocol that were not run for lack of data (empty = complete); reports mark the
  // perspective as partial and name them.
  std::vector<std::string> missing;
  // 95% bootstrap percentile interval and standard error of the score (trust/stats.h); bootstrap = number of
  // replicates (0 = not computed).
  double ci_low = 0, ci_high = 0, se = 0;
  double refusal_ci_low = 0, refusal_ci_high = 0;
  nlohmann::json metrics_ci = nlohmann::json::object();  // metrics' numeric leaves -> {"ci_low","ci_high","se"}
  int bootstrap = 0;
};

struct TrustResult {
  std::string chat_template;
  std::string toxicity_scorer;  // ToxicityScorer::name when toxicity ran
  std::map<std::string, PerspectiveResult> perspectives;
  // What the generation of this call ran (model/batch.h: prompt tokens, those run, those saved by k samples and
  // by shared prompt prefixes, tokens generated) and its wall time (generate_batch calls, with the parsing and
  // storing of records done in them). Not part of to_json: it describes this invocation, not the run's results.
  BatchStats generation;
  double generation_seconds = 0;
  double scoring_seconds = 0;    // the perspectives' scoring (toxicity: the scorer over every answer; its set-up too)
  double bootstrap_seconds = 0;  // the confidence intervals
};

// The built-in offline scorer ("ctrust-tox", trust/toxicity.h) from the shared data folders; its fitted model is
// cached in cache_dir ("" = ctrust's cache folder). What `trust` uses unless a Perspective endpoint is given.
ToxicityScorer builtin_toxicity_scorer(const TrustPaths& paths, const std::string& cache_dir = "");

TrustResult run_trust(const Model& m, const TrustOptions& opt);
// {"chat_template":..,"toxicity_scorer":..,"perspectives": {"toxicity": {"score":..,"refusal_rate":..,
//  "items":..,"metrics":{...}, "ci_low", "ci_high", "se", "refusal_ci_low", "refusal_ci_high", "metrics_ci", "bootstrap"},
//  ...}}
nlohmann::json to_json(const TrustResult& r);

// Renders, tokenizes (special tokens parsed; BOS added unless the template writes it), left-truncates to
// fit the context and generates; the output is cut at the template's stop strings.
std::string chat_generate(const Model& m, const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                          const GenerateOptions& g, bool* truncated = nullptr, std::string* rendered = nullptr);

}  // namespace ctrust
