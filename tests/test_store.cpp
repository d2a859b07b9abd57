#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <thread>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "pg_fixture.h"
#include "pipeline/fingerprint.h"
#include "store/store.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

std::string fresh_db(const std::string& name) {
  std::string p = test::scratch_dir() + "/" + name + ".db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  return p;
}

RunInfo run_key(const std::string& name, int shots) {
  RunInfo r;
  r.name = name;
  r.model_path = "/models/x.gguf";
  r.model_fp = "00000000deadbeef";
  r.tokenizer_fp = "0123456789abcdef";
  r.task = "arc_easy";
  r.scoring = "multiple_choice";
  r.settings = {{"num_fewshot", shots}, {"limit", 0}};
  return r;
}

std::vector<StoredItem> batch(int first, int n) {
  std::vector<StoredItem> v;
  for (int i = first; i < first + n; i++) {
    StoredItem it;
    it.task = "arc_easy";
    it.item_id = std::to_string(i);
    it.ll = {-1.0 / (i + 3), -std::sqrt(2.0) * i, -0.1};
    it.pred = i % 3;
    it.gold = 0;
    it.correct = it.pred == it.gold;
    it.extra = {{"n_tokens", {1, 2, 3}}};
    v.push_back(it);
  }
  return v;
}

// A new empty database: a SQLite file, or (pg) a database of the throw-away PostgreSQL server (its URL).
std::string fresh(bool pg, const std::string& name) {
  if (!pg) return fresh_db(name);
  return test::pg_server().fresh_db(name);
}

}  // namespace

// The store tests run against both backends: Store.X on a SQLite file, StorePg.X on a database of the throw-away
// PostgreSQL server (tests/pg_fixture.h; label "postgres"). The body sees `pg`.
#define STORE_TEST(Name)                 \
  static void Name##_on(bool pg);        \
  TEST(Store, Name) { Name##_on(false); } \
  TEST(StorePg, Name) {                  \
    CTRUST_REQUIRE_PG();                 \
    Name##_on(true);                     \
  }                                      \
  static void Name##_on(bool pg)


STORE_TEST(RunsAreFoundAgainBySettings) {
  const std::string db = fresh(pg, "runs");
  Store s(db);
  RunInfo a = run_key("base", 0);
  EXPECT_FALSE(s.open_run(a));
  EXPECT_GT(a.id, 0);
  EXPECT_EQ(a.version, CTRUST_VERSION);
  EXPECT_EQ(a.created.size(), 20u);  // 2024-01-02T03:04:05Z
  RunInfo again = run_key("base", 0);
  EXPECT_TRUE(s.open_run(again));
  EXPECT_EQ(again.id, a.id);
  RunInfo five = run_key("base", 5);
  EXPECT_FALSE(s.open_run(five));
  EXPECT_NE(five.id, a.id);
  auto runs = s.list_runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1].settings["num_fewshot"], 5);
  EXPECT_EQ(runs[0].model_fp, "00000000deadbeef");
  EXPECT_FALSE(s.get_run(999).has_value());
}

STORE_TEST(ItemsRoundTripExactly) {
  const std::string db = fresh(pg, "items");
  int64_t id;
  {
    Store s(db);
    RunInfo r = run_key("base", 0);
    s.open_run(r);
    id = r.id;
    auto b = batch(0, 12);
    s.add_items(id, b);
    s.add_items(id, batch(5, 1));  // replacing an item keeps one row
  }
  Store s(db);  // reopened
  auto items = s.items(id);
  ASSERT_EQ(items.size(), 12u);
  auto want = batch(0, 12);
  for (size_t i = 0; i < items.size(); i++) {  // ordered numerically: 0, 1, ..., 9, 10, 11
    EXPECT_EQ(items[i].item_id, want[i].item_id);
    EXPECT_EQ(items[i].ll, want[i].ll);  // bit-exact doubles
    EXPECT_EQ(items[i].pred, want[i].pred);
    EXPECT_EQ(items[i].correct, want[i].correct);
    EXPECT_EQ(items[i].extra, want[i].extra);
  }
  EXPECT_EQ(s.done_items(id).count(item_key("arc_easy", "11")), 1u);
  EXPECT_EQ(s.get_run(id)->n_items, 12);
  s.delete_run(id);
  EXPECT_TRUE(s.items(id).empty());
}

