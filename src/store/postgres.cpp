// The PostgreSQL backend of the results store (store/store.h) through libpq: `--db postgresql://...` (or
// postgres://, libpq's URI syntax: user, password, host or ?host=/socket/folder, port, database, sslmode, ...).
// The same tables as store/sqlite.cpp (meta with the schema version, runs, items, run_results, units), created in
// the database's current schema on the first read-write open (one transaction, under an advisory lock so that
// workers starting together do not race); read commands never create or write anything (the session is read-only).
// Text columns that are sorted or compared use the "C" collation, so orders are the byte orders SQLite uses.
// Messages name the database without its password (db_display_name).
#include "store/store.h"

#include <libpq-fe.h>

#include <cstring>

#include <fmt/format.h>

#include "base/error.h"

namespace ctrust {

namespace {

constexpr int kSchemaVersion = 1;

// Runs are found again by (name, model_fp, task, settings); settings are long JSON texts, beyond what a btree entry
// holds (~2.7 kB), so the unique index is on their md5.
const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
  id BIGSERIAL PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  model_path TEXT NOT NULL,
  model_fp TEXT COLLATE "C" NOT NULL,
  tokenizer_fp TEXT NOT NULL,
  task TEXT COLLATE "C" NOT NULL,
  scoring TEXT NOT NULL,
  settings TEXT NOT NULL,
  version TEXT NOT NULL,
  created TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS runs_key ON runs(name, model_fp, task, md5(settings));
CREATE TABLE IF NOT EXISTS items(
  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  task TEXT COLLATE "C" NOT NULL,
  item_id TEXT COLLATE "C" NOT NULL,
  ll TEXT NOT NULL,
  pred INTEGER NOT NULL,
  gold INTEGER NOT NULL,
  correct INTEGER NOT NULL,
  extra TEXT NOT NULL,
  PRIMARY KEY(run_id, task, item_id));
CREATE TABLE IF NOT EXISTS run_results(
  run_id BIGINT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
  result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units(
  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq BIGINT NOT NULL,
  unit TEXT COLLATE "C" NOT NULL,
  first_item BIGINT NOT NULL,
  n_items BIGINT NOT NULL,
  done BOOLEAN NOT NULL DEFAULT false,
  owner TEXT NOT NULL DEFAULT '',
  lease_until TIMESTAMPTZ,
  attempts BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY(run_id, unit));
)sql";

// A query result, cleared on scope exit.
struct Res {
  PGresult* r = nullptr;
  explicit Res(PGresult* p) : r(p) {}
  Res(Res&& o) noexcept : r(o.r) { o.r = nullptr; }
  Res(const Res&) = delete;
  Res& operator=(const Res&) = delete;
  ~Res() { PQclear(r); }
  int rows() const { return PQntuples(r); }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(r, row, col), size_t(PQgetlength(r, row, col)));
  }
  bool null(int row, int col) const { return PQgetisnull(r, row, col) != 0; }
  int64_t integer(int row, int col) const { return std::strtoll(PQgetvalue(r, row, col), nullptr, 10); }
  double real(int row, int col) const { return null(row, col) ? 0.0 : std::strtod(PQgetvalue(r, row, col), nullptr); }
};

std::string trimmed(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

nlohmann::json parse_json(const std::string& text, const std::string& name, const char* what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt {} JSON in the database: {}", name, what, e.what());
  }
}

void ignore_notice(void*, const char*) {}  // "relation ... already exists, skipping" and the like

std::string lease_text(double seconds) { return fmt::format("{:.3f}", seconds); }

}  // namespace

class PostgresStore final : public StoreBackend {
 public:
  PostgresStore(const std::string& url, StoreMode mode);
  ~PostgresStore() override {
    if (c_) PQfinish(c_);
  }
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
  // One statement with text parameters; fails with the server's message unless the result has status
  // PGRES_COMMAND_OK or PGRES_TUPLES_OK.
  Res q(const char* sql, const std::vector<std::string>& params = {});
  void ensure_connected();
  // Runs body inside BEGIN ... COMMIT (ROLLBACK and rethrow on any error).
  template <class F>
  auto transaction(F&& body) {
    q("BEGIN");
    in_tx_ = true;
    struct Done {
      bool& f;
      ~Done() { f = false; }
    } done{in_tx_};
    try {
      if constexpr (std::is_void_v<decltype(body())>) {
        body();
        q("COMMIT");
      } else {
        auto r = body();
        q("COMMIT");
        return r;
      }
    } catch (...) {
      PQclear(PQexec(c_, "ROLLBACK"));
      throw;
    }
  }
  void insert_items(int64_t run_id, std::span<const StoredItem> items);

