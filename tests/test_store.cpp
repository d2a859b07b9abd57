#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "base/error.h"
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

}  // namespace

TEST(Store, RunsAreFoundAgainBySettings) {
  const std::string db = fresh_db("runs");
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

TEST(Store, ItemsRoundTripExactly) {
  const std::string db = fresh_db("items");
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
TEST(Store, KillNineLosesNoCommittedBatch) {
  const std::string db = fresh_db("kill");
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
