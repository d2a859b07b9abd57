// lm-evaluation-harness samples import/export: hand-written files in lm-eval's shape (tests/data/lmeval),
// bad input, and a round trip of real stories260K runs (ARC-Easy, MMLU subjects) through export + import.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "pipeline/lmeval.h"
#include "pipeline/runs.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

std::string data(const std::string& name) { return test::source_dir() + "/tests/data/lmeval/" + name; }
const char* kArc = "samples_arc_easy_2024-06-01T12-00-00.000001.jsonl";
const char* kWino = "samples_winogrande_2023-12-01T08-00-00.jsonl";

std::string fresh_db(const std::string& name) {
  std::string p = test::scratch_dir() + "/" + name + ".db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  return p;
}

const Model& stories() {
  static auto m = open_model(test::stories_gguf());
  return *m;
}

void expect_error(const std::string& name, const std::string& content, const std::string& needle) {
  const std::string p = test::scratch_dir() + "/" + name;
  std::ofstream(p, std::ios::binary) << content;
  try {
    read_lm_eval_samples(p, "t");
    ADD_FAILURE() << name << ": expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(LmEval, TaskFromFileName) {
  EXPECT_EQ(lm_eval_task_from_filename("/x/samples_mmlu_anatomy_2024-05-01T10-00-00.123.jsonl"), "mmlu_anatomy");
  EXPECT_EQ(lm_eval_task_from_filename(kArc), "arc_easy");
  EXPECT_EQ(lm_eval_task_from_filename("samples_hellaswag_ctrust-run7.jsonl"), "hellaswag");
  EXPECT_EQ(lm_eval_task_from_filename("results_2024-05-01T10-00-00.json"), "");
  EXPECT_EQ(lm_eval_task_from_filename("samples_arc.jsonl"), "");
}

TEST(LmEval, ReadsCurrentFormat) {
  auto items = read_lm_eval_samples(data(kArc), "arc_easy");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].task, "arc_easy");
  EXPECT_EQ(items[0].item_id, "0");
  EXPECT_EQ(items[0].ll, (std::vector<double>{-23.5, -31.25, -28.0, -19.75}));
  EXPECT_EQ(items[0].pred, 3);
  EXPECT_EQ(items[0].gold, 0);
  EXPECT_FALSE(items[0].correct);
  EXPECT_EQ(items[0].extra["correct_norm"], true);
  EXPECT_EQ(items[1].pred, 1);
  EXPECT_TRUE(items[1].correct);
  EXPECT_EQ(items[1].extra["greedy"], nlohmann::json({false, true, false, false}));
}

TEST(LmEval, ReadsOlderFormatAndPartialScoring) {
  // Numbers instead of strings, arguments as pairs, the target is the shared continuation: the gold answer
  // of these two-choice items comes from the stored acc.
  auto items = read_lm_eval_samples(data(kWino), "winogrande");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].pred, 1);
  EXPECT_EQ(items[0].gold, 1);
  EXPECT_EQ(items[1].gold, 0);
  EXPECT_EQ(items[2].pred, 1);
  EXPECT_EQ(items[2].gold, 0);
  EXPECT_FALSE(items[2].correct);
}

TEST(LmEval, BadFiles) {
  const std::string ok = R"({"doc_id": 0, "target": 1, "filtered_resps": [["-1.5", "False"], ["-0.5", "True"]], "acc": 1.0})";
  expect_error("lme_json.jsonl", ok + "\n{\"doc_id\": 1,\n", "lme_json.jsonl:2: invalid JSON");
  expect_error("lme_noid.jsonl", R"({"target": 0, "filtered_resps": [["-1", "False"]]})", ":1: no doc_id");
  expect_error("lme_dup.jsonl", ok + "\n" + ok + "\n", ":2: doc_id 0 appears twice");
  expect_error("lme_resps.jsonl", R"({"doc_id": 0, "target": 0, "filtered_resps": []})", ":1: no filtered_resps");
  expect_error("lme_num.jsonl", R"({"doc_id": 0, "target": 0, "filtered_resps": [["abc", "False"]]})",
               "'abc' is not a number");
  expect_error("lme_acc.jsonl", R"({"doc_id": 0, "target": 0, "filtered_resps": [["-1.5", "False"], ["-0.5", "True"]], "acc": 1.0})",
               "disagrees");
  expect_error("lme_target.jsonl", R"({"doc_id": 0, "target": 7, "filtered_resps": [["-1", "F"], ["-2", "F"], ["-3", "F"]]})",
               "target 7 is not a choice index (the item has 3 choices)");
  expect_error("lme_empty.jsonl", "\n\n", "no samples");
  EXPECT_THROW(read_lm_eval_samples("/nonexistent/samples_x.jsonl", "t"), Error);
}