  PGconn* c_ = nullptr;
  std::string name_;  // the URL without its password
  bool read_only_ = false;
  bool in_tx_ = false;  // inside transaction(): a broken connection is an error, never silently re-opened
};

PostgresStore::PostgresStore(const std::string& url, StoreMode mode)
    : name_(db_display_name(url)), read_only_(mode == StoreMode::ReadOnly) {
  c_ = PQconnectdb(url.c_str());
  if (!c_) fail("{}: cannot connect to the PostgreSQL results database: out of memory", name_);
  if (PQstatus(c_) != CONNECTION_OK) {
    const std::string msg = trimmed(PQerrorMessage(c_));
    PQfinish(c_);
    c_ = nullptr;
    fail("{}: cannot connect to the PostgreSQL results database: {}", name_, msg);
  }
  PQsetNoticeProcessor(c_, ignore_notice, nullptr);
  try {
    q("SET client_min_messages = warning");
    if (read_only_) {
      // Read commands: the session cannot write, and nothing is created.
      q("SET default_transaction_read_only = on");
      Res t = q("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
                " AND tablename IN ('meta', 'runs', 'items', 'run_results')");
      if (t.integer(0, 0) != 4)
        fail("{}: not a ctrust results database (no ctrust tables in it; read commands never create them)", name_);
      Res v = q("SELECT value FROM meta WHERE key = 'schema_version'");
      const std::string ver = v.rows() ? v.text(0, 0) : std::string("(none)");
      if (ver != std::to_string(kSchemaVersion))
        fail("{}: results database has schema version {}, this ctrust uses {}", name_, ver, kSchemaVersion);
      return;
    }
    // The schema exists (every open after the first, e.g. a worker's lease thread): only its version is checked,
    // no DDL (CREATE INDEX IF NOT EXISTS would lock the runs table even when the index exists).
    Res have = q("SELECT to_regclass('meta') IS NOT NULL AND to_regclass('runs') IS NOT NULL AND"
                 " to_regclass('items') IS NOT NULL AND to_regclass('run_results') IS NOT NULL AND"
                 " to_regclass('units') IS NOT NULL");
    if (have.text(0, 0) == "t") {
      Res v = q("SELECT value FROM meta WHERE key = 'schema_version'");
      if (v.rows() && v.text(0, 0) == std::to_string(kSchemaVersion)) return;
    }
    transaction([&] {
      q("SELECT pg_advisory_xact_lock(7406221)");  // one schema creation at a time (arbitrary ctrust key)
      q(kSchema);
      Res v = q("SELECT value FROM meta WHERE key = 'schema_version'");
      if (v.rows()) {
        if (v.text(0, 0) != std::to_string(kSchemaVersion))
          fail("{}: results database has schema version {}, this ctrust uses {}", name_, v.text(0, 0), kSchemaVersion);
      } else {
        q("INSERT INTO meta(key, value) VALUES('schema_version', $1)", {std::to_string(kSchemaVersion)});
      }
    });
  } catch (...) {
    PQfinish(c_);
    c_ = nullptr;
    throw;
  }
}

void PostgresStore::ensure_connected() {
  // A long run outlives server restarts and network hiccups: a broken connection is re-opened once
  // (outside a transaction; a transaction that broke has failed already and was reported).
  if (PQstatus(c_) == CONNECTION_OK) return;
  PQreset(c_);
  if (PQstatus(c_) != CONNECTION_OK)
    fail("{}: lost the connection to the PostgreSQL results database: {}", name_, trimmed(PQerrorMessage(c_)));
  PQsetNoticeProcessor(c_, ignore_notice, nullptr);
  PQclear(PQexec(c_, "SET client_min_messages = warning"));
  if (read_only_) PQclear(PQexec(c_, "SET default_transaction_read_only = on"));
}

