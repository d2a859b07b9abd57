// Issue 15: the thirteen failures found with malformed inputs, each with its reproducer (tests/data/hardening/,
// made by scripts/ref/make_broken_corpus.py; files that must be large are generated here into the scratch folder).
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/file.h"
#include "eval/score.h"
#include "eval/task.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "io/tokenizer.h"
#include "model/perplexity.h"
#include "pipeline/lmeval.h"
#include "pipeline/runs.h"
#include "pipeline/trust_runs.h"
#include "cli_run.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

std::string hdata(const std::string& name) { return test::source_dir() + "/tests/data/hardening/" + name; }

const Model& stories() {
  static std::unique_ptr<Model> m = open_model(test::stories_gguf());
  return *m;
}

std::string fresh_db(const std::string& name) {
  std::string p = test::scratch_dir() + "/" + name + ".db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  return p;
}

// The message of the ctrust::Error that f throws ("" if it throws nothing; other exceptions fail the test).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(stmt, text)                                         \
  do {                                                                   \
    const std::string msg_ = error_of([&] { stmt; });                    \
    EXPECT_NE(msg_.find(text), std::string::npos) << "error: " << msg_; \
  } while (0)

using test::ctrust_bin;
using test::CliResult;

CliResult run_cli(const std::string& args) { return test::run_ctrust(args, "hardening"); }

// Stores one small run (two items) named `name` in db.
void store_run(const std::string& db, const std::string& name) {
  Store s(db);
  RunInfo r;
  r.name = name;
  r.model_path = "m.gguf";
  r.model_fp = "fp";
  r.task = "arc_easy";
  r.scoring = "multiple_choice";
  s.open_run(r);
  std::vector<StoredItem> items(2);
  for (int i = 0; i < 2; i++) {
    items[size_t(i)].task = "arc_easy";
    items[size_t(i)].item_id = std::to_string(i);
    items[size_t(i)].ll = {-1.0 - i, -2.0};
    items[size_t(i)].pred = 0;
    items[size_t(i)].gold = i;
    items[size_t(i)].correct = i == 0;
  }
  s.add_items(r.id, items);
}

// A run row written straight into the database, as an older ctrust (without name checks) could have.
void insert_raw_run(const std::string& db, const std::string& name) {
  { Store create(db); }
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(h,
                               "INSERT INTO runs(name, model_path, model_fp, tokenizer_fp, task, scoring, settings, "
                               "version, created) VALUES(?, 'm', 'fp', '', 'arc_easy', 'multiple_choice', '{}', "
                               "'0', 'now')",
                               -1, &st, nullptr),
            SQLITE_OK);
  sqlite3_bind_text(st, 1, name.data(), int(name.size()), SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(h);
}

}  // namespace

