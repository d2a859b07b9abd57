// Trust runs in the results store (what `ctrust trust`, `ctrust trust-report` and `ctrust compare` on trust
// runs call). A trust run is a `runs` row with task "trust" and scoring "generate"; each generated answer is
// an `items` row (task "<perspective>/<task>", item_id, correct, and in `extra` the prompt, output, parsed
// answer, refusal, toxicity, truncation); the run's scores (to_json(TrustResult)) are its `run_results` row.
// Items are committed one transaction each as they are produced: a killed run keeps everything it reported,
// and the same command resumes it (settings that change answers are part of the run's identity; --limit and
// --perspectives are not, so a larger limit extends the run).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "store/store.h"
#include "trust/run.h"

namespace ctrust {

// Stored texts (prompt, output, parsed) are made valid UTF-8 (JSON needs it): each byte that is not part of a
// valid sequence becomes U+FFFD.
StoredItem to_stored(const TrustRecord& r);
std::string valid_utf8(const std::string& s);
TrustRecord from_stored(const StoredItem& s);  // Error if the item is not a trust record

struct TrustStoreOptions {
  std::string db = "ctrust.db";
  std::string name;         // run name; "" = the model file's stem
  std::string scorer_id;    // identifies the toxicity scorer in the run settings ("ctrust-tox", "perspective-http URL")
  std::string recipe;       // part of the model fingerprint
};

struct TrustRunResult {
  RunInfo run;
  TrustResult result;
  int64_t resumed = 0;    // records taken from the store
  int64_t generated = 0;  // records generated now
  nlohmann::json to_json() const;  // {"run": {...}, "resumed", "generated", + to_json(TrustResult)}
};

// The run settings that identify a trust run (see the file comment).
nlohmann::json trust_run_settings(const TrustOptions& opt, const TrustStoreOptions& so);

// Opens (or resumes) the run, wires TrustOptions::cached / on_item to the store, runs run_trust and stores the
// scores (merged with the perspectives stored by earlier invocations of the same run).
TrustRunResult trust_run(const Model& m, const std::string& model_path, TrustOptions opt,
                         const TrustStoreOptions& so);

// A stored trust run: selection by id ("12") or name (the newest trust run of that name).
struct StoredTrustRun {
  RunInfo run;
  nlohmann::json result;  // to_json(TrustResult) as stored; {} if the run never finished
};
StoredTrustRun load_trust_run(Store& store, const std::string& selector);
// True if the selector names a trust run (by id or name) in the store.
bool is_trust_run(Store& store, const std::string& selector);

// trust-report: perspectives as columns, one row per run, differences from the first run.
struct TrustReport {
  std::vector<std::string> perspectives;  // columns (the eight, in report order)
  std::vector<StoredTrustRun> runs;
  nlohmann::json to_json() const;         // {"perspectives": [...], "runs": [{"id","name","scores":{},"delta":{}}]}
  std::string to_csv() const;             // run,name,<perspective>...,<perspective>_delta...
  std::string to_text() const;
};
TrustReport trust_report(const std::string& db, const std::vector<std::string>& selectors);

// compare on two trust runs: scores side by side and item-level flips of the parsed answers (items present
// in both runs; a flip = different parsed answer).
struct TrustFlip {
  std::string perspective, task, item_id, parsed_a, parsed_b;
  bool correct_a = false, correct_b = false;
};
struct TrustPerspectiveCompare {
  double score_a = -1, score_b = -1;   // -1: not in that run
  double refusal_a = -1, refusal_b = -1;
  int64_t common = 0, flips = 0, c2w = 0, w2c = 0;  // c2w/w2c: correct -> wrong / wrong -> correct
};
struct TrustComparison {
  StoredTrustRun a, b;
  std::vector<std::string> order;  // perspectives in report order
  std::map<std::string, TrustPerspectiveCompare> perspectives;
  std::vector<TrustFlip> flips;    // every flip, in perspective / task / item order
  int64_t refusal_changes = 0;     // items refused in one run only (a refusal is not a parsed answer)
  std::vector<std::string> notes;  // e.g. the runs were computed in different compute modes
  nlohmann::json to_json(size_t max_flips = 1000) const;
  std::string to_text(size_t max_flips = 20) const;
  std::string to_csv() const;
};
TrustComparison compare_trust_runs(const std::string& db, const std::string& sel_a, const std::string& sel_b);

}  // namespace ctrust