Res PostgresStore::q(const char* sql, const std::vector<std::string>& params) {
  if (!in_tx_ && PQstatus(c_) != CONNECTION_OK) ensure_connected();
  std::vector<const char*> v(params.size());
  for (size_t i = 0; i < params.size(); i++) v[i] = params[i].c_str();
  Res r(params.empty() ? PQexec(c_, sql)
                       : PQexecParams(c_, sql, int(params.size()), nullptr, v.data(), nullptr, nullptr, 0));
  const ExecStatusType st = r.r ? PQresultStatus(r.r) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail("{}: {}", name_, trimmed(r.r ? PQresultErrorMessage(r.r) : PQerrorMessage(c_)));
  return r;
}

static std::string num(int64_t v) { return std::to_string(v); }

bool PostgresStore::open_run(RunInfo& run) {
  const std::string settings = run.settings.dump();
  const char* find = "SELECT id, version, created FROM runs WHERE name = $1 AND model_fp = $2 AND task = $3"
                     " AND md5(settings) = md5($4) AND settings = $4";
  {
    Res r = q(find, {run.name, run.model_fp, run.task, settings});
    if (r.rows()) {
      run.id = r.integer(0, 0);
      run.version = r.text(0, 1);
      run.created = r.text(0, 2);
      return true;
    }
  }
  run.version = CTRUST_VERSION;
  run.created = utc_now_iso8601();
  // Workers starting together may insert the same run: one insert wins, the others find its row.
  Res ins = q("INSERT INTO runs(name, model_path, model_fp, tokenizer_fp, task, scoring, settings, version, created)"
              " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)"
              " ON CONFLICT (name, model_fp, task, md5(settings)) DO NOTHING RETURNING id",
              {run.name, run.model_path, run.model_fp, run.tokenizer_fp, run.task, run.scoring, settings, run.version,
               run.created});
  if (ins.rows()) {
    run.id = ins.integer(0, 0);
    return false;
  }
  Res r = q(find, {run.name, run.model_fp, run.task, settings});
  if (!r.rows()) fail("{}: run '{}' was neither inserted nor found (md5 collision of its settings?)", name_, run.name);
  run.id = r.integer(0, 0);
  run.version = r.text(0, 1);
  run.created = r.text(0, 2);
  return true;
}

std::unordered_set<std::string> PostgresStore::done_items(int64_t run_id) {
  std::unordered_set<std::string> done;
  Res r = q("SELECT task, item_id FROM items WHERE run_id = $1", {num(run_id)});
  for (int i = 0; i < r.rows(); i++) done.insert(item_key(r.text(i, 0), r.text(i, 1)));
  return done;
}

void PostgresStore::insert_items(int64_t run_id, std::span<const StoredItem> items) {
  for (const auto& it : items)
    q("INSERT INTO items(run_id, task, item_id, ll, pred, gold, correct, extra) VALUES($1, $2, $3, $4, $5, $6, $7, $8)"
      " ON CONFLICT (run_id, task, item_id) DO UPDATE SET ll = EXCLUDED.ll, pred = EXCLUDED.pred,"
      " gold = EXCLUDED.gold, correct = EXCLUDED.correct, extra = EXCLUDED.extra",
      // Full double precision (JSON), so a stored run compares exactly like the live one.
      {num(run_id), it.task, it.item_id, nlohmann::json(it.ll).dump(), num(it.pred), num(it.gold),
       it.correct ? "1" : "0", it.extra.dump()});
}

void PostgresStore::add_items(int64_t run_id, std::span<const StoredItem> items) {
  if (items.empty()) return;
  transaction([&] { insert_items(run_id, items); });
}

static const char* kRunCols =
    "SELECT r.id, r.name, r.model_path, r.model_fp, r.tokenizer_fp, r.task, r.scoring, r.settings, r.version,"
    " r.created, (SELECT COUNT(*) FROM items i WHERE i.run_id = r.id) FROM runs r";

