// What the CLI calls: `ctrust eval` -> eval_run, `ctrust runs` -> list_runs, `ctrust compare` -> compare_runs.
// Plain result structs, each with to_json(); their text tables are in report/eval_text.h. See docs/tasks.md.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/openai.h"
#include "eval/metrics.h"
#include "eval/task.h"
#include "model/model.h"
#include "pipeline/worker.h"
#include "pipeline/run_select.h"
#include "store/store.h"

namespace ctrust {

struct EvalOptions {
  std::string db = "ctrust.db";
  std::string name;           // run name; "" = the model file's stem
  std::string recipe;         // how the model was derived (part of its fingerprint)
  int limit = 0;              // > 0: `limit` items of each subtask, chosen by limit_mode (eval/task.h)
  LimitMode limit_mode = LimitMode::Stratified;  // seeded stratified sample (default) or lm-eval's first N
  uint64_t seed = 0;          // the stratified sample's seed
  int num_fewshot = -1;       // >= 0: overrides the declaration
  int max_ctx = 2048;         // KV cache length (capped by the model's n_ctx); perplexity chunk if not declared
  int batch = 16;             // at most this many items scored together (ItemScorer::score_batch), one transaction
  double commit_seconds = 5;  // perplexity chunks: commit at least this often (item batches: see runs.cpp)
  bool progress = true;       // items done, items/s, ETA on stderr (a plain line every 10 s if not a terminal)
  // Called after each committed batch (items stored so far, items of the run). Throwing stops the run;
  // everything committed stays.
  std::function<void(int64_t done, int64_t total)> on_commit;
  // Score through a served model (eval/remote_score.h) instead of the engine; the model then supplies only the
  // tokenizer and context length. The run's settings record it ("compute": "remote", "backend": {...}).
  const OpenAIBackend* remote = nullptr;
  // --worker (pipeline/worker.h, docs/cluster.md): this process is one of several working on the run; units are
  // ranges of worker.unit_items items, claimed with leases; eval_run returns when every unit is done (by any worker),
  // or, with worker.wait false, as soon as no unit is free (EvalResult::complete false while others hold units).
  WorkerOptions worker;
};

struct TaskSummary {
  std::string task;           // subtask, or the task (aggregate over its subtasks)
  int64_t n = 0;
  double acc = 0, acc_norm = 0, acc_mean = 0;  // acc_mean: token-mean scoring (llama.cpp)
  double ppl = -1;            // loglikelihood: exp(-mean ll); perplexity: exp(total nll / tokens); -1: n/a
  double mc2 = -1;            // truthfulqa_mc2: mean probability mass on true answers; -1: n/a
  int64_t n_truncated = 0;    // items longer than the context, cut from the left (lm-eval's rule; item extra
                              // "truncated" = tokens cut, "cont_dropped" = continuation tokens left unscored)
  nlohmann::json to_json() const;
};

struct EvalResult {
  RunInfo run;
  int64_t n_total = 0;        // items of the task (after limit)
  int64_t n_skipped = 0;      // already in the store (resumed)
  int64_t n_scored = 0;       // scored now
  std::vector<TaskSummary> tasks;  // aggregate first (when there are subtasks), then each subtask
  bool complete = true;       // every item is stored (false only for a --worker run left with worker.wait false)
  nlohmann::json to_json() const;
};

// Evaluates `task` (a name or a declaration path) with the model and stores every item; resumes a run
// with the same name, model fingerprint and settings.
EvalResult eval_run(const Model& m, const std::string& model_path, const std::string& task,
                    const EvalOptions& opt = {});

// The progress line of eval_run (stderr): "task: 120/500 items (100 resumed), 1.52 items/s,
// ETA 250 s". The rate counts only the `scored` items of this process over `seconds`, not resumed ones.
std::string progress_line(const std::string& label, int64_t scored, int64_t resumed, int64_t total, double seconds);

// Summaries of a run's stored items (per subtask + aggregate).
std::vector<TaskSummary> summarize(const RunInfo& run, const std::vector<StoredItem>& items);
// The same from the run's items in the store `db`.
std::vector<TaskSummary> summarize_run(const std::string& db, const RunInfo& run);

nlohmann::json to_json(const RunInfo& r);
std::vector<RunInfo> list_runs(const std::string& db = "ctrust.db");
nlohmann::json to_json(const std::vector<RunInfo>& runs);

struct TaskComparison {
  PairMetrics m;
  int64_t only_a = 0, only_b = 0;  // items present in one run only (left out of the metrics)
  double ppl_a = -1, ppl_b = -1;   // loglikelihood / perplexity tasks
  nlohmann::json to_json() const;
};

struct Comparison {
  std::vector<RunInfo> runs_a, runs_b;
  std::map<std::string, TaskComparison> tasks;  // subtasks and aggregates (e.g. mmlu)
  std::vector<std::string> notes;               // e.g. "arc_easy: 10 items only in a"
  nlohmann::json to_json() const;               // {"tasks": {name: {...}}, "runs_a", "runs_b", "notes"}
};

// Runs are selected by id ("12") or by name (every run of that name; the newest per task).
// Tasks present in both selections are compared on the intersection of their item ids.
Comparison compare_runs(const std::string& db, const std::string& sel_a, const std::string& sel_b,
                        const BootstrapOptions& opt = {});
// The same from items already read (for tests and imports).
TaskComparison compare_item_sets(const std::vector<StoredItem>& a, const std::vector<StoredItem>& b,
                                 const std::string& scoring, const BootstrapOptions& opt = {});

}  // namespace ctrust
