// The command-line front end as a new user meets it (issue 16): generate's output and --chat, thread settings
// that do not spin-wait, compare's legend and p-values, runs showing the recipe, compress's wording of zeros,
// checks before the model loads, Ctrl-C that says what is saved and resumes, trust's denominators and AVG.
// Everything runs the real `ctrust` binary on stories260K (SmolLM2 where the chat template matters).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/wait_policy.h"
#include "model/model.h"
#include "pipeline/runs.h"
#include "store/store.h"
#include "cli_run.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using test::ctrust_bin;
using Cli = test::CliResult;

Cli run(const std::string& args, const std::string& env_prefix = "", bool merge = false) {
  return test::run_ctrust(args, "cli", env_prefix, merge);
}

std::string fresh_db(const std::string& name) {
  const std::string p = test::scratch_dir() + "/" + name + ".db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  return p;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// The generated text ends with a newline before the statistics, also when both streams share one pipe.
TEST(Cli, GenerateEndsTheTextBeforeItsStatistics) {
  Cli r = run("generate -m " + test::stories_gguf() + " -n 12", "", true);
  ASSERT_EQ(r.status, 0) << r.out;
  const size_t stats = r.out.find("[12 tokens in ");
  ASSERT_NE(stats, std::string::npos) << r.out;
  ASSERT_GT(stats, 0u);
  EXPECT_EQ(r.out[stats - 1], '\n') << r.out;
  // stdout alone ends with the newline too.
  Cli s = run("generate -m " + test::stories_gguf() + " -n 12");
  ASSERT_EQ(s.status, 0);
  ASSERT_FALSE(s.out.empty());
  EXPECT_EQ(s.out.back(), '\n');
}

// --chat renders the prompt in the model's own chat template (SmolLM2: ChatML, detected from its metadata),
// stops at the end of the assistant turn and does not print the end-of-turn marker.
TEST(Cli, GenerateChatUsesSmolLM2sOwnTemplate) {
  if (!fs::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched (scripts/setup.sh)";
  // --compute f32: the exact dequantized arithmetic. In the native mode (8-bit activations) the greedy answer of
  // this small model depends on the CPU's kernel (AVX-512 VNNI: "...Paris."; AVX2 on an AMD Zen 3: "L'Etoile, la
  // Cite, ..."), and what this test checks is the chat template, not the kernels (QMatmul.* test those).
  Cli j = run("generate -m " + test::smollm_q4_1() + " --chat -p \"What is the capital of France?\" -n 24 --compute f32 --json");
  ASSERT_EQ(j.status, 0) << j.err;
  const json o = json::parse(j.out);
  EXPECT_EQ(o["chat_template"], "chatml");
  const std::string text = o["text"];
  EXPECT_FALSE(contains(text, "<|im_end|>")) << text;
  EXPECT_FALSE(contains(text, "<|im_start|>")) << text;
  EXPECT_TRUE(contains(text, "Paris")) << text;  // the instruction-tuned answer, not a continuation of the text
  Cli t = run("generate -m " + test::smollm_q4_1() + " --chat -p \"What is the capital of France?\" -n 24 --compute f32");
  ASSERT_EQ(t.status, 0);
  EXPECT_FALSE(contains(t.out, "<|im_end|>")) << t.out;
  EXPECT_TRUE(contains(t.out, "Paris")) << t.out;
  // An unknown template name is an error before the model loads.
  Cli bad = run("generate -m /nonexistent.gguf --chat-template nope -p x");
  EXPECT_NE(bad.status, 0);
  EXPECT_TRUE(contains(bad.err, "nope")) << bad.err;
}

// Without a user choice the OpenMP threads sleep when idle (OMP_WAIT_POLICY=passive, set before libgomp loads by
// re-executing); a policy the user sets is kept.
// Without a policy from the user, ctrust picks one from the load (base/wait_policy.h) and reports it: exactly one
// of the two variables is set, and it is the one choose_wait_policy gives for a load on one side of the threshold.
TEST(Cli, DefaultThreadsChooseTheirWaitPolicy) {
  Cli d = run("generate -m " + test::stories_gguf() + " -n 2 -t 2 --json", "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT");
  ASSERT_EQ(d.status, 0) << d.err;
  const json j = json::parse(d.out);
  EXPECT_EQ(j["threads"], 2);
  const bool passive = j["omp_wait_policy"] == "passive", spin = j["gomp_spincount"] == "30000";
  EXPECT_TRUE(passive != spin) << j.dump();
  EXPECT_EQ(j["omp_wait_policy"] == "" || passive, true) << j.dump();
  EXPECT_EQ(j["gomp_spincount"] == "" || spin, true) << j.dump();
  Cli u = run("generate -m " + test::stories_gguf() + " -n 2 --json", "env OMP_WAIT_POLICY=active");
  ASSERT_EQ(u.status, 0) << u.err;
  EXPECT_EQ(json::parse(u.out)["omp_wait_policy"], "active");
  EXPECT_EQ(json::parse(u.out)["gomp_spincount"], "");
  Cli s = run("generate -m " + test::stories_gguf() + " -n 2 --json", "env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=123");
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_EQ(json::parse(s.out)["gomp_spincount"], "123");  // the user's choice is kept
  EXPECT_EQ(json::parse(s.out)["omp_wait_policy"], "");
}

// Hand cases of the rule: spin only below a quarter of the CPUs' worth of load; unknown load or CPUs = busy.
TEST(WaitPolicy, SpinsOnlyOnANearlyIdleMachine) {
  auto is_spin = [](double load, int n) {
    ctrust::WaitChoice w = ctrust::choose_wait_policy(load, n);
    return std::string(w.var) == "GOMP_SPINCOUNT" && std::string(w.value) == "30000";
  };
  auto is_passive = [](double load, int n) {
    ctrust::WaitChoice w = ctrust::choose_wait_policy(load, n);
    return std::string(w.var) == "OMP_WAIT_POLICY" && std::string(w.value) == "passive";
  };
  EXPECT_TRUE(is_spin(0.0, 2));
  EXPECT_TRUE(is_spin(0.49, 2));
  EXPECT_TRUE(is_passive(0.5, 2));   // 0.25 * 2
  EXPECT_TRUE(is_passive(4.7, 2));   // e.g. three SCHED_IDLE fuzzers: counted as load
  EXPECT_TRUE(is_spin(1.9, 8));
  EXPECT_TRUE(is_passive(2.0, 8));
  EXPECT_TRUE(is_passive(-1, 2));    // /proc/loadavg unreadable
  EXPECT_TRUE(is_passive(0.0, 0));   // CPU count unknown
  EXPECT_GT(ctrust::usable_cpus(), 0);
  EXPECT_GE(ctrust::read_load1(), 0.0);
}

// compare explains its columns and prints p-values with a fixed number of decimals; runs shows the recipe of a
// model written by ctrust compress; compress calls a quantizer's zeros "rounded to zero", a pruner's "sparsity".
TEST(Cli, CompareRunsAndCompressExplainThemselves) {
  const std::string db = fresh_db("cli_explain");
  const std::string rtn = test::scratch_dir() + "/cli_rtn4.gguf";
  Cli c = run("compress -m " + test::stories_gguf() + " --method rtn --bits 4 --group-size 32 --skip ffn_down -o " + rtn);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_TRUE(contains(c.out, "of the weights rounded to zero (quantization, not pruning)")) << c.out;
  EXPECT_FALSE(contains(c.out, "; sparsity")) << c.out;
  Cli p = run("compress -m " + test::stories_gguf() + " --method magnitude --sparsity 0.5 -o " +
              test::scratch_dir() + "/cli_mag50.gguf");
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_TRUE(contains(p.out, "sparsity 50.00% (weights pruned)")) << p.out;

  ASSERT_EQ(run("eval -m " + test::stories_gguf() + " --tasks arc_easy --limit 12 --name base --db " + db).status, 0);
  ASSERT_EQ(run("eval -m " + rtn + " --tasks arc_easy --limit 12 --name rtn4 --db " + db).status, 0);
  Cli cmp = run("compare base rtn4 --db " + db);
  ASSERT_EQ(cmp.status, 0) << cmp.err;
  EXPECT_TRUE(contains(cmp.out, "McNemar p")) << cmp.out;
  EXPECT_TRUE(contains(cmp.out, "c2w / w2c: items correct in A and wrong in B")) << cmp.out;
  EXPECT_TRUE(contains(cmp.out, "allfl%:")) << cmp.out;
  EXPECT_TRUE(contains(cmp.out, "KL(A‖B): mean KL divergence")) << cmp.out;
  // The recipe differs (base vs compressed) but the task settings do not: no note about settings.
  EXPECT_FALSE(contains(cmp.out, "different task settings")) << cmp.out;
  // The p-value column: four decimals (1.0000, 0.5000, 0.0391), never "1" or "0.5".
  Cli self = run("compare base base --db " + db);
  ASSERT_EQ(self.status, 0);
  EXPECT_TRUE(contains(self.out, " 1.0000\n")) << self.out;

  Cli runs = run("runs --db " + db);
  ASSERT_EQ(runs.status, 0) << runs.err;
  EXPECT_TRUE(contains(runs.out, "recipe")) << runs.out;
  EXPECT_TRUE(contains(runs.out, "rtn 4-bit g32")) << runs.out;
  const json rj = json::parse(run("runs --db " + db + " --json").out);
  ASSERT_EQ(rj["runs"].size(), 2u);
  EXPECT_EQ(rj["runs"][0]["settings"]["recipe"], "");  // the downloaded file has none
  const json recipe = json::parse(rj["runs"][1]["settings"]["recipe"].get<std::string>());
  EXPECT_EQ(recipe["method"], "rtn");
  EXPECT_EQ(recipe["bits"], 4);
}

// A wrong task name, an unwritable database or output folder are reported before the model is loaded: the model path here is
// not a model at all, so an error about it would mean it was read first.
TEST(Cli, EvalChecksTasksAndDatabaseBeforeTheModel) {
  const std::string not_model = test::scratch_dir() + "/cli_not_a_model.gguf";
  std::ofstream(not_model) << "not a model";
  Cli t = run("eval -m " + not_model + " --tasks arc_easy,arc_eazy --db " + fresh_db("cli_checks"));
  EXPECT_EQ(t.status, 1);
  EXPECT_TRUE(contains(t.err, "ctrust: error: ")) << t.err;
  EXPECT_TRUE(contains(t.err, "arc_eazy")) << t.err;
  Cli d = run("eval -m " + not_model + " --tasks arc_easy --db /nonexistent-dir/x.db");
  EXPECT_EQ(d.status, 1);
  EXPECT_TRUE(contains(d.err, "/nonexistent-dir/x.db")) << d.err;
  Cli m = run("eval -m /nonexistent-model.gguf --tasks arc_easy --db " + fresh_db("cli_checks2"));
  EXPECT_EQ(m.status, 1);
  EXPECT_TRUE(contains(m.err, "model not found")) << m.err;
  // An output file in a folder that does not exist: compress and convert say so before reading the model.
  Cli co = run("compress -m " + not_model + " --method rtn --bits 4 -o /nonexistent-dir/x.gguf");
  EXPECT_EQ(co.status, 1);
  EXPECT_TRUE(contains(co.err, "folder /nonexistent-dir does not exist")) << co.err;
  Cli cv = run("convert -m " + not_model + " --type f32 -o /nonexistent-dir/x.gguf");
  EXPECT_EQ(cv.status, 1);
  EXPECT_TRUE(contains(cv.err, "folder /nonexistent-dir does not exist")) << cv.err;
  Cli tr = run("trust -m " + not_model + " --perspectives fairness --db /nonexistent-dir/x.db");
  EXPECT_EQ(tr.status, 1);
  EXPECT_TRUE(contains(tr.err, "/nonexistent-dir/x.db")) << tr.err;
}

// The first item of a run is stored at once (the batch starts at one item and grows), not after a batch of 16.
TEST(Cli, EvalCommitsTheFirstItemAtOnce) {
  auto m = open_model(test::stories_gguf());
  EvalOptions opt;
  opt.db = fresh_db("cli_first_commit");
  opt.limit = 40;
  opt.progress = false;
  std::vector<int64_t> commits;
  opt.on_commit = [&](int64_t done, int64_t) { commits.push_back(done); };
  EvalResult r = eval_run(*m, test::stories_gguf(), "arc_easy", opt);
  ASSERT_FALSE(commits.empty());
  EXPECT_EQ(commits.front(), 1);
  EXPECT_EQ(commits.back(), 40);
  EXPECT_EQ(r.n_scored, 40);
  for (size_t i = 1; i < commits.size(); ++i) EXPECT_LE(commits[i] - commits[i - 1], opt.batch);
}

// Ctrl-C during eval: the command stops at its next commit, says how many items are saved and that the same
// command resumes, and exits with 130; the same command then resumes from the stored items.
TEST(Cli, CtrlCSaysWhatIsSavedAndTheSameCommandResumes) {
  const std::string db = fresh_db("cli_sigint");
  const std::string err_file = test::scratch_dir() + "/cli_sigint_stderr.txt";
  const std::string args = "eval -m " + test::stories_gguf() + " --tasks hellaswag --limit 150 --name s --db " + db;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FILE* e = std::freopen(err_file.c_str(), "w", stderr);
    (void)e;
    execl("/bin/sh", "sh", "-c", ("exec " + ctrust_bin() + " " + args + " >/dev/null").c_str(), (char*)nullptr);
    _exit(127);
  }
  // Wait for the first stored item, then Ctrl-C.
  bool started = false;
  for (int i = 0; i < 600 && !started; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (fs::exists(db)) {
      try {
        Store s(db);
        for (const RunInfo& r : s.list_runs()) started = started || r.n_items > 0;
      } catch (...) {
      }
    }
  }
  ASSERT_TRUE(started) << "no item stored within 60 s";
  kill(pid, SIGINT);
  int st = 0;
  waitpid(pid, &st, 0);
  std::ifstream ef(err_file);
  const std::string err((std::istreambuf_iterator<char>(ef)), {});
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) GTEST_SKIP() << "the run finished before Ctrl-C arrived";
  ASSERT_TRUE(WIFEXITED(st)) << "killed by the signal instead of stopping";
  EXPECT_EQ(WEXITSTATUS(st), 130);
  EXPECT_TRUE(contains(err, "interrupted: ")) << err;
  EXPECT_TRUE(contains(err, "of 150 items of task hellaswag are saved in " + db)) << err;
  EXPECT_TRUE(contains(err, "the same command resumes")) << err;
  int64_t saved = 0;
  {
    Store s(db);
    ASSERT_EQ(s.list_runs().size(), 1u);
    saved = s.list_runs()[0].n_items;
  }
  EXPECT_GT(saved, 0);
  EXPECT_LT(saved, 150);
  Cli again = run(args + " --json");
  ASSERT_EQ(again.status, 0) << again.err;
  const json j = json::parse(again.out)["runs"][0];
  EXPECT_EQ(j["n_skipped"], saved);
  EXPECT_EQ(j["n_scored"], 150 - saved);
}