TEST(LmEval, ImportAndCompare) {
  LmEvalImportOptions o;
  o.db = fresh_db("lme_import");
  o.name = "hf-run";
  o.task = "arc_easy";
  LmEvalImport r = import_lm_eval({data(kArc)}, o);
  EXPECT_EQ(r.n_items, 2);
  EXPECT_EQ(r.run.scoring, "multiple_choice");
  EXPECT_EQ(r.item_tasks, std::vector<std::string>{"arc_easy"});
  // Re-importing the same file resumes the same run (no duplicates).
  LmEvalImport again = import_lm_eval({data(kArc)}, o);
  EXPECT_EQ(again.run.id, r.run.id);
  EXPECT_EQ(again.run.n_items, 2);
  auto sum = summarize(r.run, Store(o.db).items(r.run.id));
  ASSERT_EQ(sum.size(), 1u);
  EXPECT_DOUBLE_EQ(sum[0].acc, 0.5);
  EXPECT_DOUBLE_EQ(sum[0].acc_norm, 1.0);
}

// Export a real ctrust run and import it back: identical answers, log-likelihoods exact to the last bit.
TEST(LmEval, RoundTripStoriesArcEasy) {
  EvalOptions opt;
  opt.db = fresh_db("lme_roundtrip");
  opt.name = "stories";
  opt.limit = 6;
  opt.limit_mode = LimitMode::First;  // lm-eval's --limit: documents 0-5
  opt.progress = false;
  opt.max_ctx = 256;
  EvalResult er = eval_run(stories(), test::stories_gguf(), "arc_easy", opt);
  const std::string out = test::scratch_dir() + "/lme_export.jsonl";
  auto files = export_lm_eval(opt.db, "stories", out);
  ASSERT_EQ(files, std::vector<std::string>{out});
  // The exported lines carry the prompts of the task.
  std::ifstream in(out);
  std::string line;
  std::getline(in, line);
  const auto j = nlohmann::json::parse(line);
  TaskData td = load_task(load_task_spec("arc_easy"), 1, LimitMode::First);
  EXPECT_EQ(j["arguments"]["gen_args_0"]["arg_0"], td.items[0].contexts[0]);
  EXPECT_EQ(j["arguments"]["gen_args_1"]["arg_1"], td.items[0].continuations[1]);
  EXPECT_EQ(j["doc_id"], 0);
  EXPECT_TRUE(j["filtered_resps"][0][0].is_string());

  LmEvalImportOptions o;
  o.db = opt.db;
  o.name = "back";
  o.task = "arc_easy";
  import_lm_eval(files, o);
  Comparison c = compare_runs(opt.db, "stories", "back");
  ASSERT_TRUE(c.tasks.count("arc_easy"));
  const PairMetrics& m = c.tasks["arc_easy"].m;
  EXPECT_EQ(m.n, 6);
  EXPECT_DOUBLE_EQ(m.agreement, 1.0);
  EXPECT_DOUBLE_EQ(m.flips, 0.0);
  EXPECT_DOUBLE_EQ(m.kl_ab, 0.0);
  Store s(opt.db);
  auto a = s.items(er.run.id);
  auto b = s.items(c.runs_b[0].id);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT_EQ(a[i].ll, b[i].ll);
    EXPECT_EQ(a[i].extra["correct_norm"], b[i].extra["correct_norm"]);
  }
}

// MMLU: one file per subject into a folder; the import takes each subject from the file name.
TEST(LmEval, RoundTripStoriesMmluSubjects) {
  EvalOptions opt;
  opt.db = fresh_db("lme_mmlu");
  opt.name = "stories";
  opt.limit = 1;
  opt.progress = false;
  opt.max_ctx = 512;
  eval_run(stories(), test::stories_gguf(), "mmlu", opt);
  const std::string dir = test::scratch_dir() + "/lme_mmlu_out";
  fs::remove_all(dir);
  auto files = export_lm_eval(opt.db, "stories", dir);
  ASSERT_EQ(files.size(), 57u);
  EXPECT_EQ(lm_eval_task_from_filename(files[0]).rfind("mmlu_", 0), 0u);
  LmEvalImportOptions o;
  o.db = opt.db;
  o.name = "back";
  o.task = "mmlu";
  LmEvalImport r = import_lm_eval(files, o);
  EXPECT_EQ(r.n_items, 57);
  Comparison c = compare_runs(opt.db, "stories", "back");
  ASSERT_TRUE(c.tasks.count("mmlu"));
  ASSERT_TRUE(c.tasks.count("mmlu_anatomy"));
  EXPECT_EQ(c.tasks["mmlu"].m.n, 57);
  EXPECT_DOUBLE_EQ(c.tasks["mmlu"].m.agreement, 1.0);
  EXPECT_EQ(c.tasks["mmlu"].only_a + c.tasks["mmlu"].only_b, 0);
  EXPECT_THROW(export_lm_eval(opt.db, "nosuchrun", dir), Error);
}