TEST(Store, BadDatabaseFileIsAnError) {
  const std::string p = test::scratch_dir() + "/not-a-db.db";
  { std::ofstream(p) << "this is not an SQLite database, just some text that is long enough......"; }
  try {
    Store s(p);
    FAIL() << "opened a text file as a database";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  EXPECT_THROW(Store("/nonexistent-dir/x/y.db"), Error);
}

// A writer killed with SIGKILL in the middle of its work loses nothing it had reported committed,
// and never leaves half a batch behind.
STORE_TEST(KillNineLosesNoCommittedBatch) {
  const std::string db = fresh(pg, "kill");
  int64_t id;
  {
    Store s(db);
    RunInfo r = run_key("killed", 0);
    s.open_run(r);
    id = r.id;
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    Store s(db);
    for (int b = 0;; b++) {
      s.add_items(id, batch(b * 10, 10));
      const int done = (b + 1) * 10;
      if (write(fds[1], &done, sizeof done) != sizeof done) _exit(3);
    }
  }
  close(fds[1]);
  int reported = 0, v;
  while (reported < 30 && read(fds[0], &v, sizeof v) == sizeof v) reported = v;
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  Store s(db);
  auto items = s.items(id);
  EXPECT_GE(int(items.size()), reported);
  EXPECT_EQ(items.size() % 10, 0u);  // whole batches only
  auto done = s.done_items(id);
  for (int i = 0; i < reported; i++) EXPECT_EQ(done.count(item_key("arc_easy", std::to_string(i))), 1u) << i;
}

TEST(Store, HashIsStableAndSensitive) {
  std::vector<float> w(1000);
  for (size_t i = 0; i < w.size(); i++) w[i] = float(i) * 0.5f;
  const uint64_t h = hash_bytes(w.data(), w.size() * 4);
  EXPECT_EQ(h, hash_bytes(w.data(), w.size() * 4));
  w[777] = std::nextafter(w[777], 1e9f);  // one ulp
  EXPECT_NE(h, hash_bytes(w.data(), w.size() * 4));
  EXPECT_NE(hash_bytes(w.data(), 10), hash_bytes(w.data(), 11));
  EXPECT_EQ(hex64(0xabcULL), "0000000000000abc");
}

STORE_TEST(LongSettingsAndRunResults) {
  const std::string db = fresh(pg, "results");
  Store s(db);
  RunInfo a = run_key("long", 0);
  a.settings["declaration"] = std::string(20000, 'x');  // beyond a PostgreSQL btree entry: the key is an md5
  EXPECT_FALSE(s.open_run(a));
  RunInfo again = a;
  EXPECT_TRUE(s.open_run(again));
  EXPECT_EQ(again.id, a.id);
  EXPECT_FALSE(s.run_result(a.id).has_value());
  s.set_run_result(a.id, {{"perspectives", {{"ethics", {{"score", 50.5}}}}}});
  s.update_run_result(a.id, [](const std::optional<nlohmann::json>& old) {
    nlohmann::json j = old.value_or(nlohmann::json::object());
    j["perspectives"]["fairness"] = {{"score", 12.25}};
    return j;
  });
  auto r = s.run_result(a.id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["perspectives"]["ethics"]["score"], 50.5);
  EXPECT_EQ((*r)["perspectives"]["fairness"]["score"], 12.25);
  s.add_items(a.id, batch(0, 3));
  s.delete_run(a.id);
  EXPECT_FALSE(s.run_result(a.id).has_value());
  EXPECT_FALSE(s.get_run(a.id).has_value());
  EXPECT_TRUE(s.items(a.id).empty());
}

// A read command never creates anything: an empty database (PostgreSQL) or a missing file (SQLite) is an error
// naming it, and stays empty.
STORE_TEST(ReadOnlyNeverCreatesTheSchema) {
  const std::string db = fresh(pg, "readonly");
  try {
    Store s(db, StoreMode::ReadOnly);
    FAIL() << "opened an empty database read-only";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(db), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(pg ? "not a ctrust results database" : "does not exist"),
              std::string::npos) << e.what();
  }
  if (pg) {
    EXPECT_EQ(test::PgServer::query(db, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"), "0");
  } else {
    EXPECT_FALSE(fs::exists(db));
  }
  { Store w(db); }  // created by a write command
  Store ro(db, StoreMode::ReadOnly);
  EXPECT_TRUE(ro.list_runs().empty());
}

// The work-unit protocol of --worker runs (docs/cluster.md): claim, lease, renewal, re-claim after expiry (not
// beyond a cap on the claims of a unit, --max-attempts), and a worker that lost its unit can neither write items for
// it nor finish it.
STORE_TEST(WorkUnitLeases) {
  const std::string db = fresh(pg, "units");
  Store s(db);
  RunInfo r = run_key("units", 0);
  s.open_run(r);
  auto& b = s.backend();
  std::vector<WorkUnit> units = {{"u0", 0, 10}, {"u1", 10, 10}, {"u2", 20, 5}};
  b.add_units(r.id, units);
  b.add_units(r.id, units);  // a second worker adds the same units: nothing changes
  ASSERT_EQ(b.units(r.id).size(), 3u);
  auto c1 = b.claim_unit(r.id, "w1", 60, 0);
  auto c2 = b.claim_unit(r.id, "w2", 60, 0);
  ASSERT_TRUE(c1 && c2);
  EXPECT_EQ(c1->name, "u0");
  EXPECT_EQ(c2->name, "u1");
  EXPECT_EQ(c2->first, 10);
  EXPECT_EQ(c2->count, 10);
  EXPECT_TRUE(b.add_unit_items(r.id, "u0", "w1", 60, batch(0, 10)));
  EXPECT_FALSE(b.add_unit_items(r.id, "u0", "w2", 60, batch(100, 1)));  // not w2's unit: nothing written
  EXPECT_TRUE(b.renew_unit(r.id, "u1", "w2", 60));
  EXPECT_TRUE(b.finish_unit(r.id, "u0", "w1"));
  EXPECT_FALSE(b.renew_unit(r.id, "u0", "w1", 60));  // done
  auto c3 = b.claim_unit(r.id, "w3", 0.3, 0);        // a short lease that w3 lets expire
  ASSERT_TRUE(c3);
  EXPECT_EQ(c3->name, "u2");
  EXPECT_FALSE(b.claim_unit(r.id, "w1", 60, 0).has_value());  // u1 and u2 are leased
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  // u2 (expired) was claimed once: with at most 1 attempt per unit nobody claims it again (--max-attempts).
  EXPECT_FALSE(b.claim_unit(r.id, "w1", 60, 1).has_value());
  auto again = b.claim_unit(r.id, "w1", 60, 2);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->name, "u2");
  EXPECT_FALSE(b.add_unit_items(r.id, "u2", "w3", 60, batch(20, 5)));  // w3 lost it
  EXPECT_FALSE(b.finish_unit(r.id, "u2", "w3"));
  EXPECT_TRUE(b.add_unit_items(r.id, "u2", "w1", 60, batch(20, 5)));
  EXPECT_TRUE(b.finish_unit(r.id, "u2", "w1"));
  auto st = b.units(r.id);
  ASSERT_EQ(st.size(), 3u);
  EXPECT_TRUE(st[0].done && st[2].done && !st[1].done);
  EXPECT_EQ(st[1].owner, "w2");
  EXPECT_GT(st[1].lease_left, 30);
  EXPECT_EQ(st[2].attempts, 2);
  EXPECT_EQ(s.items(r.id).size(), 15u);
  s.delete_run(r.id);
  EXPECT_TRUE(b.units(r.id).empty());
}

// Processes claiming at the same time: every unit is claimed exactly once.
STORE_TEST(ConcurrentClaimsTakeEachUnitOnce) {
  const std::string db = fresh(pg, "claims");
  int64_t id;
  constexpr int kUnits = 40, kWorkers = 3;
  {
    Store s(db);
    RunInfo r = run_key("claims", 0);
    s.open_run(r);
    id = r.id;
    std::vector<WorkUnit> units;
    for (int i = 0; i < kUnits; i++) units.push_back({"u" + std::to_string(i), i, 1});
    s.backend().add_units(id, units);
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::vector<pid_t> kids;
  for (int w = 0; w < kWorkers; w++) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      try {
        Store s(db);
        const std::string me = "w" + std::to_string(w);
        while (auto u = s.backend().claim_unit(id, me, 60, 0)) {
          const int k = int(u->first);
          if (!s.backend().finish_unit(id, u->name, me) || write(fds[1], &k, sizeof k) != sizeof k) _exit(3);
        }
      } catch (...) {
        _exit(4);
      }
      _exit(0);
    }
    kids.push_back(pid);
  }
  close(fds[1]);
  std::vector<int> seen(kUnits, 0);
  int k;
  while (read(fds[0], &k, sizeof k) == sizeof k) seen.at(size_t(k))++;
  close(fds[0]);
  for (pid_t pid : kids) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  for (int i = 0; i < kUnits; i++) EXPECT_EQ(seen[size_t(i)], 1) << "unit " << i;
}