// 1. A 28-byte llama2.c file with every dimension at the limit: a clean error before any allocation, with the
//    byte count it needs (it used to build tensor entries first and overflow int64 in the offset sum).
TEST(Hardening, Llama2cHugeHeaderFailsBeforeAllocating) {
  const std::string msg = error_of([] { load_model(hdata("llama2c_huge_header.bin"), {test::stories_tok()}); });
  EXPECT_NE(msg.find("needs more than 2^63 bytes, the file has 28"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("needs -"), std::string::npos) << msg;
  // A real checkpoint cut short by 4 bytes: the message gives the exact size the header needs.
  const std::string cut = test::scratch_dir() + "/stories_cut.bin";
  const uint64_t size = fs::file_size(test::stories_bin());
  fs::copy_file(test::stories_bin(), cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, size - 4);
  EXPECT_ERROR(load_model(cut, {test::stories_tok()}),
               fmt::format("needs {} bytes, the file has {}", size, size - 4));
}

// 2. A bzip2 bomb (785 bytes -> 1 GiB) is stopped at the limit sized from the compressed file; /dev/zero as a
//    task's data is refused (it used to be read forever).
TEST(Hardening, DataFilesAreCapped) {
  const uint64_t limit = max_decompressed_bytes(fs::file_size(hdata("bomb.jsonl.bz2")));
  EXPECT_EQ(limit, uint64_t(64) << 20);
  EXPECT_ERROR(read_text_file(hdata("bomb.jsonl.bz2")), fmt::format("decompresses to more than {} bytes", limit));
  EXPECT_ERROR(load_task(load_task_spec(hdata("task_bomb.json"))), "decompresses to more than");
  EXPECT_ERROR(load_task(load_task_spec(hdata("task_dev_zero.json"))), "/dev/zero: data file is not a regular file");
  EXPECT_ERROR(read_text_file("/dev/zero"), "not a regular file");
  EXPECT_ERROR(load_task_spec("/dev/zero"), "not a regular file");
  EXPECT_ERROR(read_lm_eval_samples("/dev/zero", "t"), "not a regular file");
  // Real bzip2 data stays well under the limit.
  const std::string hs = test::shared_dir() + "/data/hellaswag/hellaswag_val_full.txt.bz2";
  if (fs::exists(hs)) {
    EXPECT_GT(read_text_file(hs).size(), 7000000u);
  }
}

// 3. A GGUF holding one large uint8 array: decoded metadata is capped at 2x the file size (at least 128 MiB)
//    before anything is allocated (every element used to become an 88-byte value: 83x the file).
TEST(Hardening, GgufArrayMemoryIsCapped) {
  const std::string p = test::scratch_dir() + "/big_u8_array.gguf";
  const uint64_t n = 2u << 20;  // 2 Mi elements: 2 MB on disk, ~180 MB decoded
  {
    std::ofstream f(p, std::ios::binary);
    auto put = [&](auto v) { f.write(reinterpret_cast<const char*>(&v), sizeof v); };
    f.write("GGUF", 4);
    put(uint32_t(3)), put(uint64_t(0)), put(uint64_t(1));
    const std::string key = "big";
    put(uint64_t(key.size()));
    f.write(key.data(), std::streamsize(key.size()));
    put(uint32_t(GgufType::ARRAY)), put(uint32_t(GgufType::UINT8)), put(n);
    std::string zeros(n, '\0');
    f.write(zeros.data(), std::streamsize(zeros.size()));
  }
  EXPECT_ERROR(read_gguf(p), "key 'big' array would take more than 134217728 bytes of memory, the limit for a");
  // The real model's metadata (49k-token vocabulary and merges) is far below the limit.
  if (fs::exists(test::smollm_q4_1())) {
    EXPECT_NO_THROW(read_gguf(test::smollm_q4_1()));
  }
}

// 4. hidden_size 1e300 in config.json: range-checked before the float-to-int cast (UBSan float-cast-overflow
//    in the sanitizer build, which now checks it).
TEST(Hardening, ConfigHugeNumberIsRangeChecked) {
  EXPECT_ERROR(load_model(hdata("hf_hidden_1e300")), "hidden_size = 1e+300 is not a positive integer up to 2^30");
}

// Found by fuzz_hf_config (2026-12-03, after 8.2 M inputs): a rope_scaling whose "type" is a number threw
// nlohmann's type_error out of the loader (terminate) instead of a clear error naming the file.
TEST(Hardening, FuzzFindingRopeScalingTypeNotAString) {
  EXPECT_ERROR(load_model(hdata("hf_rope_scaling_type_number")), "rope_scaling.type must be a string");
}

// Found by fuzz_tokenizer_json (2026-12-03, after 0.39 M inputs): a 3.9 KB tokenizer.json listing 192 tokens, one
// with id 9,357,389, was filled up to that id with [PADi] tokens (> 2 GB with the tokenizer's tables): the
// vocabulary size is now capped from the tokens the file lists.
TEST(Hardening, FuzzFindingTokenizerJsonSparseIds) {
  EXPECT_ERROR(tokenizer_from_json(hdata("fuzz/tokenizer_sparse_ids.json")),
               "token id 9357389 but only 192 tokens listed");
}

// 5. import-lm-eval: nan/inf log-likelihoods and targets that name no choice are errors (a bad target used
//    to be replaced by a gold answer guessed from acc).
TEST(Hardening, LmEvalBadValuesAreRejected) {
  EXPECT_ERROR(read_lm_eval_samples(hdata("samples_nan_2024-01-01T00-00-00.jsonl"), "t"),
               "log-likelihood 'nan' is not a finite number");
  EXPECT_ERROR(read_lm_eval_samples(hdata("samples_inf_2024-01-01T00-00-00.jsonl"), "t"),
               "log-likelihood '-inf' is not a finite number");
  EXPECT_ERROR(read_lm_eval_samples(hdata("samples_target_7_2024-01-01T00-00-00.jsonl"), "t"),
               "target 7 is not a choice index");
  EXPECT_ERROR(read_lm_eval_samples(hdata("samples_target_minus1_2024-01-01T00-00-00.jsonl"), "t"),
               "target -1 is not a choice index");
  EXPECT_ERROR(read_lm_eval_samples(hdata("samples_target_null_2024-01-01T00-00-00.jsonl"), "t"),
               "target null is missing");
  EXPECT_ERROR(read_lm_eval_samples(hdata("samples_target_zzz_2024-01-01T00-00-00.jsonl"), "t"),
               "target \"zzz\" matches no choice's continuation");
  // The real formats still import: integer targets (ARC) and the shared continuation of partial scoring.
  const std::string d = test::source_dir() + "/tests/data/lmeval/";
  EXPECT_EQ(read_lm_eval_samples(d + "samples_winogrande_2023-12-01T08-00-00.jsonl", "winogrande").size(), 3u);
  EXPECT_FALSE(read_lm_eval_samples(d + "samples_arc_easy_2024-06-01T12-00-00.000001.jsonl", "arc_easy").empty());
}

// 6. A multiple-choice item with one choice: an error at load time; scored anyway (items built by hand), it is
//    scored as multiple choice (argmax of one = the gold), not as a log-likelihood item.
TEST(Hardening, OneChoiceMultipleChoice) {
  EXPECT_ERROR(load_task(load_task_spec(hdata("task_one_choice.json"))),
               "one_choice.jsonl:2: 1 choice(s); multiple_choice scoring needs at least 2");
  TaskItem it;
  it.task = "t";
  it.id = "0";
  it.contexts = {"Once upon a time"};
  it.continuations = {" there was a zebra"};
  it.choice_texts = {"there was a zebra"};
  it.gold = 0;
  KVCache cache = make_cache(stories(), 64);
  ItemScore s = score_item(stories(), cache, it);
  ASSERT_FALSE(s.greedy[0]);  // the case that used to decide correctness
  EXPECT_EQ(s.pred, 0);
  EXPECT_TRUE(s.correct);
  it.scoring = Scoring::Loglikelihood;
  EXPECT_FALSE(score_item(stories(), cache, it).correct);
}

// 7. All-digit run names: refused when stored; digits too long for an id give a clean error (was "stoll");
//    an all-digit name stored by an older version is still found when no run has that id.
TEST(Hardening, AllDigitRunNames) {
  const std::string db = fresh_db("digits");
  EXPECT_ERROR(store_run(db, "123"), "run name '123' is all digits");
  store_run(db, "base");
  EXPECT_ERROR(compare_runs(db, "99999999999999999999999", "base"),
               "no run with id or name '99999999999999999999999'");
  EXPECT_FALSE(run_id_of("99999999999999999999999"));
  EXPECT_EQ(run_id_of("12"), std::optional<int64_t>(12));
  insert_raw_run(db, "777");
  Comparison c = compare_runs(db, "777", "base");
  ASSERT_EQ(c.runs_a.size(), 1u);
  EXPECT_EQ(c.runs_a[0].name, "777");
  EXPECT_EQ(compare_runs(db, "1", "base").runs_a[0].name, "base");  // id 1
}

// 8. Task names that are paths, and run names with control characters, are refused; `runs` shows control
//    characters stored by an older version escaped.
TEST(Hardening, NamesAreChecked) {
  EXPECT_ERROR(load_task_spec(hdata("task_bad_name.json")), "task name \"../../x\" is not allowed");
  EXPECT_ERROR(load_task_spec(hdata("task_slash_name.json")), "task name \"sub/dir\" is not allowed");
  const std::string db = fresh_db("names");
  EXPECT_ERROR(store_run(db, "\x1b[31mred"), "contains a control character");
  EXPECT_ERROR(store_run(db, "two\nlines"), "contains a control character");
  {
    Store s(db);
    RunInfo r;
    r.name = "ok";
    r.task = "sub/dir";
    EXPECT_ERROR(s.open_run(r), "task name \"sub/dir\" is not allowed");
  }
  insert_raw_run(db, "\x1b[31mred\nx");
  CliResult r = run_cli("runs --db " + db);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\\x1b[31mred\\x0ax"), std::string::npos) << r.out;
}

// 9. An empty data file (plain or bzip2) is an error, not a stored run of 0 items.
TEST(Hardening, EmptyDataIsAnError) {
  EXPECT_ERROR(load_task(load_task_spec(hdata("task_empty.json"))), "empty.jsonl: no documents in the data of task");
  EXPECT_ERROR(load_task(load_task_spec(hdata("task_empty_bz2.json"))), "empty.jsonl.bz2: no documents");
  EvalOptions opt;
  opt.db = fresh_db("empty_data");
  opt.progress = false;
  const std::string& db = opt.db;
  EXPECT_ERROR(eval_run(stories(), test::stories_gguf(), hdata("task_empty.json"), opt), "no documents");
  EXPECT_FALSE(fs::exists(db));
}

// 10. Read commands open the store read-only: a mistyped --db is an error and creates nothing, and a database
//     on a read-only file system can be listed and compared.
TEST(Hardening, ReadCommandsOpenTheStoreReadOnly) {
  const std::string typo = fresh_db("typo");
  EXPECT_ERROR(list_runs(typo), "results database does not exist");
  EXPECT_ERROR(compare_runs(typo, "a", "b"), "does not exist");
  EXPECT_ERROR(export_lm_eval(typo, "a", test::scratch_dir() + "/x.jsonl"), "does not exist");
  EXPECT_ERROR(trust_report(typo, {"a"}), "does not exist");
  for (const char* cmd : {"runs", "compare a b", "trust-report a", "export a -o /dev/null"}) {
    CliResult r = run_cli(std::string(cmd) + " --db " + typo);
    EXPECT_EQ(r.status, 1) << cmd;
    EXPECT_NE(r.err.find("does not exist"), std::string::npos) << cmd << ": " << r.err;
  }
  EXPECT_FALSE(fs::exists(typo));

  // A read-only file system: a private mount namespace with a tmpfs remounted read-only (needs CAP_SYS_ADMIN).
  if (std::system("unshare -m true 2>/dev/null") != 0) GTEST_SKIP() << "unshare -m is not permitted here";
  const std::string dir = test::scratch_dir() + "/ro_mount";
  fs::create_directories(dir);
  const std::string samples = test::source_dir() + "/tests/data/lmeval/samples_arc_easy_2024-06-01T12-00-00.000001.jsonl";
  const std::string bin = ctrust_bin(), out = test::scratch_dir() + "/ro_out.txt";
  const std::string script =
      "set -e; mount -t tmpfs none " + dir + "; " + bin + " import-lm-eval " + samples +
      " --task arc_easy --name a --db " + dir + "/r.db >/dev/null; " + bin + " import-lm-eval " + samples +
      " --task arc_easy --name b --db " + dir + "/r.db >/dev/null; mount -o remount,ro " + dir + "; ! touch " +
      dir + "/probe 2>/dev/null; " + bin + " runs --db " + dir + "/r.db; " + bin + " compare a b --db " + dir +
      "/r.db";
  const int st = std::system(("unshare -m sh -c '" + script + "' > " + out + " 2>&1").c_str());
  std::ifstream in(out);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(st, 0) << text;
  EXPECT_NE(text.find("arc_easy"), std::string::npos) << text;
}

// 11. A byte-level BPE tokenizer without merges fails when the model is read (and so in `info`), not later.
TEST(Hardening, BpeWithoutMergesFailsAtLoad) {
  EXPECT_ERROR(load_model(hdata("bpe_no_merges.gguf")), "byte-level BPE tokenizer with no merges");
  CliResult r = run_cli("info " + hdata("bpe_no_merges.gguf"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no merges"), std::string::npos) << r.err;
}

// 12. An output path in a missing folder fails before any work; output files appear whole or not at all
//     (unnamed until committed: a process killed mid-write leaves no x.gguf.tmp behind).
TEST(Hardening, OutputFilesAreCheckedFirstAndAtomic) {
  EXPECT_ERROR(check_output_path("/nonexistent/dir/x.gguf"), "folder /nonexistent/dir does not exist");
  CliResult r = run_cli("compress -m " + test::stories_gguf() + " --method rtn --bits 4 -o /nonexistent/dir/x.gguf");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("folder /nonexistent/dir does not exist"), std::string::npos) << r.err;
  r = run_cli("convert -m " + test::stories_gguf() + " -o /nonexistent/dir/x.gguf");
  EXPECT_NE(r.err.find("folder /nonexistent/dir does not exist"), std::string::npos) << r.err;

  const std::string dir = test::scratch_dir() + "/atomic";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = dir + "/x.gguf";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // child: half-written file, then killed
    AtomicFile f(path);
    std::fputs("partial", f.fp());
    std::fflush(f.fp());
    ::kill(::getpid(), SIGKILL);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_TRUE(fs::is_empty(dir)) << fs::directory_iterator(dir)->path();
  {
    AtomicFile f(path);  // not committed: nothing appears
    std::fputs("abandoned", f.fp());
  }
  EXPECT_TRUE(fs::is_empty(dir));
  write_gguf(path, {{"general.name", GgufValue::str("x")}}, {});
  EXPECT_EQ(read_gguf(path).get_str("general.name"), "x");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

// 13. Items longer than the context are cut from the left as lm-evaluation-harness's _loglikelihood_tokens
//     does: the model sees the last n_ctx tokens of (context + continuation)[:-1]. Counted in the summary.
TEST(Hardening, LongItemsAreTruncatedLikeLmEval) {
  const Model& m = stories();
  const int n_ctx = 16;
  TaskItem it;
  it.task = "t";
  it.id = "0";
  it.contexts = {"Once upon a time there was a little girl named Lily. She liked to play outside in the park with"};
  it.choice_texts = {"her dog.", "a big red ball and her friends."};
  for (const auto& c : it.choice_texts) it.continuations.push_back(" " + c);
  it.gold = 0;
  // Reference: lm-eval's window, scored from scratch.
  std::vector<double> ref;
  for (size_t i = 0; i < 2; i++) {
    Request r = make_request(m.tok, it.contexts[0], it.continuations[i]);
    const int cont = int(r.tokens.size()) - r.ctx_len;
    ASSERT_GT(int(r.tokens.size()), n_ctx + 1);
    std::vector<int32_t> win(r.tokens.end() - (n_ctx + 1), r.tokens.end());  // [-(max_length + 1):]
    std::vector<float> lp = token_logprobs(m, win);
    double s = 0;
    for (int j = int(win.size()) - cont; j < int(win.size()); j++) s += lp[size_t(j - 1)];
    ref.push_back(s);
  }
  KVCache cache = make_cache(m, n_ctx);
  ItemScore a = score_item(m, cache, it);
  ItemScorer scorer(m, n_ctx);
  ItemScore b = scorer.score(it);
  for (size_t i = 0; i < 2; i++) {
    EXPECT_NEAR(a.ll[i], ref[i], 1e-4) << i;
    EXPECT_NEAR(b.ll[i], ref[i], 1e-4) << i;
  }
  EXPECT_GT(a.truncated, 0);
  EXPECT_EQ(a.cont_dropped, 0);
  EXPECT_EQ(a.extra().value("truncated", 0), a.truncated);

  // A continuation longer than the context (lm-eval asserts): its last n_ctx tokens are scored.
  TaskItem lng = it;
  lng.contexts = {"Once"};
  lng.continuations = {" upon a time there was a little girl named Lily. She liked to play outside in the park.",
                       " upon a time"};
  lng.choice_texts = {"x", "y"};
  ItemScore c = score_item(m, cache, lng);
  EXPECT_GT(c.cont_dropped, 0);
  EXPECT_EQ(c.n_tokens[0], n_ctx);

  // eval_run: the item is scored (it used to abort the run) and counted in the summary and the store.
  const std::string dir = test::scratch_dir() + "/long_task";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream d(dir + "/long.jsonl");
    d << R"({"q": "Once upon a time there was a little girl named Lily. She liked to play outside in the park with", "choices": ["her dog.", "a ball."], "gold": 0})"
      << "\n"
      << R"({"q": "Lily saw a cat.", "choices": ["It ran.", "It sat."], "gold": 1})" << "\n";
    std::ofstream(dir + "/long.json") << R"({"name": "long", "format": "jsonl", "data": "./long.jsonl",
      "prompt": "{{q}}", "choices": "{{choices}}", "gold": "gold"})";
  }
  EvalOptions opt;
  opt.db = fresh_db("long_items");
  opt.max_ctx = n_ctx;
  opt.progress = false;
  EvalResult res = eval_run(m, test::stories_gguf(), dir + "/long.json", opt);
  ASSERT_EQ(res.tasks.size(), 1u);
  EXPECT_EQ(res.tasks[0].n, 2);
  EXPECT_EQ(res.tasks[0].n_truncated, 1);
  EXPECT_EQ(res.tasks[0].to_json()["n_truncated"], 1);
  const auto items = Store(opt.db).items(res.run.id);
  EXPECT_GT(items[0].extra.value("truncated", 0), 0);
  EXPECT_FALSE(items[1].extra.contains("truncated"));
}

// 13 on the reported case: aidreams260K (context 128) on PIQA, whose long items used to abort the evaluation.
TEST(Hardening, Aidreams260KPiqaRunsToTheEnd) {
  const std::string model = test::shared_dir() + "/models/aidreams260K/aidreams260K.bin";
  const std::string tok = test::shared_dir() + "/models/aidreams260K/tok512_dreams.bin";
  if (!fs::exists(model) || !fs::exists(test::shared_dir() + "/data/piqa/piqa.jsonl")) GTEST_SKIP() << "no data";
  const std::string db = fresh_db("aidreams_piqa");
  // Item 6's solutions are longer than the whole context (it used to abort the run); item 0 only needs its
  // context cut.
  CliResult r = run_cli("eval -m " + model + " --tokenizer " + tok + " --tasks piqa --limit 8 --sample first --db " + db);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("truncated: 2 of 8 items are longer than the context of 128 tokens"), std::string::npos)
      << r.out;
  const auto items = Store(db).items(1);
  ASSERT_EQ(items.size(), 8u);
  EXPECT_GT(items[6].extra.value("cont_dropped", 0), 0);
  EXPECT_EQ(items[0].extra.value("cont_dropped", 0), 0);
  EXPECT_GT(items[0].extra.value("truncated", 0), 0);
}

// Found by fuzz_gguf (docs/robustness.md): a tensor with a zero dimension was dequantized into an empty vector
// (data() == nullptr) and memcpy got a null pointer (undefined behaviour; UBSan nonnull-attribute). The
// reproducer is the fuzzer's input; in the sanitizer build the old code aborts here.
TEST(Hardening, FuzzFindingEmptyTensorDequantize) {
  const GgufFile f = read_gguf(hdata("fuzz/gguf_empty_f32_tensor.gguf"));
  int empty = 0;
  for (const auto& t : f.tensors) {
    if (t.numel() != 0) continue;
    empty++;
    std::vector<float> out;  // out.data() is null
    EXPECT_NO_THROW(dequantize(t.type, t.data, out.data(), 0));
  }
  EXPECT_GT(empty, 0);
  EXPECT_NO_THROW(dequantize(GgmlType::F32, nullptr, nullptr, 0));
}
