// The results store: one row per run (model x task x settings), one row per scored item, and a JSON result per
// run (a trust run's scores). `Store` is what the pipeline uses; behind it a backend (StoreBackend) chosen by the
// --db value: a postgresql:// or postgres:// URL is a PostgreSQL database (store/postgres.cpp, libpq), anything
// else a SQLite database file (store/sqlite.cpp; default ./ctrust.db, WAL). A new backend is one StoreBackend
// implementation and one line in open_store_backend (store/store.cpp). Items are written in transactions
// (batches): whatever add_items returned from is stored, even if the process is killed right after.
// Work units (docs/cluster.md): a run worked on by several `--worker` processes is split into units that the
// workers claim with a lease (claim_unit), renew while they work, and mark done; a unit whose lease expired (its
// worker died) is claimed again by another worker.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

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

// A unit of a run's work (docs/cluster.md): eval = items [first, first + count) of the task's item list;
// trust = one perspective (first = count = 0).
struct WorkUnit {
  std::string name;
  int64_t first = 0, count = 0;
};
struct UnitState {
  WorkUnit unit;
  bool done = false;
  std::string owner;         // the worker holding (or last holding) it; "" = never claimed
  double lease_left = 0;     // seconds until its lease expires (negative: expired)
  int64_t attempts = 0;      // times it was claimed
};

// What a backend implements. Every method throws Error naming the database on failure.
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  // The run with the same name, model fingerprint, task and settings (resume), or a new one.
  // Fills run.id, version and created. Returns true if it already existed.
  virtual bool open_run(RunInfo& run) = 0;
  // Keys (item_key: task + '\x1f' + item_id) of the items already stored for a run (the resume set).
  virtual std::unordered_set<std::string> done_items(int64_t run_id) = 0;
  // One transaction: all the items or none; an item already stored is replaced.
  virtual void add_items(int64_t run_id, std::span<const StoredItem> items) = 0;
  virtual std::vector<RunInfo> list_runs() = 0;  // ordered by id, n_items filled
  virtual std::optional<RunInfo> get_run(int64_t id) = 0;
  virtual std::vector<StoredItem> items(int64_t run_id) = 0;  // ordered by task, then numeric item id
  virtual void delete_run(int64_t id) = 0;                    // with its items and result
  // A JSON document attached to a run (a trust run's scores), replaced on each call (one transaction).
  virtual void set_run_result(int64_t run_id, const nlohmann::json& result) = 0;
  virtual std::optional<nlohmann::json> run_result(int64_t run_id) = 0;
  // The run result replaced by f(current) in one transaction that excludes other writers of the same run's result
  // (workers merging their perspectives).
  virtual void update_run_result(int64_t run_id,
                                 const std::function<nlohmann::json(const std::optional<nlohmann::json>&)>& f) = 0;

  // ---- work units (one transaction each) ----
  // Adds the units not yet stored (by name; stored ones are left as they are).
  virtual void add_units(int64_t run_id, std::span<const WorkUnit> units) = 0;
  virtual std::vector<UnitState> units(int64_t run_id) = 0;  // in the order they were added
  // The first unit not done whose lease is free or expired and that was claimed fewer than max_attempts times
  // (0 = no limit), now leased to `worker` for lease_seconds (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: an
  // IMMEDIATE transaction); nullopt if there is none.
  virtual std::optional<WorkUnit> claim_unit(int64_t run_id, const std::string& worker, double lease_seconds,
                                             int64_t max_attempts) = 0;
  // Extends the lease if `worker` still holds the unit (and it is not done); false if it lost it.
  virtual bool renew_unit(int64_t run_id, const std::string& unit, const std::string& worker,
                          double lease_seconds) = 0;
  // add_items + renew_unit in one transaction: nothing is written (false) if `worker` no longer holds the unit.
  virtual bool add_unit_items(int64_t run_id, const std::string& unit, const std::string& worker,
                              double lease_seconds, std::span<const StoredItem> items) = 0;
  // Marks the unit done if `worker` holds it; false if it lost it (another worker has it or finished it).
  virtual bool finish_unit(int64_t run_id, const std::string& unit, const std::string& worker) = 0;
};

// The backend for `db`: a SQLite database file (any value that is not a URL of another backend). Throws Error
// ("<db>: ...") on failure, a foreign schema, (ReadOnly) a missing database, or a URL no backend serves.
std::unique_ptr<StoreBackend> open_store_backend(const std::string& db, StoreMode mode);
std::unique_ptr<StoreBackend> open_sqlite_store(const std::string& path, StoreMode mode);  // store/sqlite.cpp
// store/postgres.cpp (built when libpq is found). url: postgresql://... or postgres://... (libpq's URI syntax).
std::unique_ptr<StoreBackend> open_postgres_store(const std::string& url, StoreMode mode);
// The --db value as printed in messages: a URL's password (user:PASSWORD@ or password=... ) replaced by "***".
std::string db_display_name(const std::string& db);
bool is_postgres_url(const std::string& db);

class Store {
 public:
  // db: the --db value (a SQLite file path or a PostgreSQL URL). Throws Error("<db>: ...") on failure, a foreign schema, or
  // (ReadOnly) a missing database.
  explicit Store(const std::string& db = "ctrust.db", StoreMode mode = StoreMode::ReadWrite);
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // See StoreBackend. open_run checks the run and task names first (check_run_name, check_task_name).
  bool open_run(RunInfo& run);
  std::unordered_set<std::string> done_items(int64_t run_id) { return b_->done_items(run_id); }
  void add_items(int64_t run_id, std::span<const StoredItem> items) { b_->add_items(run_id, items); }
  std::vector<RunInfo> list_runs() { return b_->list_runs(); }
  std::optional<RunInfo> get_run(int64_t id) { return b_->get_run(id); }
  std::vector<StoredItem> items(int64_t run_id) { return b_->items(run_id); }
  void delete_run(int64_t id) { b_->delete_run(id); }
  void set_run_result(int64_t run_id, const nlohmann::json& result) { b_->set_run_result(run_id, result); }
  std::optional<nlohmann::json> run_result(int64_t run_id) { return b_->run_result(run_id); }
  void update_run_result(int64_t run_id,
                         const std::function<nlohmann::json(const std::optional<nlohmann::json>&)>& f) {
    b_->update_run_result(run_id, f);
  }
  StoreBackend& backend() { return *b_; }  // the work-unit methods
  const std::string& path() const { return path_; }  // the db value as printed (db_display_name: no password)

 private:
  std::string path_;
  std::unique_ptr<StoreBackend> b_;
};

std::string item_key(const std::string& task, const std::string& item_id);

// A run name: 1-200 bytes, no control characters (they would reach the terminal raw), not all digits
// (digits select a run by id). Throws Error saying what is wrong. Task names: check_task_name (eval/task.h).
void check_run_name(const std::string& name);
std::string utc_now_iso8601();

}  // namespace ctrust
