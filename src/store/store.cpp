#include "store/store.h"

#include <algorithm>
#include <charconv>
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

std::optional<int64_t> run_id_of(const std::string& sel) {
  if (sel.empty() || !std::all_of(sel.begin(), sel.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  int64_t id = 0;
  auto [end, ec] = std::from_chars(sel.data(), sel.data() + sel.size(), id);
  if (ec != std::errc() || end != sel.data() + sel.size()) return std::nullopt;
  return id;
}

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::unique_ptr<StoreBackend> open_store_backend(const std::string& db, StoreMode mode) {
  // One line per backend that is not a file: its URL scheme and its constructor.
  for (const char* scheme : {"postgresql://", "postgres://"})
    if (db.rfind(scheme, 0) == 0)
      fail("{}: this ctrust has no PostgreSQL store backend (--db takes a SQLite database file)", db);
  return open_sqlite_store(db, mode);
}

Store::Store(const std::string& db, StoreMode mode) : path_(db), b_(open_store_backend(db, mode)) {}

bool Store::open_run(RunInfo& run) {
  check_run_name(run.name);
  check_task_name(run.task, path_);
  return b_->open_run(run);
}

}  // namespace ctrust
