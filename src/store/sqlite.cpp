// The SQLite backend of the results store (store/store.h): runs, items and run results in one database file
// (WAL, synchronous=FULL), opened read-only (immutable on a read-only file system) for the read commands.
#include "store/store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <chrono>
#include <cstdlib>
#include <unistd.h>

#include "base/error.h"

namespace ctrust {

namespace {

constexpr int kSchemaVersion = 1;

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  model_path TEXT NOT NULL,
  model_fp TEXT NOT NULL,
  tokenizer_fp TEXT NOT NULL,
  task TEXT NOT NULL,
  scoring TEXT NOT NULL,
  settings TEXT NOT NULL,
  version TEXT NOT NULL,
  created TEXT NOT NULL,
  UNIQUE(name, model_fp, task, settings));
CREATE TABLE IF NOT EXISTS items(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  task TEXT NOT NULL,
  item_id TEXT NOT NULL,
  ll TEXT NOT NULL,
  pred INTEGER NOT NULL,
  gold INTEGER NOT NULL,
  correct INTEGER NOT NULL,
  extra TEXT NOT NULL,
  UNIQUE(run_id, task, item_id));
CREATE TABLE IF NOT EXISTS run_results(
  run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
  result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  unit TEXT NOT NULL,
  first_item INTEGER NOT NULL,
  n_items INTEGER NOT NULL,
  done INTEGER NOT NULL DEFAULT 0,
  owner TEXT NOT NULL DEFAULT '',
  lease_until REAL,
  attempts INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(run_id, unit));
)sql";
// The units table (work units of --worker runs, docs/cluster.md) was added to schema version 1 without a new
// version: it is created on the next read-write open, and a ctrust that does not know it ignores it.

// Seconds since the epoch (fractional) in SQL: the leases of the workers on this machine.
#define CTRUST_SQL_NOW "((julianday('now') - 2440587.5) * 86400.0)"

// A prepared statement, finalized on scope exit.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  const std::string& path;
  Stmt(sqlite3* db, const char* sql, const std::string& p) : path(p) {
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
      fail("{}: SQL error: {}", path, sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(s); }
  void text(int i, const std::string& v) { sqlite3_bind_text(s, i, v.data(), int(v.size()), SQLITE_TRANSIENT); }
  void integer(int i, int64_t v) { sqlite3_bind_int64(s, i, v); }
  bool step() {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail("{}: {}", path, sqlite3_errmsg(sqlite3_db_handle(s)));
  }
  void reset() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  std::string col_text(int i) {
    const unsigned char* t = sqlite3_column_text(s, i);
    return t ? std::string(reinterpret_cast<const char*>(t), size_t(sqlite3_column_bytes(s, i))) : std::string();
  }
  int64_t col_int(int i) { return sqlite3_column_int64(s, i); }
};

nlohmann::json parse_json(const std::string& text, const std::string& path, const char* what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt {} JSON in the database: {}", path, what, e.what());
  }
}

}  // namespace

class SqliteStore final : public StoreBackend {
 public:
  SqliteStore(const std::string& path, StoreMode mode);
  ~SqliteStore() override;
  bool open_run(RunInfo& run) override;
  std::unordered_set<std::string> done_items(int64_t run_id) override;
  void add_items(int64_t run_id, std::span<const StoredItem> items) override;
  std::vector<RunInfo> list_runs() override;
  std::optional<RunInfo> get_run(int64_t id) override;
  std::vector<StoredItem> items(int64_t run_id) override;
  void delete_run(int64_t id) override;
  void set_run_result(int64_t run_id, const nlohmann::json& result) override;
  std::optional<nlohmann::json> run_result(int64_t run_id) override;
  void update_run_result(int64_t run_id,
                         const std::function<nlohmann::json(const std::optional<nlohmann::json>&)>& f) override;
  void add_units(int64_t run_id, std::span<const WorkUnit> units) override;
  std::vector<UnitState> units(int64_t run_id) override;
  std::optional<WorkUnit> claim_unit(int64_t run_id, const std::string& worker, double lease_seconds,
                                     int64_t max_attempts) override;
  bool renew_unit(int64_t run_id, const std::string& unit, const std::string& worker, double lease_seconds) override;
  bool add_unit_items(int64_t run_id, const std::string& unit, const std::string& worker, double lease_seconds,
                      std::span<const StoredItem> items) override;
  bool finish_unit(int64_t run_id, const std::string& unit, const std::string& worker) override;

