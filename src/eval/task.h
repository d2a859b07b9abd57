// Evaluation tasks as data: one JSON declaration per task (tasks/<name>.json) says where the data is,
// how to read it, how to build each item's prompt and choices, and how to score it. See docs/tasks.md.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ctrust {

enum class Scoring {
  MultipleChoice,  // one context, one continuation per choice; pick the most likely
  Partial,         // one context per choice, one shared continuation (WinoGrande)
  Loglikelihood,   // one context, one continuation: log-likelihood + is it the greedy continuation (LAMBADA)
  Perplexity,      // a whole text, scored in llama.cpp perplexity chunks (WikiText-2)
};
const char* scoring_name(Scoring s);

struct TaskSpec {
  std::string name;
  std::string decl_path;            // the declaration file
  std::string description;          // one line for humans
  std::string source;               // where the data comes from (shown when it is missing)
  std::string format;               // jsonl, csv, csv_folder, hellaswag, text
  std::string data;                 // file or folder, as declared
  std::string fewshot_data;         // as declared ("" = few-shot examples from the data itself)
  std::string file_suffix;          // csv_folder: "_test.csv" (subtask = file name without it)
  std::string fewshot_suffix;       // csv_folder: "_dev.csv"
  Scoring scoring = Scoring::MultipleChoice;
  std::string preamble;             // template before the few-shot examples (MMLU's subject line)
  std::string prompt;               // template of the context
  nlohmann::json choices;           // array of templates ("{{arrayfield}}" expands) or one "{{arrayfield}}"
  std::string target;               // template: the continuation (partial/loglikelihood)
  nlohmann::json gold;              // field name (string) or literal index (number)
  std::vector<std::string> gold_labels;  // optional: gold values that are labels ("A".."D") -> index
  std::string true_field;           // optional array field: the first size() choices are all correct
  std::string target_delimiter = " ";
  std::string fewshot_delimiter = "\n\n";
  int num_fewshot = 0;
  nlohmann::json split_fields = nlohmann::json::object();  // csv: {"column": "separator"} -> arrays
  int n_ctx = 0;                    // perplexity: chunk length (0 = min(model n_ctx, 512))
  nlohmann::json raw;               // the whole declaration (stored with each run)
};

// One scored unit. contexts has one entry (shared) or one per choice (partial scoring);
// continuations include the target delimiter; choice_texts are the bare choices (acc_norm length).
struct TaskItem {
  std::string task;  // subtask (e.g. mmlu_anatomy) or the task name
  std::string id;    // document index within its subtask, as text
  std::vector<std::string> contexts;
  std::vector<std::string> continuations;
  std::vector<std::string> choice_texts;
  int gold = 0;
  int n_true = 0;    // > 0: choices [0, n_true) all count as correct (gold is one of them)
  Scoring scoring = Scoring::MultipleChoice;  // Loglikelihood: correct = the continuation is the greedy one
};

struct TaskData {
  TaskSpec spec;
  std::vector<TaskItem> items;   // empty for perplexity tasks
  std::string text;              // perplexity tasks: the whole text
  std::string data_path;         // resolved
};

// Where data paths without "./" or "../" are looked up: $CTRUST_SHARED, else <project root>/../shared.
std::string shared_data_dir();
// Folders searched for <name>.json: $CTRUST_TASKS (':'-separated), then <project root>/tasks.
std::vector<std::string> task_dirs();
// Names of every task declaration found in task_dirs(), sorted.
std::vector<std::string> known_tasks();

// A task name (a declaration's name, each item's subtask; stored with runs, used in export file names):
// 1-200 of [A-Za-z0-9_.+-], not starting with '.'. Otherwise Error("<where>: task name ... is not allowed").
void check_task_name(const std::string& name, const std::string& where);

// Reads a declaration: `name_or_path` is a task name (looked up in task_dirs()) or a path to a .json
// file. Unknown task -> Error listing the known ones. Bad declaration -> Error naming the file.
TaskSpec load_task_spec(const std::string& name_or_path);
TaskSpec parse_task_spec(const nlohmann::json& j, const std::string& decl_path);

// Resolves a declared data path (see shared_data_dir) relative to the declaration's folder.
std::string resolve_data_path(const TaskSpec& spec, const std::string& declared);

// Which items a limit keeps of each (sub)task's documents.
//   Stratified (default): a seeded sample stratified by the gold answer (stratified_sample, eval/metrics.h: nested,
//                so a larger limit extends a smaller one), with one seed per subtask (`seed` mixed with the
//                subtask's name by FNV-1a, as trust settings are): never "the first N", whose order is the data
//                file's (ARC and MMLU files are grouped by source, and by answer in places).
//   First: the first `limit` documents, lm-evaluation-harness's --limit (for comparing with its runs).
// Items keep their document index as id either way, so runs of different limits share ids.
enum class LimitMode { Stratified, First };
const char* limit_mode_name(LimitMode m);

// Loads the data and builds the items: every item, or at most `limit` per subtask chosen by `mode`.
// Missing file -> Error with its path and the declared source; malformed line -> Error "file:line: ...".
TaskData load_task(const TaskSpec& spec, int limit = 0, LimitMode mode = LimitMode::Stratified, uint64_t seed = 0);

// Building blocks, exposed for tests.
// "{{field}}" substitution from a JSON object (strings as is, numbers as text); unknown field -> Error.
std::string render_template(const std::string& tmpl, const nlohmann::json& doc, const std::string& where);
// RFC 4180 CSV: rows of fields; line numbers (1-based) of each row's start in `lines`.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& path,
                                                std::vector<int>* lines = nullptr);
// Whole file as bytes; ".bz2" files are decompressed. Missing or not a regular file -> Error(path: ...);
// decompressed output is capped at max_decompressed_bytes(compressed size) (bzip2 bombs -> Error).
std::string read_text_file(const std::string& path);
uint64_t max_decompressed_bytes(uint64_t compressed);

}  // namespace ctrust
