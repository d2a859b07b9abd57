// The results database (SQLite, default ./ctrust.db, WAL): one row per run (model x task x settings)
// and one row per scored item. Items are written in transactions (batches): whatever add_items returned
// from is on disk, even if the process is killed right after.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

struct sqlite3;

namespace ctrust {

struct RunInfo {
  int64_t id = 0;
  std::string name;
  std::string model_path;
  std::string model_fp;       // model_fingerprint()
  std::string tokenizer_fp;   // tokenizer_fingerprint()
  std::string task;           // task name (items may carry subtask names, e.g. mmlu_anatomy)
  std::string scoring;        // multiple_choice, partial, loglikelihood, perplexity
  nlohmann::json settings = nlohmann::json::object();  // the task declaration as run + options
  std::string version;        // ctrust version that created the run
  std::string created;        // UTC, ISO 8601
  int64_t n_items = 0;        // items stored (filled by list/get)
};

// The compute mode a run was made in: settings "compute" ("native"), absent = "f32" (every run made before the
// native mode existed, and every f32 run since: their settings are unchanged so that they resume).
inline std::string run_compute_mode(const nlohmann::json& settings) {
  return settings.is_object() && settings.contains("compute") && settings["compute"].is_string()
             ? settings["compute"].get<std::string>()
             : std::string("f32");
}

struct StoredItem {
  std::string task;
  std::string item_id;
  std::vector<double> ll;     // per-choice log-likelihoods
  int pred = -1;
  int gold = -1;
  bool correct = false;
  nlohmann::json extra = nlohmann::json::object();
};

enum class StoreMode {
  ReadWrite,  // opens or creates the database
  ReadOnly,   // read commands (runs, compare, export, trust-report): never creates or writes anything;
              // a missing file is an error, and a database on a read-only file system can be read
};

class Store {
 public:
  // Throws Error("<path>: ...") on failure, a foreign schema, or (ReadOnly) a missing file.
  explicit Store(const std::string& path = "ctrust.db", StoreMode mode = StoreMode::ReadWrite);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The run with the same name, model fingerprint, task and settings (resume), or a new one.
  // Fills run.id, version and created. Returns true if it already existed.
  bool open_run(RunInfo& run);
  // Keys (task + '\x1f' + item_id) of the items already stored for a run.
  std::unordered_set<std::string> done_items(int64_t run_id);
  // One transaction; an item already stored is replaced.
  void add_items(int64_t run_id, std::span<const StoredItem> items);
  std::vector<RunInfo> list_runs();
  std::optional<RunInfo> get_run(int64_t id);
  std::vector<StoredItem> items(int64_t run_id);  // ordered by task, then numeric item id
  void delete_run(int64_t id);
  // A JSON document attached to a run (a trust run's scores), replaced on each call (one transaction).
  void set_run_result(int64_t run_id, const nlohmann::json& result);
  std::optional<nlohmann::json> run_result(int64_t run_id);
  const std::string& path() const { return path_; }

 private:
  void exec(const char* sql);
  sqlite3* db_ = nullptr;
  std::string path_;
};

std::string item_key(const std::string& task, const std::string& item_id);

// A run name: 1-200 bytes, no control characters (they would reach the terminal raw), not all digits
// (digits select a run by id). Throws Error saying what is wrong. Task names: check_task_name (eval/task.h).
void check_run_name(const std::string& name);
// A run selector that is a run id ("12"): the id; otherwise (a name, or digits too long for an id) nullopt.
std::optional<int64_t> run_id_of(const std::string& selector);
std::string utc_now_iso8601();

}  // namespace ctrust