 private:
  // Runs body inside BEGIN IMMEDIATE ... COMMIT (the write lock from the start: workers of one machine
  // serialize their claims); ROLLBACK and rethrow on any error.
  template <class F>
  auto immediate(F&& body) {
    exec("BEGIN IMMEDIATE");
    try {
      if constexpr (std::is_void_v<decltype(body())>) {
        body();
        exec("COMMIT");
      } else {
        auto r = body();
        exec("COMMIT");
        return r;
      }
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }
  void insert_items(int64_t run_id, std::span<const StoredItem> items);
  bool renew(int64_t run_id, const std::string& unit, const std::string& worker, double lease_seconds);

  void exec(const char* sql);
  sqlite3* db_ = nullptr;
  std::string path_;
};

// file:<path>?immutable=1 — a database on a read-only file system whose WAL index (-shm) cannot be created.
static std::string immutable_uri(const std::string& path) {
  std::string u = "file:";
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '.' || c == '_' || c == '-') u += char(c);
    else u += fmt::format("%{:02X}", c);
  }
  return u + "?immutable=1";
}

namespace {
// Opens `name` (a path or a URI) with `flags`, or fails with SQLite's message naming `path`; 10 s busy timeout.
sqlite3* open_db(const std::string& path, const std::string& name, int flags) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(name.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    fail("{}: cannot open results database: {}", path, msg);
  }
  sqlite3_busy_timeout(db, 10000);
  return db;
}
}  // namespace

SqliteStore::SqliteStore(const std::string& path, StoreMode mode) : path_(path) {
  if (mode == StoreMode::ReadOnly) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      fail("{}: results database does not exist (check --db; read commands never create one)", path);
    if (!std::filesystem::is_regular_file(path, ec)) fail("{}: results database is not a regular file", path);
    // Read-only open. In WAL mode SQLite needs the -shm file; on a read-only file system it cannot be
    // created, and the database is opened as immutable instead (nothing can change it there anyway).
    const bool dir_writable =
        ::access(std::filesystem::path(path).parent_path().empty() ? "." : std::filesystem::path(path).parent_path().c_str(),
                 W_OK) == 0;
    db_ = dir_writable ? open_db(path, path, SQLITE_OPEN_READONLY)
                       : open_db(path, immutable_uri(path), SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
    try {
      Stmt t(db_, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ('meta','runs','items','run_results')", path_);
      if (!t.step() || t.col_int(0) != 4) fail("{}: not a ctrust results database", path);
      Stmt q(db_, "SELECT value FROM meta WHERE key='schema_version'", path_);
      const std::string v = q.step() ? q.col_text(0) : std::string("(none)");
      if (v != std::to_string(kSchemaVersion))
        fail("{}: results database has schema version {}, this ctrust uses {}", path, v, kSchemaVersion);
    } catch (...) {
      sqlite3_close(db_);
      db_ = nullptr;
      throw;
    }
    return;
  }
  // Workers started together on a file that does not exist yet race to create it: switching a new database to
  // WAL takes an exclusive lock, and SQLite answers "database is locked" at once (without its busy handler) to
  // the connections that find it held. So the whole opening is retried for up to 20 s, 20-100 ms apart.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int attempt = 0;; ++attempt) {
    db_ = open_db(path, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    try {
      exec("PRAGMA journal_mode=WAL");
      exec("PRAGMA synchronous=FULL");
      exec("PRAGMA foreign_keys=ON");
      exec("BEGIN IMMEDIATE");
      exec(kSchema);
      Stmt q(db_, "SELECT value FROM meta WHERE key='schema_version'", path_);
      if (q.step()) {
        const std::string v = q.col_text(0);
        if (v != std::to_string(kSchemaVersion))
          fail("{}: results database has schema version {}, this ctrust uses {}", path, v, kSchemaVersion);
      } else {
        Stmt ins(db_, "INSERT INTO meta(key, value) VALUES('schema_version', ?)", path_);
        ins.text(1, std::to_string(kSchemaVersion));
        ins.step();
      }
      exec("COMMIT");
      return;
    } catch (...) {
      const int code = sqlite3_errcode(db_) & 0xff;  // before ROLLBACK resets it
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      sqlite3_close(db_);
      db_ = nullptr;
      if ((code != SQLITE_BUSY && code != SQLITE_LOCKED) || std::chrono::steady_clock::now() > deadline) throw;
      ::usleep(20000 * (1 + attempt % 5));
    }
  }
}

SqliteStore::~SqliteStore() {
  if (db_) sqlite3_close(db_);
}

void SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    fail("{}: {}", path_, msg);
  }
}

