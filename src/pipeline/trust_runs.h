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
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/openai.h"

#include "model/model.h"
#include "pipeline/worker.h"
#include "pipeline/run_select.h"
#include "store/store.h"
#include "trust/perspective.h"
#include "trust/run.h"
#include "trust/stats.h"

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
  // Generation through a served model (opt.generate set by the caller, trust/remote_gen.h): recorded in the run
  // ("compute": "remote", "backend": {...}); the fingerprint is the served model's name + the local tokenizer's.
  const OpenAIBackend* remote = nullptr;
  // --worker (pipeline/worker.h, docs/cluster.md): one unit per perspective, claimed with leases; trust_run returns
  // when every perspective of the run is done (by any worker), with the perspectives this worker generated in
  // `result` (the run's merged scores are its run result: trust-report).
  WorkerOptions worker;
};

struct TrustRunResult {
  RunInfo run;
  TrustResult result;
  int64_t resumed = 0;    // records taken from the store
  int64_t generated = 0;  // records generated now
  // {"run": {...}, "resumed", "generated", "generation": {sequences, generated_tokens, seconds, tokens_per_second,
  //  prompt_tokens, prefill_tokens, prefill_saved_by_samples, prefill_saved_by_prefixes, shared_prefixes,
  //  peak_prefix_caches}, +
  //  to_json(TrustResult)}
  nlohmann::json to_json() const;
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

// ---- re-scoring a stored run ----
// The stored records of a run are put back into TaskRuns: the perspective's plan is rebuilt from the data
// (--data) with the run's stored settings (samples, temperature, seed), each record goes to the setting named
// by its task and to the item its item_id ("<index>" or "<index>#s<k>") names; an item is used when all its k
// samples are stored. The records keep their stored parsed / correct / refused / toxicity (not parsed again,
// no toxicity scorer is needed); the plan's ScoreFn gives the score, and the bootstrap its intervals.
struct RescoredPerspective {
  std::shared_ptr<PerspectivePlan> plan;  // owns the TaskSpecs the runs point to
  std::vector<TaskRun> runs;
  PerspectiveResult result;  // plan->score(runs) with confidence intervals
  int64_t records = 0;       // stored records used
  int64_t unused = 0;        // stored records not used (incomplete item, unknown setting, index out of range)
};
struct RescoredRun {
  std::map<std::string, RescoredPerspective> perspectives;
  std::map<std::string, std::string> errors;  // perspective -> why it could not be re-scored (e.g. data missing)
};
// The TrustOptions a stored run was generated with (what the plans depend on), given the data paths.
TrustOptions stored_trust_options(const nlohmann::json& settings, const TrustPaths& paths);
// toxicity: when given, the toxicity records' stored values are replaced by this scorer's values of their outputs
// (a stored run scored by an older or another scorer, reported with the current one; nothing is written).
RescoredRun rescore_trust_run(const std::vector<StoredItem>& items, const nlohmann::json& settings,
                              const TrustPaths& paths, const BootstrapOptions& bo,
                              const ToxicityScorer* toxicity = nullptr);

struct TrustStatsOptions {
  std::string data;       // shared data folder ("" = shared_data_dir() + "/data")
  BootstrapOptions bootstrap;
  // Score the stored toxicity outputs again with the built-in offline scorer of this ctrust (not the values the
  // run stored); the report names that scorer. For runs generated before a scorer change.
  bool rescore_toxicity = false;
};

// ---- MMLU beside the perspectives (the paper's Average has 9 columns: the 8 perspectives and MMLU) ----
// The MMLU eval run paired with a trust run: given explicitly, else the newest stored run of task "mmlu" with the
// trust run's model fingerprint (the same model file, or the same compressed model with the same recipe).
std::optional<RunInfo> find_mmlu_run(Store& store, const RunInfo& trust_run);

// One cell of the report: a perspective's (or MMLU's) score with its interval, and the paired difference from
// the first run's cell.
struct TrustReportCell {
  double score = -1;                // -1: not in this run
  double ci_low = 0, ci_high = 0, se = 0;
  bool has_ci = false;              // false: could not be re-scored (no records or no data), stored score only
  double refusal = -1;
  int64_t items = 0;
  std::vector<std::string> missing;  // parts of the protocol not run (PerspectiveResult::missing)
  std::optional<PairedDelta> paired;  // rows after the first: paired difference from the first run
};
struct TrustReportRow {
  StoredTrustRun run;
  std::optional<RunInfo> mmlu;  // the MMLU run paired with it
  std::map<std::string, TrustReportCell> cells;  // perspectives and "mmlu"
};

// trust-report: perspectives (and MMLU when every run has one) as columns, one row per run, differences from
// the first run with paired bootstrap intervals, and the minimum detectable difference.
struct TrustReport {
  std::vector<std::string> perspectives;  // the eight, in report order
  std::vector<std::string> columns;       // perspectives + "mmlu" when every run has an MMLU run
  std::vector<StoredTrustRun> runs;
  std::vector<TrustReportRow> rows;
  int bootstrap = 0;
  std::vector<std::string> notes;         // "<run> (<id>): " + refusal_rule_note, per cell whose score the rule made
  nlohmann::json to_json() const;         // {"perspectives","columns","runs": [{"id","name","scores":{},"delta":{},
                                          //  "ci":{},"paired":{},"average":{}}]}
  // Text and CSV: trust_report_text / trust_report_csv (report/trust_text.h).
};
// mmlu: MMLU eval runs (ids or names), one per trust run in order, or empty (matched by fingerprint).
TrustReport trust_report(const std::string& db, const std::vector<std::string>& selectors,
                         const TrustStatsOptions& so = {}, const std::vector<std::string>& mmlu = {});

// The mean of a row's columns, its normal-approximation interval (the columns' items are disjoint, so the
// columns' bootstrap estimates are independent: SE = sqrt(sum SE^2) / n), and the same for the paired differences.
// When only k of the N columns have a score, the mean is over those k (marked "[k/N]"), with no interval and no
// difference (the two means would not cover the same columns).
struct TrustAverage {
  bool ok = false, has_ci = false, has_delta = false;
  int k = 0, n = 0;  // columns scored, columns
  double value = 0, se = 0, delta = 0, delta_se = 0;
  bool partial() const { return k < n; }
};
TrustAverage trust_average(const TrustReportRow& row, const std::vector<std::string>& columns);
// "AVG9" (the paper's Average: 8 perspectives and MMLU) or "AVG<n>", and what it means.
std::string trust_average_label(const std::vector<std::string>& columns);
std::string trust_average_meaning(const std::vector<std::string>& columns);
inline constexpr double kZ975 = 1.959963985;  // the normal 97.5% quantile (the averages' 95% intervals)

// compare on two trust runs: scores side by side and item-level flips of the parsed answers (items present
// in both runs; a flip = different parsed answer), and per perspective the paired bootstrap difference over the
// shared items with McNemar on the classification records.
struct TrustFlip {
  std::string perspective, task, item_id, parsed_a, parsed_b;
  bool correct_a = false, correct_b = false;
};
struct TrustPerspectiveCompare {
  double score_a = -1, score_b = -1;   // -1: not in that run
  double refusal_a = -1, refusal_b = -1;
  int64_t common = 0, flips = 0, c2w = 0, w2c = 0;  // c2w/w2c: correct -> wrong / wrong -> correct
  std::optional<PairedDelta> paired;  // when both runs could be re-scored
  std::string note;                   // why there is no paired difference
};
struct TrustComparison {
  StoredTrustRun a, b;
  std::vector<std::string> order;  // perspectives in report order
  std::map<std::string, TrustPerspectiveCompare> perspectives;
  std::vector<TrustFlip> flips;    // every flip, in perspective / task / item order
  int64_t refusal_changes = 0;     // items refused in one run only (a refusal is not a parsed answer)
  std::vector<std::string> notes;  // e.g. the runs were computed in different compute modes
  int bootstrap = 0;
  nlohmann::json to_json(size_t max_flips = 1000) const;
  // Text and CSV: trust_compare_text / trust_compare_csv (report/trust_text.h).
};
TrustComparison compare_trust_runs(const std::string& db, const std::string& sel_a, const std::string& sel_b,
                                   const TrustStatsOptions& so = {});

}  // namespace ctrust