static RunInfo read_run(const Res& r, int i, const std::string& name) {
  RunInfo run;
  run.id = r.integer(i, 0);
  run.name = r.text(i, 1);
  run.model_path = r.text(i, 2);
  run.model_fp = r.text(i, 3);
  run.tokenizer_fp = r.text(i, 4);
  run.task = r.text(i, 5);
  run.scoring = r.text(i, 6);
  run.settings = parse_json(r.text(i, 7), name, "settings");
  run.version = r.text(i, 8);
  run.created = r.text(i, 9);
  run.n_items = r.integer(i, 10);
  return run;
}

std::vector<RunInfo> PostgresStore::list_runs() {
  Res r = q((std::string(kRunCols) + " ORDER BY r.id").c_str());
  std::vector<RunInfo> out;
  for (int i = 0; i < r.rows(); i++) out.push_back(read_run(r, i, name_));
  return out;
}

std::optional<RunInfo> PostgresStore::get_run(int64_t id) {
  Res r = q((std::string(kRunCols) + " WHERE r.id = $1").c_str(), {num(id)});
  if (!r.rows()) return std::nullopt;
  return read_run(r, 0, name_);
}

std::vector<StoredItem> PostgresStore::items(int64_t run_id) {
  Res r = q("SELECT task, item_id, ll, pred, gold, correct, extra FROM items WHERE run_id = $1"
            " ORDER BY task, length(item_id), item_id",
            {num(run_id)});
  std::vector<StoredItem> out;
  out.reserve(size_t(r.rows()));
  for (int i = 0; i < r.rows(); i++) {
    StoredItem it;
    it.task = r.text(i, 0);
    it.item_id = r.text(i, 1);
    nlohmann::json ll = parse_json(r.text(i, 2), name_, "log-likelihood");
    if (!ll.is_array()) fail("{}: run {} item {}: log-likelihoods are not a list", name_, run_id, it.item_id);
    for (const auto& v : ll) {
      if (!v.is_number()) fail("{}: run {} item {}: log-likelihood is not a number", name_, run_id, it.item_id);
      it.ll.push_back(v.get<double>());
    }
    it.pred = int(r.integer(i, 3));
    it.gold = int(r.integer(i, 4));
    it.correct = r.integer(i, 5) != 0;
    it.extra = parse_json(r.text(i, 6), name_, "extra");
    out.push_back(std::move(it));
  }
  return out;
}

void PostgresStore::delete_run(int64_t id) { q("DELETE FROM runs WHERE id = $1", {num(id)}); }

void PostgresStore::set_run_result(int64_t run_id, const nlohmann::json& result) {
  q("INSERT INTO run_results(run_id, result) VALUES($1, $2)"
    " ON CONFLICT (run_id) DO UPDATE SET result = EXCLUDED.result",
    {num(run_id), result.dump()});
}

std::optional<nlohmann::json> PostgresStore::run_result(int64_t run_id) {
  Res r = q("SELECT result FROM run_results WHERE run_id = $1", {num(run_id)});
  if (!r.rows()) return std::nullopt;
  return parse_json(r.text(0, 0), name_, "run result");
}

void PostgresStore::update_run_result(int64_t run_id,
                                      const std::function<nlohmann::json(const std::optional<nlohmann::json>&)>& f) {
  transaction([&] {
    // The run's row lock serializes the writers of its result (NO KEY UPDATE: item inserts, which take a key-share
    // lock on the run through their foreign key, are not blocked).
    Res lock = q("SELECT id FROM runs WHERE id = $1 FOR NO KEY UPDATE", {num(run_id)});
    if (!lock.rows()) fail("{}: run {} does not exist", name_, run_id);
    Res cur = q("SELECT result FROM run_results WHERE run_id = $1", {num(run_id)});
    std::optional<nlohmann::json> old;
    if (cur.rows()) old = parse_json(cur.text(0, 0), name_, "run result");
    const nlohmann::json now = f(old);
    q("INSERT INTO run_results(run_id, result) VALUES($1, $2)"
      " ON CONFLICT (run_id) DO UPDATE SET result = EXCLUDED.result",
      {num(run_id), now.dump()});
  });
}