bool SqliteStore::open_run(RunInfo& run) {
  // One transaction: workers starting together find the run one of them inserted.
  return immediate([&] {
  const std::string settings = run.settings.dump();
  {
    Stmt q(db_, "SELECT id, version, created FROM runs WHERE name=? AND model_fp=? AND task=? AND settings=?", path_);
    q.text(1, run.name);
    q.text(2, run.model_fp);
    q.text(3, run.task);
    q.text(4, settings);
    if (q.step()) {
      run.id = q.col_int(0);
      run.version = q.col_text(1);
      run.created = q.col_text(2);
      return true;
    }
  }
  run.version = CTRUST_VERSION;
  run.created = utc_now_iso8601();
  Stmt ins(db_,
           "INSERT INTO runs(name, model_path, model_fp, tokenizer_fp, task, scoring, settings, version, created)"
           " VALUES(?,?,?,?,?,?,?,?,?)",
           path_);
  ins.text(1, run.name);
  ins.text(2, run.model_path);
  ins.text(3, run.model_fp);
  ins.text(4, run.tokenizer_fp);
  ins.text(5, run.task);
  ins.text(6, run.scoring);
  ins.text(7, settings);
  ins.text(8, run.version);
  ins.text(9, run.created);
  ins.step();
  run.id = sqlite3_last_insert_rowid(db_);
  return false;
  });
}

std::unordered_set<std::string> SqliteStore::done_items(int64_t run_id) {
  std::unordered_set<std::string> done;
  Stmt q(db_, "SELECT task, item_id FROM items WHERE run_id=?", path_);
  q.integer(1, run_id);
  while (q.step()) done.insert(item_key(q.col_text(0), q.col_text(1)));
  return done;
}

void SqliteStore::add_items(int64_t run_id, std::span<const StoredItem> items) {
  if (items.empty()) return;
  immediate([&] { insert_items(run_id, items); });
}

void SqliteStore::insert_items(int64_t run_id, std::span<const StoredItem> items) {
  {
    Stmt ins(db_,
             "INSERT OR REPLACE INTO items(run_id, task, item_id, ll, pred, gold, correct, extra)"
             " VALUES(?,?,?,?,?,?,?,?)",
             path_);
    for (const auto& it : items) {
      ins.integer(1, run_id);
      ins.text(2, it.task);
      ins.text(3, it.item_id);
      // Full double precision, so a stored run compares exactly like the live one.
      ins.text(4, nlohmann::json(it.ll).dump());
      ins.integer(5, it.pred);
      ins.integer(6, it.gold);
      ins.integer(7, it.correct ? 1 : 0);
      ins.text(8, it.extra.dump());
      ins.step();
      ins.reset();
    }
  }
}