TEST(StorePg, ErrorsNameTheDatabaseWithoutItsPassword) {
  EXPECT_EQ(db_display_name("postgresql://me:s3cret@db.example:5432/ctrust"), "postgresql://me:***@db.example:5432/ctrust");
  EXPECT_EQ(db_display_name("postgres://db/ctrust?sslmode=require&password=s3cret&user=me"),
            "postgres://db/ctrust?sslmode=require&password=***&user=me");
  EXPECT_EQ(db_display_name("postgresql://me@db/x"), "postgresql://me@db/x");
  EXPECT_EQ(db_display_name("results/ctrust.db"), "results/ctrust.db");
  CTRUST_REQUIRE_PG();
  // No server at this socket folder; then a database that does not exist on the test server.
  for (const std::string& url :
       {std::string("postgresql://ctrust:s3cret@%2Fnonexistent-ctrust-dir/x"),
        "postgresql://ctrust:s3cret@" + test::pg_server().url().substr(std::string("postgresql://ctrust@").size(),
                                                                        std::string::npos) + "_missing"}) {
    try {
      Store s(url);
      FAIL() << "connected to " << url;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.find("s3cret"), std::string::npos) << m;
      EXPECT_NE(m.find("postgresql://ctrust:***@"), std::string::npos) << m;
      EXPECT_NE(m.find("cannot connect to the PostgreSQL results database"), std::string::npos) << m;
    }
  }
}