// Progress lines reach stderr also when it is not a terminal (a pipe or a log file).
TEST(Cli, ProgressLinesWhenStderrIsNotATerminal) {
  Cli r = run("perplexity -m " + test::stories_gguf() + " -f " + test::shared_dir() +
              "/data/wikitext-2-raw/wiki.test.raw --ctx 128 --chunks 3");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "[3/3] ppl ")) << r.err;
  EXPECT_FALSE(contains(r.err, "\r")) << "no carriage returns in a log";
}

// ctrust trust says what its refusal rate and answers count; trust-report's AVG says how many perspectives it
// averages; compare on trust runs counts refusals apart from parsed-answer flips.
TEST(Cli, TrustOutputStatesItsDenominators) {
  const std::string db = fresh_db("cli_trust_words");
  const std::string common = "trust -m " + test::stories_gguf() +
                             " --perspectives fairness,ethics --limit 2 --max-new-tokens 4 --db " + db;
  Cli a = run(common + " --name a");
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_TRUE(contains(a.out, "refusal%: answers that refused or gave no usable answer")) << a.out;
  EXPECT_TRUE(contains(a.out, "answers")) << a.out;
  Cli rep = run("trust-report a --db " + db);
  ASSERT_EQ(rep.status, 0) << rep.err;
  EXPECT_TRUE(contains(rep.out, "[2/8]")) << rep.out;
  EXPECT_TRUE(contains(rep.out, "AVG: mean of the perspectives the run scored")) << rep.out;
  Cli cmp = run("compare a a --db " + db);
  ASSERT_EQ(cmp.status, 0) << cmp.err;
  EXPECT_TRUE(contains(cmp.out, "0 item(s) refused in one run only")) << cmp.out;
  EXPECT_TRUE(contains(cmp.out, "refA% / refB%: refusal rates")) << cmp.out;
  EXPECT_EQ(json::parse(run("compare a a --db " + db + " --json").out)["refusal_changes"], 0);
}
