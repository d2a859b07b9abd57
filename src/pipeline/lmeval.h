// Interoperability with lm-evaluation-harness: its `--log_samples` files (samples_<task>_<date>.jsonl, one
// JSON object per document) imported as ctrust runs, and ctrust runs exported in the same shape, so results
// computed elsewhere (e.g. on GPU machines with Hugging Face models) can be compared item by item.
//
// A sample line, as lm-eval 0.4 writes it for multiple-choice tasks:
//   {"doc_id": 0, "doc": {...}, "target": 3, "arguments": {"gen_args_0": {"arg_0": ctx, "arg_1": cont}, ...},
//    "resps": [[["-5.2", "False"]], ...], "filtered_resps": [["-5.2", "False"], ...], "filter": "none",
//    "metrics": ["acc", "acc_norm"], "doc_hash": ..., "prompt_hash": ..., "target_hash": ..., "acc": 1.0,
//    "acc_norm": 0.0}
// Older 0.4.x files have "arguments" as a list of [ctx, cont] pairs and numbers instead of strings.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/task.h"
#include "pipeline/run_select.h"
#include "store/store.h"

namespace ctrust {

// Reads one samples file into items of task `item_task`: ll = filtered_resps (else resps), pred = argmax,
// gold = target (an index, a digit string, or the text of one continuation), or, when the target does not
// name a choice, derived from the stored "acc" of a two-choice item. extra: correct_norm (from acc_norm),
// greedy, source. Errors name "file:line".
std::vector<StoredItem> read_lm_eval_samples(const std::string& path, const std::string& item_task);

// "samples_mmlu_anatomy_2024-05-01T10-00-00.123.jsonl" -> "mmlu_anatomy"; "" if the name is not of that form.
std::string lm_eval_task_from_filename(const std::string& path);

struct LmEvalImportOptions {
  std::string db = "ctrust.db";
  std::string name;     // run name (required)
  std::string task;     // ctrust task name the run belongs to (e.g. arc_easy, mmlu); required
  std::string model;    // recorded as the run's model path (default: the first file)
};

struct LmEvalImport {
  RunInfo run;
  int64_t n_items = 0;
  std::vector<std::string> item_tasks;  // per file
  nlohmann::json to_json() const;
};

// Imports files into one run (re-importing the same files replaces their items). Each file's items get the
// subtask from its file name when it starts with the task name (samples_mmlu_anatomy_... for task mmlu),
// else the task name.
LmEvalImport import_lm_eval(const std::vector<std::string>& files, const LmEvalImportOptions& opt);

// One sample line of a stored item in lm-eval's shape. `item` (optional) fills doc/arguments from the task.
nlohmann::json lm_eval_sample(const StoredItem& it, const TaskItem* item);

// Exports the runs selected by `sel` (run id, or name = newest run per task) as samples files. If the
// selection has one (sub)task and `out` is not a directory, `out` is the file; otherwise `out` is a folder
// (created) with samples_<task>_ctrust-run<id>.jsonl per (sub)task. Returns the files written.
std::vector<std::string> export_lm_eval(const std::string& db, const std::string& sel, const std::string& out);

}  // namespace ctrust