static const char* kRunCols =
    "SELECT r.id, r.name, r.model_path, r.model_fp, r.tokenizer_fp, r.task, r.scoring, r.settings, r.version,"
    " r.created, (SELECT COUNT(*) FROM items i WHERE i.run_id = r.id) FROM runs r";

static RunInfo read_run(Stmt& q, const std::string& path) {
  RunInfo r;
  r.id = q.col_int(0);
  r.name = q.col_text(1);
  r.model_path = q.col_text(2);
  r.model_fp = q.col_text(3);
  r.tokenizer_fp = q.col_text(4);
  r.task = q.col_text(5);
  r.scoring = q.col_text(6);
  r.settings = parse_json(q.col_text(7), path, "settings");
  r.version = q.col_text(8);
  r.created = q.col_text(9);
  r.n_items = q.col_int(10);
  return r;
}

std::vector<RunInfo> SqliteStore::list_runs() {
  std::vector<RunInfo> out;
  Stmt q(db_, (std::string(kRunCols) + " ORDER BY r.id").c_str(), path_);
  while (q.step()) out.push_back(read_run(q, path_));
  return out;
}

std::optional<RunInfo> SqliteStore::get_run(int64_t id) {
  Stmt q(db_, (std::string(kRunCols) + " WHERE r.id=?").c_str(), path_);
  q.integer(1, id);
  if (!q.step()) return std::nullopt;
  return read_run(q, path_);
}

std::vector<StoredItem> SqliteStore::items(int64_t run_id) {
  std::vector<StoredItem> out;
  Stmt q(db_,
         "SELECT task, item_id, ll, pred, gold, correct, extra FROM items WHERE run_id=?"
         " ORDER BY task, length(item_id), item_id",
         path_);
  q.integer(1, run_id);
  while (q.step()) {
    StoredItem it;
    it.task = q.col_text(0);
    it.item_id = q.col_text(1);
    nlohmann::json ll = parse_json(q.col_text(2), path_, "log-likelihood");
    if (!ll.is_array()) fail("{}: run {} item {}: log-likelihoods are not a list", path_, run_id, it.item_id);
    for (const auto& v : ll) {
      if (!v.is_number()) fail("{}: run {} item {}: log-likelihood is not a number", path_, run_id, it.item_id);
      it.ll.push_back(v.get<double>());
    }
    it.pred = int(q.col_int(3));
    it.gold = int(q.col_int(4));
    it.correct = q.col_int(5) != 0;
    it.extra = parse_json(q.col_text(6), path_, "extra");
    out.push_back(std::move(it));
  }
  return out;
}

void SqliteStore::delete_run(int64_t id) {
  Stmt d(db_, "DELETE FROM runs WHERE id=?", path_);
  d.integer(1, id);
  d.step();
}

void SqliteStore::set_run_result(int64_t run_id, const nlohmann::json& result) {
  Stmt ins(db_, "INSERT OR REPLACE INTO run_results(run_id, result) VALUES(?, ?)", path_);
  ins.integer(1, run_id);
  ins.text(2, result.dump());
  ins.step();
}

std::optional<nlohmann::json> SqliteStore::run_result(int64_t run_id) {
  Stmt q(db_, "SELECT result FROM run_results WHERE run_id=?", path_);
  q.integer(1, run_id);
  if (!q.step()) return std::nullopt;
  return parse_json(q.col_text(0), path_, "run result");
}

void SqliteStore::update_run_result(int64_t run_id,
                                    const std::function<nlohmann::json(const std::optional<nlohmann::json>&)>& f) {
  immediate([&] {
    std::optional<nlohmann::json> old = run_result(run_id);
    set_run_result(run_id, f(old));
  });
}

