// The PostgreSQL store from the command line, and many worker processes on one run (docs/cluster.md): against the
// throw-away server of tests/pg_fixture.h (label "postgres"), on stories260K.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli_run.h"
#include "eval/task.h"
#include "pg_fixture.h"
#include "store/store.h"
#include "test_paths.h"

using namespace ctrust;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// `ctrust args` in the background (stdout and stderr to scratch files <tag>.out / <tag>.err), its pid.
pid_t spawn(const std::string& args, const std::string& tag) {
  const std::string base = test::scratch_dir() + "/" + tag;
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c",
          ("exec env OMP_NUM_THREADS=1 " + test::ctrust_bin() + " " + args + " >" + base + ".out 2>" + base + ".err")
              .c_str(),
          (char*)nullptr);
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const RunInfo* run_named(const std::vector<RunInfo>& runs, const std::string& name) {
  for (const auto& r : runs)
    if (r.name == name) return &r;
  return nullptr;
}

// The per-item results of two runs are the same: the same items, answers and correctness, log-likelihoods within
// the scorer's batch tolerance (EvalBatched.ScorerEqualsUnbatched*: 1e-4 nats; units batch items differently).
void expect_same_items(Store& s, int64_t a, int64_t b, size_t n) {
  const auto ia = s.items(a), ib = s.items(b);
  ASSERT_EQ(ia.size(), n);
  ASSERT_EQ(ib.size(), n);
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(ia[i].task, ib[i].task);
    ASSERT_EQ(ia[i].item_id, ib[i].item_id);
    EXPECT_EQ(ia[i].pred, ib[i].pred) << ia[i].item_id;
    EXPECT_EQ(ia[i].gold, ib[i].gold) << ia[i].item_id;
    EXPECT_EQ(ia[i].correct, ib[i].correct) << ia[i].item_id;
    ASSERT_EQ(ia[i].ll.size(), ib[i].ll.size());
    for (size_t k = 0; k < ia[i].ll.size(); k++) worst = std::max(worst, std::abs(ia[i].ll[k] - ib[i].ll[k]));
  }
  EXPECT_LE(worst, 1e-4);
  std::printf("largest log-likelihood difference: %.3g nats\n", worst);
}

std::string fresh(bool pg, const std::string& name) {
  if (pg) return test::pg_server().fresh_db(name);
  const std::string p = test::scratch_dir() + "/" + name + ".db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  return p;
}

}  // namespace

