#include "store/store.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include "base/error.h"
#include "eval/task.h"

namespace ctrust {

std::string item_key(const std::string& task, const std::string& item_id) { return task + '\x1f' + item_id; }

void check_run_name(const std::string& name) {
  if (name.empty()) fail("run name is empty");
  if (name.size() > 200) fail("run name is {} bytes long (at most 200)", name.size());
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) fail("run name {} contains a control character", nlohmann::json(name).dump());
  if (std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }))
    fail("run name '{}' is all digits, which would select a run by id; choose a name with a letter", name);
}

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool is_postgres_url(const std::string& db) {
  return db.rfind("postgresql://", 0) == 0 || db.rfind("postgres://", 0) == 0;
}

std::string db_display_name(const std::string& db) {
  if (!is_postgres_url(db)) return db;
  std::string s = db;
  // postgresql://user:PASSWORD@host/...: the userinfo ends at the last '@' before the path.
  const size_t start = s.find("://") + 3;
  const size_t path = s.find_first_of("/?", start);
  const size_t at = s.rfind('@', path == std::string::npos ? std::string::npos : path);
  if (at != std::string::npos && at >= start) {
    const size_t colon = s.find(':', start);
    if (colon != std::string::npos && colon < at) s.replace(colon + 1, at - colon - 1, "***");
  }
  // ...?password=PASSWORD&...
  for (size_t q = s.find('?'); q != std::string::npos;) {
    const size_t key = q + 1;
    const size_t end = s.find('&', key);
    if (s.compare(key, 9, "password=") == 0)
      s.replace(key + 9, (end == std::string::npos ? s.size() : end) - key - 9, "***");
    q = s.find('&', key);
  }
  return s;
}

std::unique_ptr<StoreBackend> open_store_backend(const std::string& db, StoreMode mode) {
  // One line per backend that is not a file: its URL scheme and its constructor.
  if (is_postgres_url(db)) {
#ifdef CTRUST_HAVE_POSTGRES
    return open_postgres_store(db, mode);
#else
    fail("{}: this ctrust has no PostgreSQL store backend (built without libpq: install Debian libpq-dev, e.g. by "
         "scripts/setup.sh, and rebuild; --db also takes a SQLite database file)",
         db_display_name(db));
#endif
  }
  return open_sqlite_store(db, mode);
}

Store::Store(const std::string& db, StoreMode mode) : path_(db_display_name(db)), b_(open_store_backend(db, mode)) {}

bool Store::open_run(RunInfo& run) {
  check_run_name(run.name);
  check_task_name(run.task, path_);
  return b_->open_run(run);
}

}  // namespace ctrust