// One claim takes one unit also when the units table is large (a PostgreSQL plan that rescanned the locking
// subquery once claimed 8 units at a time; the claim is now a CTE evaluated once).
STORE_TEST(ClaimTakesOneUnitInALargeTable) {
  const std::string db = fresh(pg, "bigunits");
  Store s(db);
  int64_t last = 0;
  for (int k = 0; k < 30; k++) {
    RunInfo r = run_key("big" + std::to_string(k), 0);
    s.open_run(r);
    std::vector<WorkUnit> units;
    for (int i = 0; i < 30; i++) units.push_back({"u" + std::to_string(i), i * 10, 10});
    s.backend().add_units(r.id, units);
    last = r.id;
  }
  if (pg) test::PgServer::query(db, "ANALYZE units");
  for (int i = 0; i < 5; i++) ASSERT_TRUE(s.backend().claim_unit(last, "w" + std::to_string(i), 60, 0).has_value());
  int owned = 0;
  for (const auto& u : s.backend().units(last)) owned += !u.owner.empty();
  EXPECT_EQ(owned, 5);
}

// Workers started together on a results file that does not exist yet all open it: the first creates it and
// switches it to WAL while the others wait and retry (a fork per opener, as `ctrust eval --worker` processes are).
// Before the retry, one of two workers started at once could fail with "database is locked" (seen in a suite run).
TEST(Store, WorkersCreatingOneNewDatabaseTogetherAllOpenIt) {
  for (int round = 0; round < 12; ++round) {
    const std::string p = fresh_db("race" + std::to_string(round));
    std::vector<pid_t> kids;
    for (int k = 0; k < 4; ++k) {
      const pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        int rc = 0;
        try {
          open_sqlite_store(p, StoreMode::ReadWrite);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "opener %d: %s\n", k, e.what());
          rc = 1;
        }
        _exit(rc);
      }
      kids.push_back(pid);
    }
    for (pid_t pid : kids) {
      int status = 0;
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round;
    }
    open_sqlite_store(p, StoreMode::ReadOnly);  // a complete ctrust database
  }
}