// Workers.X on a SQLite file (processes of one machine), WorkersPg.X on the throw-away PostgreSQL server.
#define WORKERS_TEST(Name)                 \
  static void Name##_on(bool pg);          \
  TEST(Workers, Name) { Name##_on(false); } \
  TEST(WorkersPg, Name) {                  \
    CTRUST_REQUIRE_PG();                   \
    Name##_on(true);                       \
  }                                        \
  static void Name##_on(bool pg)


// eval, Ctrl-C, resume, runs and compare with --db postgresql://...: the same behaviour as with a SQLite file.
TEST(PgCli, EvalInterruptResumeRunsCompare) {
  CTRUST_REQUIRE_PG();
  const std::string db = test::pg_server().fresh_db("pgcli");
  const std::string eval = "eval -m " + test::stories_gguf() + " --tasks hellaswag --limit 80 --db " + db;
  // A read command on a database without ctrust tables: an error, and nothing is created.
  auto none = test::run_ctrust("runs --db " + db, "pg_runs_empty");
  EXPECT_NE(none.status, 0);
  EXPECT_NE(none.err.find("not a ctrust results database"), std::string::npos) << none.err;
  EXPECT_EQ(test::PgServer::query(db, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"), "0");

  const pid_t pid = spawn(eval + " --name s", "pg_sigint");
  bool started = false;
  for (int i = 0; i < 600 && !started; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    try {
      Store s(db, StoreMode::ReadOnly);
      for (const RunInfo& r : s.list_runs()) started = started || r.n_items > 0;
    } catch (const Error&) {
    }
  }
  ASSERT_TRUE(started) << "no item stored within 30 s";
  kill(pid, SIGINT);
  const int st = wait_exit(pid);
  const std::string err = slurp(test::scratch_dir() + "/pg_sigint.err");
  if (st == 0) GTEST_SKIP() << "the run finished before Ctrl-C arrived";
  EXPECT_EQ(st, 130) << err;
  EXPECT_NE(err.find("of 80 items of task hellaswag are saved in " + db), std::string::npos) << err;
  int64_t saved = 0;
  {
    Store s(db);
    ASSERT_EQ(s.list_runs().size(), 1u);
    saved = s.list_runs()[0].n_items;
  }
  EXPECT_GT(saved, 0);
  EXPECT_LT(saved, 80);
  auto again = test::run_ctrust(eval + " --name s --json", "pg_resume");
  ASSERT_EQ(again.status, 0) << again.err;
  const json j = json::parse(again.out)["runs"][0];
  EXPECT_EQ(j["n_skipped"], saved);
  EXPECT_EQ(j["n_scored"], 80 - saved);
  // The same run in a SQLite file gives the same items; compare finds no flip between the two runs in PostgreSQL.
  auto other = test::run_ctrust(eval + " --name t --json", "pg_second");
  ASSERT_EQ(other.status, 0) << other.err;
  auto runs = test::run_ctrust("runs --json --db " + db, "pg_runs");
  ASSERT_EQ(runs.status, 0) << runs.err;
  const json rj = json::parse(runs.out)["runs"];
  ASSERT_EQ(rj.size(), 2u);
  EXPECT_EQ(rj[0]["n_items"], 80);
  EXPECT_EQ(rj[1]["n_items"], 80);
  auto cmp = test::run_ctrust("compare s t --json --db " + db, "pg_compare");
  ASSERT_EQ(cmp.status, 0) << cmp.err;
  const json c = json::parse(cmp.out)["tasks"]["hellaswag"];
  EXPECT_EQ(c["n"], 80);
  EXPECT_EQ(c["all_flips"], 0);
  Store s(db, StoreMode::ReadOnly);
  const auto all = s.list_runs();
  expect_same_items(s, all[0].id, all[1].id, 80);
}

// Three worker processes on one run give the per-item results of one process.
WORKERS_TEST(ThreeProcessesEqualOneProcess) {
  const std::string db = fresh(pg, "workers_three");
  const std::string eval = "eval -m " + test::stories_gguf() + " --tasks arc_easy --limit 60 --db " + db;
  auto one = test::run_ctrust(eval + " --name one", "w_one");
  ASSERT_EQ(one.status, 0) << one.err;
  std::vector<pid_t> pids;
  for (int w = 0; w < 3; w++)
    pids.push_back(spawn(eval + " --name three --worker --unit-items 7 --worker-id w" + std::to_string(w),
                         "w_three" + std::to_string(w)));
  for (int w = 0; w < 3; w++)
    EXPECT_EQ(wait_exit(pids[size_t(w)]), 0) << slurp(test::scratch_dir() + "/w_three" + std::to_string(w) + ".err");
  Store s(db);
  const auto runs = s.list_runs();
  ASSERT_EQ(runs.size(), 2u);
  expect_same_items(s, run_named(runs, "one")->id, run_named(runs, "three")->id, 60);
  const auto units = s.backend().units(run_named(runs, "three")->id);
  ASSERT_EQ(units.size(), 9u);  // 60 items in units of 7
  EXPECT_EQ(units.back().unit.count, 4);
  for (const auto& u : units) EXPECT_TRUE(u.done) << u.unit.name;
  // Every worker prints the summary of the whole run.
  for (int w = 0; w < 3; w++)
    EXPECT_NE(slurp(test::scratch_dir() + "/w_three" + std::to_string(w) + ".out").find("task arc_easy: 60 items"),
              std::string::npos);
}

// kill -9 of a worker in the middle of a unit (some of the unit's items stored, not all): after its 2-second lease
// expires another worker takes the unit over; when the others finish nothing is lost and nothing is duplicated, and
// the items equal a one-process run.
TEST(WorkersPg, KillNineMidUnitLosesNothing) {
  CTRUST_REQUIRE_PG();
  const std::string db = test::pg_server().fresh_db("workers_kill");
  constexpr int kItems = 100, kUnit = 20;
  const std::string eval = "eval -m " + test::stories_gguf() + " --tasks hellaswag --limit " +
                           std::to_string(kItems) + " --db " + db + " --name w --worker --lease 2 --unit-items " +
                           std::to_string(kUnit);
  // The items in the order the units cut them (the same list eval builds).
  const TaskData td = load_task(load_task_spec("hellaswag"), kItems);
  ASSERT_EQ(td.items.size(), size_t(kItems));
  const pid_t victim = spawn(eval + " --worker-id victim", "w_victim");
  std::vector<pid_t> others;
  for (int w = 0; w < 2; w++) others.push_back(spawn(eval + " --worker-id w" + std::to_string(w), "w_other" + std::to_string(w)));
  // Wait until the victim holds a unit of which some but not all items are stored.
  bool mid = false;
  std::string unit;
  for (int i = 0; i < 1200 && !mid; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    try {
      Store s(db);
      const auto runs = s.list_runs();
      if (runs.empty()) continue;
      const auto done = s.done_items(runs[0].id);
      for (const auto& u : s.backend().units(runs[0].id)) {
        if (u.done || u.owner != "victim") continue;
        int64_t have = 0;
        for (int64_t k = u.unit.first; k < u.unit.first + u.unit.count; k++)
          have += done.count(item_key(td.items[size_t(k)].task, td.items[size_t(k)].id));
        if (have > 0 && have < u.unit.count) {
          kill(victim, SIGKILL);
          mid = true;
          unit = u.unit.name;
        }
      }
    } catch (const Error&) {
    }
  }
  if (!mid) kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
  ASSERT_TRUE(mid) << "the victim was never seen in the middle of a unit";
  for (size_t w = 0; w < others.size(); w++)
    EXPECT_EQ(wait_exit(others[w]), 0) << slurp(test::scratch_dir() + "/w_other" + std::to_string(w) + ".err");
  // The units' log says who took the victim's unit over.
  std::string logs;
  for (int w = 0; w < 2; w++) logs += slurp(test::scratch_dir() + "/w_other" + std::to_string(w) + ".err");
  EXPECT_NE(logs.find("unit " + unit + " claimed"), std::string::npos) << logs;
  Store s(db);
  const int64_t id = s.list_runs()[0].id;
  for (const auto& u : s.backend().units(id)) {
    EXPECT_TRUE(u.done) << u.unit.name;
    if (u.unit.name == unit) {
      EXPECT_EQ(u.attempts, 2) << unit;
    }
  }
  EXPECT_EQ(s.items(id).size(), size_t(kItems));
  EXPECT_EQ(test::PgServer::query(db, "SELECT count(*) FROM items"), std::to_string(kItems));
  // One process, same items.
  auto one = test::run_ctrust("eval -m " + test::stories_gguf() + " --tasks hellaswag --limit " +
                                  std::to_string(kItems) + " --db " + db + " --name one",
                              "w_kill_one");
  ASSERT_EQ(one.status, 0) << one.err;
  expect_same_items(s, id, run_named(s.list_runs(), "one")->id, kItems);
}

// A unit whose workers keep dying (e.g. an item that crashes the process) is not claimed forever: once it was
// claimed --max-attempts times and its last holder's lease expired, the workers finish every other unit and then
// stop with an error naming it; a worker with a larger cap takes it again and completes the run. The deaths are a
// worker killed with SIGKILL and then "ghost" claims through the store API whose short leases expire.
WORKERS_TEST(UnitClaimedMaxAttemptsTimesStopsTheRun) {
  const std::string db = fresh(pg, "workers_spent");
  constexpr int kItems = 100;
  const std::string eval = "eval -m " + test::stories_gguf() + " --tasks hellaswag --limit " +
                           std::to_string(kItems) + " --db " + db + " --name spent --worker --lease 1 --unit-items 10";
  const std::string tag = pg ? "spent_pg" : "spent_sq";
  const std::string victim_err = test::scratch_dir() + "/" + tag + "_victim.err";
  fs::remove(victim_err);  // not a previous run's log
  const pid_t victim = spawn(eval + " --worker-id victim", tag + "_victim");
  for (int i = 0; i < 20000 && slurp(victim_err).find(" claimed") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
  ASSERT_NE(slurp(victim_err).find(" claimed"), std::string::npos) << slurp(victim_err);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // the victim's 1-second lease expires
  Store s(db);
  const int64_t id = s.list_runs().at(0).id;
  std::string unit;  // the first unit not done: the victim's, or the next one
  for (const auto& u : s.backend().units(id))
    if (!u.done && unit.empty()) unit = u.unit.name;
  ASSERT_FALSE(unit.empty()) << "the victim finished the whole run before it was killed";
  auto attempts = [&] {
    for (const auto& u : s.backend().units(id))
      if (u.unit.name == unit) return u.attempts;
    return int64_t(-1);
  };
  while (attempts() < 3) {  // ghost workers claim it and die (their 50 ms leases expire)
    auto c = s.backend().claim_unit(id, "ghost", 0.05, 0);
    ASSERT_TRUE(c.has_value());
    ASSERT_EQ(c->name, unit);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }
  auto capped = test::run_ctrust(eval + " --max-attempts 3 --worker-id w1", tag + "_capped");
  EXPECT_EQ(capped.status, 1) << capped.err;
  EXPECT_NE(capped.err.find("ctrust: error: "), std::string::npos) << capped.err;
  EXPECT_NE(capped.err.find("unit " + unit + " was claimed 3 times (--max-attempts 3) and never finished"),
            std::string::npos)
      << capped.err;
  EXPECT_NE(capped.err.find("(the last: ghost)"), std::string::npos) << capped.err;
  for (const auto& u : s.backend().units(id)) EXPECT_EQ(u.done, u.unit.name != unit) << u.unit.name;
  EXPECT_LT(s.items(id).size(), size_t(kItems));
  // A larger cap (default 5) claims it a fourth time and completes the run.
  auto more = test::run_ctrust(eval + " --worker-id w2", tag + "_more");
  ASSERT_EQ(more.status, 0) << more.err;
  EXPECT_NE(more.err.find("unit " + unit + " claimed"), std::string::npos) << more.err;
  EXPECT_EQ(attempts(), 4);
  for (const auto& u : s.backend().units(id)) EXPECT_TRUE(u.done) << u.unit.name;
  EXPECT_EQ(s.items(id).size(), size_t(kItems));
}

// eval --worker with several tasks does not wait for a unit another worker holds while a later task has free units:
// a worker killed in arc_easy leaves a unit leased (5 s); a second worker on "arc_easy,piqa" finishes arc_easy's
// other units, does all of piqa, and only then waits for the dead worker's lease and completes arc_easy. Both runs
// end complete, and the summaries of both tasks are printed in the order given.
WORKERS_TEST(SeveralTasksGoOnToTheNextTaskInsteadOfWaiting) {
  const std::string db = fresh(pg, "workers_next_task");
  const std::string common = " -m " + test::stories_gguf() + " --limit 40 --db " + db +
                             " --name nt --worker --lease 5 --unit-items 10";
  const std::string tag = pg ? "next_pg" : "next_sq";
  const std::string victim_err = test::scratch_dir() + "/" + tag + "_victim.err";
  fs::remove(victim_err);
  const pid_t victim = spawn("eval --tasks arc_easy" + common + " --worker-id victim", tag + "_victim");
  for (int i = 0; i < 20000 && slurp(victim_err).find(" claimed") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
  std::string held;  // the dead worker's unit, still leased
  {
    Store s(db);
    for (const auto& u : s.backend().units(s.list_runs().at(0).id))
      if (!u.done && u.owner == "victim" && u.lease_left > 0) held = u.unit.name;
  }
  if (held.empty()) GTEST_SKIP() << "the victim finished its unit before it was killed: " << slurp(victim_err);
  auto w2 = test::run_ctrust("eval --tasks arc_easy,piqa" + common + " --worker-id w2", tag + "_w2");
  ASSERT_EQ(w2.status, 0) << w2.err;
  // It left arc_easy once only the dead worker's unit was open, did piqa, then came back for that unit.
  const size_t left = w2.err.find("held by other workers: going on, back later");
  const size_t piqa_last = w2.err.rfind("unit piqa:30-39 done");
  const size_t retaken = w2.err.find("unit " + held + " claimed");
  ASSERT_NE(left, std::string::npos) << w2.err;
  ASSERT_NE(piqa_last, std::string::npos) << w2.err;
  ASSERT_NE(retaken, std::string::npos) << w2.err;
  EXPECT_LT(left, piqa_last) << w2.err;
  EXPECT_LT(piqa_last, retaken) << w2.err;
  const size_t arc_sum = w2.out.find("task arc_easy: 40 items"), piqa_sum = w2.out.find("task piqa: 40 items");
  ASSERT_NE(arc_sum, std::string::npos) << w2.out;
  ASSERT_NE(piqa_sum, std::string::npos) << w2.out;
  EXPECT_LT(arc_sum, piqa_sum);
  Store s(db);
  for (const RunInfo& r : s.list_runs()) {
    EXPECT_EQ(s.items(r.id).size(), 40u) << r.task;
    for (const auto& u : s.backend().units(r.id)) EXPECT_TRUE(u.done) << r.task << " " << u.unit.name;
  }
}

// trust --worker: one unit per perspective; three workers store the same records (prompts, outputs, parsed answers)
// and the same scores as one process.
TEST(WorkersPg, TrustThreeProcessesEqualOneProcess) {
  CTRUST_REQUIRE_PG();
  const std::string db = test::pg_server().fresh_db("workers_trust");
  const std::string trust = "trust -m " + test::stories_gguf() +
                            " --perspectives ethics,fairness,adv_robustness,stereotype --limit 2 --samples 1 "
                            "--max-new-tokens 8 --bootstrap 100 -t 1 --db " + db;
  auto one = test::run_ctrust(trust + " --name one", "wt_one");
  ASSERT_EQ(one.status, 0) << one.err;
  std::vector<pid_t> pids;
  for (int w = 0; w < 3; w++)
    pids.push_back(spawn(trust + " --name three --worker --worker-id t" + std::to_string(w), "wt_three" + std::to_string(w)));
  for (int w = 0; w < 3; w++)
    EXPECT_EQ(wait_exit(pids[size_t(w)]), 0) << slurp(test::scratch_dir() + "/wt_three" + std::to_string(w) + ".err");
  Store s(db, StoreMode::ReadOnly);
  const auto runs = s.list_runs();
  const RunInfo *a = run_named(runs, "one"), *b = run_named(runs, "three");
  ASSERT_TRUE(a && b);
  const auto ia = s.items(a->id), ib = s.items(b->id);
  ASSERT_EQ(ia.size(), ib.size());
  ASSERT_GT(ia.size(), 0u);
  for (size_t i = 0; i < ia.size(); i++) {
    ASSERT_EQ(ia[i].task + ia[i].item_id, ib[i].task + ib[i].item_id);
    EXPECT_EQ(ia[i].extra, ib[i].extra) << ia[i].task << " " << ia[i].item_id;
    EXPECT_EQ(ia[i].correct, ib[i].correct);
  }
  // The run result merges the four perspectives the workers scored one by one.
  const json ra = *s.run_result(a->id), rb = *s.run_result(b->id);
  ASSERT_EQ(rb["perspectives"].size(), 4u);
  for (const char* p : {"ethics", "fairness", "adv_robustness", "stereotype"})
    EXPECT_EQ(ra["perspectives"][p]["score"], rb["perspectives"][p]["score"]) << p;
  for (const auto& u : s.backend().units(b->id)) EXPECT_TRUE(u.done) << u.unit.name;
}