void PostgresStore::add_units(int64_t run_id, std::span<const WorkUnit> units) {
  transaction([&] {
    for (size_t i = 0; i < units.size(); i++)
      q("INSERT INTO units(run_id, seq, unit, first_item, n_items) VALUES($1, $2, $3, $4, $5)"
        " ON CONFLICT (run_id, unit) DO NOTHING",
        {num(run_id), num(int64_t(i)), units[i].name, num(units[i].first), num(units[i].count)});
  });
}

std::vector<UnitState> PostgresStore::units(int64_t run_id) {
  Res r = q("SELECT unit, first_item, n_items, done, owner,"
            " EXTRACT(EPOCH FROM (lease_until - clock_timestamp())), attempts"
            " FROM units WHERE run_id = $1 ORDER BY seq",
            {num(run_id)});
  std::vector<UnitState> out;
  for (int i = 0; i < r.rows(); i++) {
    UnitState u;
    u.unit = {r.text(i, 0), r.integer(i, 1), r.integer(i, 2)};
    u.done = r.text(i, 3) == "t";
    u.owner = r.text(i, 4);
    u.lease_left = r.real(i, 5);
    u.attempts = r.integer(i, 6);
    out.push_back(std::move(u));
  }
  return out;
}

std::optional<WorkUnit> PostgresStore::claim_unit(int64_t run_id, const std::string& worker, double lease_seconds,
                                                  int64_t max_attempts) {
  // The first free unit, row-locked; units other workers are claiming at this moment are skipped, not waited for.
  // The locking SELECT is a CTE, evaluated once: as a join operand of UPDATE ... FROM the planner may rescan it per
  // row, and with SKIP LOCKED each rescan can lock another unit (seen: one claim took 8 units).
  Res r = q("WITH c AS (SELECT unit FROM units WHERE run_id = $1 AND NOT done"
            "           AND (owner = '' OR lease_until < clock_timestamp()) AND ($4::bigint = 0 OR attempts < $4::bigint)"
            "           ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " UPDATE units u SET owner = $2, lease_until = clock_timestamp() + make_interval(secs => $3::float8),"
            " attempts = u.attempts + 1"
            " FROM c WHERE u.run_id = $1 AND u.unit = c.unit RETURNING u.unit, u.first_item, u.n_items",
            {num(run_id), worker, lease_text(lease_seconds), num(max_attempts)});
  if (r.rows() != 1 && r.rows() != 0)
    fail("{}: claiming a unit of run {} updated {} units (expected one)", name_, run_id, r.rows());
  if (!r.rows()) return std::nullopt;
  return WorkUnit{r.text(0, 0), r.integer(0, 1), r.integer(0, 2)};
}

bool PostgresStore::renew_unit(int64_t run_id, const std::string& unit, const std::string& worker,
                               double lease_seconds) {
  Res r = q("UPDATE units SET lease_until = clock_timestamp() + make_interval(secs => $4::float8)"
            " WHERE run_id = $1 AND unit = $2 AND owner = $3 AND NOT done RETURNING 1",
            {num(run_id), unit, worker, lease_text(lease_seconds)});
  return r.rows() > 0;
}

bool PostgresStore::add_unit_items(int64_t run_id, const std::string& unit, const std::string& worker,
                                   double lease_seconds, std::span<const StoredItem> items) {
  return transaction([&] {
    // The renewal locks the unit's row until the commit: nobody can claim it in between.
    Res r = q("UPDATE units SET lease_until = clock_timestamp() + make_interval(secs => $4::float8)"
              " WHERE run_id = $1 AND unit = $2 AND owner = $3 AND NOT done RETURNING 1",
              {num(run_id), unit, worker, lease_text(lease_seconds)});
    if (!r.rows()) return false;  // lost: nothing written (COMMIT of an empty transaction)
    insert_items(run_id, items);
    return true;
  });
}

bool PostgresStore::finish_unit(int64_t run_id, const std::string& unit, const std::string& worker) {
  Res r = q("UPDATE units SET done = true, lease_until = NULL"
            " WHERE run_id = $1 AND unit = $2 AND owner = $3 AND NOT done RETURNING 1",
            {num(run_id), unit, worker});
  return r.rows() > 0;
}

std::unique_ptr<StoreBackend> open_postgres_store(const std::string& url, StoreMode mode) {
  return std::make_unique<PostgresStore>(url, mode);
}

}  // namespace ctrust