void SqliteStore::add_units(int64_t run_id, std::span<const WorkUnit> units) {
  immediate([&] {
    Stmt ins(db_, "INSERT OR IGNORE INTO units(run_id, seq, unit, first_item, n_items) VALUES(?,?,?,?,?)", path_);
    for (size_t i = 0; i < units.size(); i++) {
      ins.integer(1, run_id);
      ins.integer(2, int64_t(i));
      ins.text(3, units[i].name);
      ins.integer(4, units[i].first);
      ins.integer(5, units[i].count);
      ins.step();
      ins.reset();
    }
  });
}

std::vector<UnitState> SqliteStore::units(int64_t run_id) {
  Stmt q(db_,
         "SELECT unit, first_item, n_items, done, owner, coalesce(lease_until - " CTRUST_SQL_NOW ", 0), attempts"
         " FROM units WHERE run_id=? ORDER BY seq",
         path_);
  q.integer(1, run_id);
  std::vector<UnitState> out;
  while (q.step()) {
    UnitState u;
    u.unit = {q.col_text(0), q.col_int(1), q.col_int(2)};
    u.done = q.col_int(3) != 0;
    u.owner = q.col_text(4);
    u.lease_left = sqlite3_column_double(q.s, 5);
    u.attempts = q.col_int(6);
    out.push_back(std::move(u));
  }
  return out;
}

std::optional<WorkUnit> SqliteStore::claim_unit(int64_t run_id, const std::string& worker, double lease_seconds,
                                                int64_t max_attempts) {
  return immediate([&]() -> std::optional<WorkUnit> {
    Stmt q(db_,
           "SELECT unit, first_item, n_items FROM units WHERE run_id=? AND done=0"
           " AND (owner='' OR lease_until < " CTRUST_SQL_NOW ") AND (?2 = 0 OR attempts < ?2) ORDER BY seq LIMIT 1",
           path_);
    q.integer(1, run_id);
    q.integer(2, max_attempts);
    if (!q.step()) return std::nullopt;
    WorkUnit u{q.col_text(0), q.col_int(1), q.col_int(2)};
    Stmt up(db_,
            "UPDATE units SET owner=?, lease_until=" CTRUST_SQL_NOW " + ?, attempts=attempts+1"
            " WHERE run_id=? AND unit=?",
            path_);
    up.text(1, worker);
    sqlite3_bind_double(up.s, 2, lease_seconds);
    up.integer(3, run_id);
    up.text(4, u.name);
    up.step();
    return u;
  });
}

bool SqliteStore::renew(int64_t run_id, const std::string& unit, const std::string& worker, double lease_seconds) {
  Stmt up(db_,
          "UPDATE units SET lease_until=" CTRUST_SQL_NOW " + ? WHERE run_id=? AND unit=? AND owner=? AND done=0",
          path_);
  sqlite3_bind_double(up.s, 1, lease_seconds);
  up.integer(2, run_id);
  up.text(3, unit);
  up.text(4, worker);
  up.step();
  return sqlite3_changes(db_) > 0;
}

bool SqliteStore::renew_unit(int64_t run_id, const std::string& unit, const std::string& worker,
                             double lease_seconds) {
  return immediate([&] { return renew(run_id, unit, worker, lease_seconds); });
}

bool SqliteStore::add_unit_items(int64_t run_id, const std::string& unit, const std::string& worker,
                                 double lease_seconds, std::span<const StoredItem> items) {
  return immediate([&] {
    if (!renew(run_id, unit, worker, lease_seconds)) return false;
    insert_items(run_id, items);
    return true;
  });
}

bool SqliteStore::finish_unit(int64_t run_id, const std::string& unit, const std::string& worker) {
  return immediate([&] {
    Stmt up(db_, "UPDATE units SET done=1, lease_until=NULL WHERE run_id=? AND unit=? AND owner=? AND done=0", path_);
    up.integer(1, run_id);
    up.text(2, unit);
    up.text(3, worker);
    up.step();
    return sqlite3_changes(db_) > 0;
  });
}

std::unique_ptr<StoreBackend> open_sqlite_store(const std::string& path, StoreMode mode) {
  return std::make_unique<SqliteStore>(path, mode);
}

}  // namespace ctrust
