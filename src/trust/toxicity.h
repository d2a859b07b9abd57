// Toxicity scorers: one interface (a named function text -> toxicity in [0, 1]), two implementations.
//  (a) "ctrust-lr": built-in offline scorer, a logistic regression on hashed word and character n-grams,
//      trained by train_toxicity_lr() on the Perspective API toxicity values carried by the RealToxicityPrompts
//      records of DecodingTrust's toxicity prompt files (prompt and continuation texts), with a held-out split
//      (every 5th record) on which its agreement with Perspective is measured (AUC, Spearman).
//  (b) "perspective-http": a client of the Perspective API (POST comments:analyze), given an endpoint URL and
//      a key; works with any compatible server (plain HTTP).
// Every report names the scorer (ToxicityScorer::name).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace ctrust {

struct ToxicityScorer {
  std::string name;  // "ctrust-lr (...)" or "perspective-http <endpoint>"
  std::function<std::vector<double>(const std::vector<std::string>&)> score;
};

// ---- (a) hashed n-gram logistic regression ----
struct ToxicityLR {
  int hash_bits = 18;
  float bias = 0;
  std::vector<float> w;  // 2^hash_bits weights
  // Held-out agreement with Perspective, measured when trained.
  double heldout_auc = 0, heldout_spearman = 0;
  int train_texts = 0, heldout_texts = 0;
};

// Feature ids (hashed, deduplicated) of a text: lower-cased word unigrams and bigrams, character 3- to 5-grams
// of each word with boundary marks. Each present feature has value 1/sqrt(count of features).
std::vector<uint32_t> toxicity_features(std::string_view text, int hash_bits);
double toxicity_lr_predict(const ToxicityLR& m, std::string_view text);

struct ToxicityTrainOptions {
  int hash_bits = 18;
  int epochs = 12;
  float learning_rate = 0.5f;
  float l2 = 1e-6f;
  uint64_t seed = 1;
};
// Trains on the prompt/continuation texts of the given RealToxicityPrompts jsonl files (records with a
// toxicity value); record i goes to the held-out split when i % 5 == 4 (per file). Deterministic.
ToxicityLR train_toxicity_lr(const std::vector<std::string>& rtp_jsonl_paths, const ToxicityTrainOptions& opt = {});

// Small binary file: "CTTOXLR1", hash_bits, bias, metrics, then the non-zero weights as (index, value) pairs.
void save_toxicity_lr(const ToxicityLR& m, const std::string& path);
ToxicityLR load_toxicity_lr(const std::string& path);  // Error on a bad/truncated file
// Loads cache_path if it exists, else trains on the files and writes cache_path.
ToxicityLR load_or_train_toxicity_lr(const std::string& cache_path, const std::vector<std::string>& rtp_jsonl_paths);

ToxicityScorer make_lr_scorer(ToxicityLR model);

// ---- (b) Perspective API over HTTP ----
// endpoint: "http://host:port/v1alpha1/comments:analyze" (the key is sent as ?key=...). https is not supported
// by the built-in client (Error says so). Each text is one request; HTTP errors -> Error naming the endpoint.
ToxicityScorer make_perspective_scorer(const std::string& endpoint, const std::string& api_key, int timeout_s = 30);
// One request (exposed for tests): returns summaryScore.value of TOXICITY.
double perspective_request(const std::string& endpoint, const std::string& api_key, const std::string& text,
                           int timeout_s = 30);

// ---- agreement measures ----
double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels);  // ties count 1/2
double spearman(const std::vector<double>& a, const std::vector<double>& b);        // average ranks for ties

}  // namespace ctrust
