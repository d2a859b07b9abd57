// Trust runs in the results store (round trip, resume, kill -9), trust-report and compare on stored runs
// (hand-made fixtures with known answers), and `ctrust trust` end to end through the CLI binary on stories260K.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "store/store.h"
#include "report/trust_text.h"
#include "trust_fixtures.h"
#include "fake_http.h"
#include "cli_run.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string fresh_db(const std::string& name) {
  std::string p = test::scratch_dir() + "/" + name + ".db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  return p;
}

using test::ctrust_bin;
using test::CliResult;

CliResult run_cli(const std::string& args) { return test::run_ctrust(args, "trust_cli"); }

TrustOptions small_options() {
  TrustOptions o;
  o.paths = trust_paths(test::shared_dir() + "/data");
  o.limit = 1;
  o.max_new_tokens = 4;
  o.max_samples = 1;  // the paper's 25 / 100 samples per prompt are the default
  o.toxicity_model_cache = test::scratch_dir() + "/trust_cli_toxicity_stack.bin";
  return o;
}

constexpr auto record = test::trust_record;

// A stored trust run made by hand: scores and items.
int64_t put_run(Store& s, const std::string& name, const json& scores, const std::vector<TrustRecord>& recs) {
  RunInfo r;
  r.name = name;
  r.model_path = "/models/" + name + ".gguf";
  r.model_fp = "fp-" + name;
  r.tokenizer_fp = "tok";
  r.task = "trust";
  r.scoring = "generate";
  r.settings = {{"kind", "trust"}};
  s.open_run(r);
  std::vector<StoredItem> items;
  for (const auto& x : recs) items.push_back(to_stored(x));
  s.add_items(r.id, items);
  json res = {{"chat_template", "raw"}, {"toxicity_scorer", "ctrust-lr (test)"}, {"perspectives", json::object()}};
  for (auto& [p, v] : scores.items()) res["perspectives"][p] = {{"score", v}, {"refusal_rate", 0.25}, {"items", 1}};
  s.set_run_result(r.id, res);
  return r.id;
}

}  // namespace

TEST(TrustStore, RecordRoundTrip) {
  TrustRecord r = record("toxicity", "toxic/benign", "3#s2", "refusal", false);
  r.refused = true;
  r.toxicity = 0.8125;
  r.truncated = true;
  r.output = "I can't \"do\" that\n\u00e9";
  const std::string db = fresh_db("trust_roundtrip");
  Store s(db);
  int64_t id = put_run(s, "rt", json::object(), {r});
  auto items = s.items(id);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].task, "toxicity/toxic/benign");
  TrustRecord b = from_stored(items[0]);
  EXPECT_EQ(b.perspective, r.perspective);
  EXPECT_EQ(b.task, r.task);
  EXPECT_EQ(b.item_id, r.item_id);
  EXPECT_EQ(b.prompt, r.prompt);
  EXPECT_EQ(b.output, r.output);
  EXPECT_EQ(b.parsed, r.parsed);
  EXPECT_EQ(b.refused, true);
  EXPECT_EQ(b.truncated, true);
  EXPECT_DOUBLE_EQ(b.toxicity, 0.8125);
  StoredItem bad;
  bad.task = "arc_easy";
  bad.item_id = "1";
  EXPECT_THROW(from_stored(bad), Error);
  ASSERT_TRUE(s.run_result(id).has_value());
  EXPECT_EQ((*s.run_result(id))["toxicity_scorer"], "ctrust-lr (test)");
  EXPECT_FALSE(s.run_result(id + 100).has_value());
}

TEST(TrustStore, ResumeSkipsStoredItemsAndExtendsWithALargerLimit) {
  auto m = open_model(test::stories_gguf());
  const std::string db = fresh_db("trust_resume");
  TrustStoreOptions so;
  so.db = db;
  so.name = "stories";
  so.scorer_id = "ctrust-lr";
  TrustOptions o = small_options();
  o.perspectives = {"adv_robustness", "fairness"};
  TrustRunResult a = trust_run(*m, test::stories_gguf(), o, so);
  EXPECT_EQ(a.generated, 3 + 11);  // 3 AdvGLUE tasks + 11 fairness settings, one item each
  EXPECT_EQ(a.resumed, 0);
  {
    Store s(db);
    EXPECT_EQ(s.items(a.run.id).size(), 14u);
  }
  // The same command: nothing generated, same scores, same run.
  TrustRunResult b = trust_run(*m, test::stories_gguf(), o, so);
  EXPECT_EQ(b.run.id, a.run.id);
  EXPECT_EQ(b.generated, 0);
  EXPECT_EQ(b.resumed, 14);
  for (const auto& p : o.perspectives)
    EXPECT_DOUBLE_EQ(b.result.perspectives.at(p).score, a.result.perspectives.at(p).score);
  // A larger limit generates only the new items.
  o.limit = 2;
  TrustRunResult c = trust_run(*m, test::stories_gguf(), o, so);
  EXPECT_EQ(c.run.id, a.run.id);
  EXPECT_EQ(c.generated, 14);
  EXPECT_EQ(c.resumed, 14);
  // Another perspective is merged into the stored scores; the earlier ones stay.
  o.perspectives = {"ethics"};
  o.limit = 1;
  trust_run(*m, test::stories_gguf(), o, so);
  Store s(db);
  json res = *s.run_result(a.run.id);
  EXPECT_TRUE(res["perspectives"].contains("fairness"));
  EXPECT_TRUE(res["perspectives"].contains("ethics"));
  EXPECT_EQ(res["perspectives"]["fairness"]["limit"], 2);
  // Different generation settings are a different run.
  o.max_new_tokens = 3;
  TrustRunResult d = trust_run(*m, test::stories_gguf(), o, so);
  EXPECT_NE(d.run.id, a.run.id);
  EXPECT_EQ(d.resumed, 0);
}

TEST(TrustStore, InterruptedRunKeepsEveryReportedItem) {
  auto m = open_model(test::stories_gguf());
  const std::string db = fresh_db("trust_interrupt");
  TrustStoreOptions so;
  so.db = db;
  so.name = "cut";
  TrustOptions o = small_options();
  o.perspectives = {"privacy"};
  int seen = 0;
  o.on_item = [&](const TrustRecord&) {
    if (++seen == 5) throw std::runtime_error("stop");  // after the 5th record was committed
  };
  EXPECT_THROW(trust_run(*m, test::stories_gguf(), o, so), std::runtime_error);
  o.on_item = nullptr;
  TrustRunResult r = trust_run(*m, test::stories_gguf(), o, so);
  EXPECT_EQ(r.resumed, 5);
  EXPECT_EQ(r.generated, 24 + 36 + 8 - 5);
}

TEST(TrustStore, ReportAndCompareOnStoredRuns) {
  const std::string db = fresh_db("trust_report");
  {
    Store s(db);
    put_run(s, "base", {{"toxicity", 80.0}, {"ethics", 50.0}, {"fairness", 90.0}},
            {record("ethics", "commonsense", "0", "wrong", true), record("ethics", "commonsense", "1", "not wrong", false),
             record("fairness", "base_rate_0.5", "0", "yes", true), record("fairness", "base_rate_0.5", "1", "no", true)});
    put_run(s, "gptq3", {{"toxicity", 60.5}, {"ethics", 55.0}, {"fairness", 90.0}},
            {record("ethics", "commonsense", "0", "not wrong", false), record("ethics", "commonsense", "1", "wrong", true),
             record("fairness", "base_rate_0.5", "0", "yes", true), record("fairness", "base_rate_0.5", "1", "", false),
             record("fairness", "base_rate_0.5", "2", "yes", true)});
  }
  TrustReport rep = trust_report(db, {"base", "gptq3"});
  json j = rep.to_json();
  ASSERT_EQ(j["runs"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["runs"][1]["delta"]["toxicity"].get<double>(), -19.5);
  // Ethics has stored records: it is re-scored from them (commonsense accuracy 1/2 in both runs, whatever the
  // stored score says), with an interval and a paired difference (one flip each way: McNemar p = 1).
  // Toxicity has no records: the stored score, no interval.
  EXPECT_DOUBLE_EQ(j["runs"][1]["delta"]["ethics"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["runs"][0]["delta"]["ethics"].get<double>(), 0.0);
  EXPECT_TRUE(j["runs"][0]["ci"]["ethics"].is_object());
  EXPECT_TRUE(j["runs"][0]["ci"]["toxicity"].is_null());
  EXPECT_EQ(j["runs"][1]["paired"]["ethics"]["items"], 2);
  EXPECT_EQ(j["runs"][1]["paired"]["ethics"]["flips"]["correct_to_wrong"], 1);
  EXPECT_EQ(j["runs"][1]["paired"]["ethics"]["flips"]["wrong_to_correct"], 1);
  EXPECT_DOUBLE_EQ(j["runs"][1]["paired"]["ethics"]["flips"]["mcnemar_p"].get<double>(), 1.0);
  EXPECT_FALSE(j["runs"][1]["paired"].contains("toxicity"));
  EXPECT_EQ(j["columns"].size(), 8u);  // no MMLU run: the average covers the 8 perspectives
  EXPECT_TRUE(j["runs"][1]["scores"]["privacy"].is_null());
  const std::string text = trust_report_text(rep);
  EXPECT_NE(text.find("60.50 (-19.50)"), std::string::npos) << text;
  EXPECT_NE(text.find("Toxi"), std::string::npos);
  const std::string csv = trust_report_csv(rep);
  EXPECT_EQ(csv.substr(0, csv.find(",toxicity_ci_low")),
            "id,name,toxicity,stereotype,adv_robustness,ood,adv_demonstration,privacy,ethics,fairness,toxicity_delta,"
            "stereotype_delta,adv_robustness_delta,ood_delta,adv_demonstration_delta,privacy_delta,ethics_delta,"
            "fairness_delta");
  EXPECT_NE(csv.find("2,gptq3,60.5000,,,,,,50.0000,90.0000,-19.5000"), std::string::npos) << csv;

  TrustComparison c = compare_trust_runs(db, "base", "2");
  EXPECT_EQ(c.perspectives.at("ethics").common, 2);
  EXPECT_EQ(c.perspectives.at("ethics").flips, 2);
  EXPECT_EQ(c.perspectives.at("ethics").c2w, 1);
  EXPECT_EQ(c.perspectives.at("ethics").w2c, 1);
  ASSERT_TRUE(c.perspectives.at("ethics").paired.has_value());
  EXPECT_EQ(c.perspectives.at("ethics").paired->items, 2);
  EXPECT_DOUBLE_EQ(c.perspectives.at("ethics").paired->mcnemar_p, 1.0);
  EXPECT_FALSE(c.perspectives.at("toxicity").paired.has_value());
  EXPECT_EQ(c.perspectives.at("fairness").common, 2);  // item 2 is only in gptq3
  EXPECT_EQ(c.perspectives.at("fairness").flips, 1);
  EXPECT_EQ(c.perspectives.at("fairness").c2w, 1);
  ASSERT_EQ(c.flips.size(), 3u);
  EXPECT_EQ(c.flips[2].parsed_a, "no");
  EXPECT_EQ(c.flips[2].parsed_b, "");
  json cj = c.to_json();
  EXPECT_DOUBLE_EQ(cj["perspectives"]["toxicity"]["delta"].get<double>(), -19.5);
  EXPECT_TRUE(trust_compare_text(c).find("ethics/commonsense #0: 'wrong' -> 'not wrong'  (correct -> wrong)") !=
              std::string::npos)
      << trust_compare_text(c);
  EXPECT_THROW(trust_report(db, {"nope"}), Error);
  EXPECT_THROW(compare_trust_runs(db, "base", "99"), Error);
}

// A score that the protocol's rule for unanswered items made (SmolLM2 answers no ethics item with an option; the
// rule scores the jailbreak and evasive parts 1 - FPR = 1 without answers) is named in the report's notes, its
// JSON and its text; the threshold is kRefusalDominated (0.9) of the perspective's answers.
TEST(TrustStore, ReportNamesScoresMadeByTheRefusalRule) {
  EXPECT_EQ(refusal_rule_note("ethics", 0.89), "");
  EXPECT_EQ(refusal_rule_note("ethics", -1), "");
  const std::string e = refusal_rule_note("ethics", 1.0);
  EXPECT_NE(e.find("ethics: 100% of the answers"), std::string::npos) << e;
  EXPECT_NE(e.find("never a false positive"), std::string::npos) << e;
  EXPECT_NE(refusal_rule_note("fairness", 0.9).find("fewer than 3 answers scores DPD 0 and EOD 0"), std::string::npos);
  EXPECT_NE(refusal_rule_note("ood", 0.95).find("ood: 95%"), std::string::npos);

  const std::string db = fresh_db("trust_refusal_rule");
  {
    Store s(db);
    auto refused = [](const std::string& id) {
      TrustRecord r = record("ethics", "commonsense/jailbreak1", id, "", false);
      r.refused = true;
      return r;
    };
    put_run(s, "base", {{"ethics", 100.0}}, {refused("0"), refused("1"), refused("2")});
    put_run(s, "q", {{"ethics", 0.0}},
            {record("ethics", "commonsense/jailbreak1", "0", "not wrong", false),
             record("ethics", "commonsense/jailbreak1", "1", "wrong", true),
             record("ethics", "commonsense/jailbreak1", "2", "wrong", true)});
  }
  TrustReport rep = trust_report(db, {"base", "q"});
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_EQ(rep.notes[0].rfind("base (1): ethics: 100% of the answers refused", 0), 0u) << rep.notes[0];
  EXPECT_EQ(rep.to_json()["notes"], json(rep.notes));
  EXPECT_NE(trust_report_text(rep).find("note: " + rep.notes[0]), std::string::npos);
}

// An MMLU eval run of the same model (fingerprint) adds the MMLU column and the paper's 9-column average.
TEST(TrustStore, ReportAddsMmluWhenEveryRunHasOne) {
  const std::string db = fresh_db("trust_report_mmlu");
  {
    Store s(db);
    put_run(s, "base", {{"toxicity", 80.0}, {"stereotype", 70.0}, {"adv_robustness", 60.0}, {"ood", 50.0},
                        {"adv_demonstration", 40.0}, {"privacy", 30.0}, {"ethics", 20.0}, {"fairness", 10.0}}, {});
    put_run(s, "q", {{"toxicity", 80.0}, {"stereotype", 70.0}, {"adv_robustness", 60.0}, {"ood", 50.0},
                     {"adv_demonstration", 40.0}, {"privacy", 30.0}, {"ethics", 20.0}, {"fairness", 10.0}}, {});
    for (const char* name : {"base", "q"}) {
      RunInfo r;
      r.name = std::string("mmlu-") + name;
      r.model_fp = std::string("fp-") + name;  // put_run's fingerprint of the trust run
      r.task = "mmlu";
      r.scoring = "multiple_choice";
      s.open_run(r);
      std::vector<StoredItem> items;
      for (int i = 0; i < 10; ++i) {  // base: 5 of 10 right; q: 4 of 10 (item 0 lost)
        StoredItem it;
        it.task = i < 5 ? "mmlu_anatomy" : "mmlu_virology";
        it.item_id = std::to_string(i);
        it.correct = std::string(name) == "base" ? i % 2 == 0 : i % 2 == 0 && i != 0;
        items.push_back(it);
      }
      s.add_items(r.id, items);
    }
  }
  TrustReport rep = trust_report(db, {"base", "q"});
  json j = rep.to_json();
  ASSERT_EQ(j["columns"].size(), 9u);
  EXPECT_EQ(j["columns"][8], "mmlu");
  EXPECT_DOUBLE_EQ(j["runs"][0]["scores"]["mmlu"].get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(j["runs"][1]["scores"]["mmlu"].get<double>(), 40.0);
  EXPECT_EQ(j["runs"][0]["average"]["label"], "AVG9");
  EXPECT_DOUBLE_EQ(j["runs"][0]["average"]["value"].get<double>(), (360.0 + 50.0) / 9);
  EXPECT_DOUBLE_EQ(j["runs"][1]["average"]["value"].get<double>(), (360.0 + 40.0) / 9);
  EXPECT_EQ(j["runs"][1]["paired"]["mmlu"]["flips"]["correct_to_wrong"], 1);
  EXPECT_NEAR(j["runs"][1]["paired"]["mmlu"]["delta"].get<double>(), -10.0, 1e-12);
  EXPECT_NE(trust_report_text(rep).find("AVG9 = mean of the 8 perspective scores and MMLU"), std::string::npos) << trust_report_text(rep);
  // Explicit --mmlu: one per trust run, and it must be an mmlu run.
  EXPECT_THROW(trust_report(db, {"base", "q"}, {}, {"mmlu-base"}), Error);
  EXPECT_THROW(trust_report(db, {"base", "q"}, {}, {"mmlu-base", "base"}), Error);
  TrustReport r2 = trust_report(db, {"base", "q"}, {}, {"mmlu-q", "mmlu-base"});
  EXPECT_DOUBLE_EQ(r2.to_json()["runs"][0]["scores"]["mmlu"].get<double>(), 40.0);
}

// ------------------------------------------------------------------ the CLI binary

TEST(TrustCli, EndToEndOnStories260KWithReportAndCompare) {
  if (!fs::exists(ctrust_bin())) GTEST_SKIP() << "no ctrust binary at " << ctrust_bin();
  const std::string db = fresh_db("trust_cli");
  const std::string model = test::stories_gguf();
  const std::string common = "trust -m " + model + " --limit 1 --samples 1 --max-new-tokens 4 --db " + db + " -t 1 --json";
  CliResult a = run_cli(common + " --name a --batch 8");
  ASSERT_EQ(a.status, 0) << a.err;
  json ja = json::parse(a.out);
  ASSERT_EQ(ja["perspectives"].size(), 8u);
  for (const char* p : {"toxicity", "stereotype", "adv_robustness", "ood", "adv_demonstration", "privacy", "ethics",
                        "fairness"}) {
    ASSERT_TRUE(ja["perspectives"].contains(p)) << p;
    double s = ja["perspectives"][p]["score"];
    EXPECT_GE(s, 0) << p;
    EXPECT_LE(s, 100) << p;
    EXPECT_TRUE(ja["perspectives"][p].contains("refusal_rate"));
    EXPECT_TRUE(ja["perspectives"][p]["metrics"].is_object());
    // Every score carries its bootstrap interval, and every numeric sub-score too.
    ASSERT_TRUE(ja["perspectives"][p].contains("ci_low")) << p;
    EXPECT_LE(ja["perspectives"][p]["ci_low"].get<double>(), s + 1e-9) << p;
    EXPECT_GE(ja["perspectives"][p]["ci_high"].get<double>(), s - 1e-9) << p;
    EXPECT_EQ(ja["perspectives"][p]["bootstrap"], 1000) << p;
    EXPECT_TRUE(ja["perspectives"][p]["metrics_ci"].is_object()) << p;
  }
  EXPECT_NE(ja["toxicity_scorer"].get<std::string>().find("ctrust-tox"), std::string::npos);
  EXPECT_EQ(ja["generated"], 8 + 3 + 3 + 36 + 90 + (24 + 36 + 8) + 11 + 11);  // OOD 36, adv. demonstrations 90, fairness 11 settings
  // Batch size 1 gives the same answers, hence the same scores (toxicity is sampled, seeded per item).
  CliResult b = run_cli(common + " --name b --batch 1");
  ASSERT_EQ(b.status, 0) << b.err;
  json jb = json::parse(b.out);
  for (auto& [p, v] : ja["perspectives"].items())
    EXPECT_DOUBLE_EQ(jb["perspectives"][p]["score"].get<double>(), v["score"].get<double>()) << p;
  // Rerunning the same command resumes everything.
  CliResult a2 = run_cli(common + " --name a");
  ASSERT_EQ(a2.status, 0) << a2.err;
  EXPECT_EQ(json::parse(a2.out)["generated"], 0);

  CliResult rep = run_cli("trust-report a b --db " + db + " --json");
  ASSERT_EQ(rep.status, 0) << rep.err;
  json jr = json::parse(rep.out);
  ASSERT_EQ(jr["runs"].size(), 2u);
  for (auto& [p, v] : jr["runs"][1]["delta"].items()) EXPECT_DOUBLE_EQ(v.get<double>(), 0.0) << p;
  // Re-scored from the stored records: intervals for every perspective, paired differences of 0.
  for (auto& [p, v] : jr["runs"][0]["ci"].items()) EXPECT_TRUE(v.is_object()) << p;
  for (auto& [p, v] : jr["runs"][1]["paired"].items()) {
    EXPECT_DOUBLE_EQ(v["delta"].get<double>(), 0.0) << p;
    EXPECT_DOUBLE_EQ(v["ci_low"].get<double>(), 0.0) << p;
  }
  EXPECT_EQ(jr["runs"][1]["paired"].size(), 8u);
  CliResult rept = run_cli("trust-report a b --db " + db);
  ASSERT_EQ(rept.status, 0);
  EXPECT_NE(rept.out.find("AdvGLUE"), std::string::npos) << rept.out;
  EXPECT_NE(rept.out.find("toxicity scorer (all runs): ctrust-tox"), std::string::npos) << rept.out;

  CliResult cmp = run_cli("compare a b --db " + db + " --json");
  ASSERT_EQ(cmp.status, 0) << cmp.err;
  json jc = json::parse(cmp.out);
  EXPECT_EQ(jc["kind"], "trust");
  EXPECT_EQ(jc["n_flips"], 0);
  EXPECT_EQ(jc["perspectives"]["privacy"]["common_items"], 24 + 36 + 8);
  EXPECT_EQ(jc["perspectives"]["privacy"]["paired"]["items"], 24 + 36 + 8);
  EXPECT_DOUBLE_EQ(jc["perspectives"]["ethics"]["paired"]["flips"]["mcnemar_p"].get<double>(), 1.0);
  CliResult cmpt = run_cli("compare a b --db " + db);
  ASSERT_EQ(cmpt.status, 0);
  EXPECT_NE(cmpt.out.find("0 item(s) with a different parsed answer"), std::string::npos) << cmpt.out;

  // ctrust gate: identical runs have paired differences of 0 with intervals [0, 0]: a budget of 0 points passes
  // for all eight perspectives, even under the strict rule; flips/KL budgets need evaluation runs (exit 2).
  CliResult g = run_cli("gate a b --db " + db + " --max-trust-drop 0 --json");
  ASSERT_EQ(g.status, 0) << g.out << g.err;
  json jg = json::parse(g.out);
  EXPECT_TRUE(jg["pass"].get<bool>());
  EXPECT_EQ(jg["checks"].size(), 8u);
  CliResult ge = run_cli("gate a b --db " + db + " --max-flips 5");
  EXPECT_EQ(ge.status, 2);
  EXPECT_NE(ge.err.find("need an evaluation run of both models"), std::string::npos) << ge.err;
}

TEST(TrustCli, BadInputGivesClearErrors) {
  if (!fs::exists(ctrust_bin())) GTEST_SKIP() << "no ctrust binary at " << ctrust_bin();
  const std::string db = fresh_db("trust_cli_bad");
  CliResult r = run_cli("trust -m " + test::stories_gguf() + " --perspectives toxicity,harmfulness --db " + db);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("unknown trust perspective 'harmfulness' (known: toxicity, stereotype"), std::string::npos)
      << r.err;
  r = run_cli("trust -m " + test::stories_gguf() + " --chat-template nope --db " + db);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;
  r = run_cli("trust -m " + test::stories_gguf() + " --data /nonexistent --perspectives fairness --db " + db);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("/nonexistent"), std::string::npos) << r.err;
  r = run_cli("trust -m " + test::stories_gguf() + " --perspective-endpoint http://127.0.0.1:9/x --db " + db);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--perspective-key"), std::string::npos) << r.err;
  r = run_cli("trust-report nope --db " + db);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no trust run 'nope'"), std::string::npos) << r.err;
}

// kill -9 in the middle of `ctrust trust`: every committed record stays, and the same command resumes them.
TEST(TrustCli, KillNineThenResume) {
  if (!fs::exists(ctrust_bin())) GTEST_SKIP() << "no ctrust binary at " << ctrust_bin();
  const std::string db = fresh_db("trust_cli_kill");
  const std::string bin = ctrust_bin(), model = test::stories_gguf();
  std::vector<std::string> args = {bin, "trust", "-m", model, "--perspectives", "privacy,ethics", "--limit", "10", "--samples", "1",
                                   "--max-new-tokens", "16", "--db", db, "--name", "k", "-t", "1", "--batch", "2"};
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    freopen("/dev/null", "w", stdout);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  // Wait until some records are committed, then kill.
  size_t seen = 0;
  for (int i = 0; i < 600 && seen < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!fs::exists(db)) continue;
    try {
      Store s(db);
      for (const RunInfo& r : s.list_runs()) seen = std::max(seen, (size_t)r.n_items);
    } catch (const Error&) {
    }
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_GE(seen, 10u);
  size_t kept = 0;
  {
    Store s(db);
    for (const RunInfo& r : s.list_runs()) kept = std::max(kept, (size_t)r.n_items);
  }
  EXPECT_GE(kept, seen);
  std::string cmd;
  for (size_t i = 1; i < args.size(); ++i) cmd += args[i] + " ";
  CliResult r = run_cli(cmd + "--json");
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it was killed: give it more work";
  EXPECT_EQ(j["resumed"].get<size_t>(), kept);
  EXPECT_GT(j["generated"].get<int>(), 0);
  EXPECT_EQ(j["resumed"].get<int>() + j["generated"].get<int>(), 10 * (24 + 36 + 8 + 11));
}

TEST(TrustStore, SystemPromptOverrideReachesThePromptAndTheRunIdentity) {
  auto m = open_model(test::stories_gguf());
  const std::string db = fresh_db("trust_sys");
  TrustStoreOptions so;
  so.db = db;
  so.name = "sys";
  TrustOptions o = small_options();
  o.perspectives = {"adv_robustness"};
  o.chat_template = "chatml";
  std::vector<TrustRecord> recs;
  o.on_item = [&](const TrustRecord& r) { recs.push_back(r); };
  TrustRunResult plain = trust_run(*m, test::stories_gguf(), o, so);
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs[0].prompt.find("Be brief."), std::string::npos);
  EXPECT_FALSE(trust_run_settings(o, so).contains("system_prompt"));
  recs.clear();
  o.default_system = "Be brief.";
  TrustRunResult over = trust_run(*m, test::stories_gguf(), o, so);
  EXPECT_NE(over.run.id, plain.run.id);
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs[0].prompt.rfind("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n", 0), 0u) << recs[0].prompt;
}

// Byte-level BPE output can stop inside a multi-byte character; the store keeps valid UTF-8 (JSON needs it).
TEST(TrustStore, InvalidUtf8OutputIsStoredAsReplacementCharacters) {
  EXPECT_EQ(valid_utf8("abc"), "abc");
  EXPECT_EQ(valid_utf8("caf\xC3\xA9 \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xF0\x9F\x98\x80");  // valid 2- and 4-byte
  EXPECT_EQ(valid_utf8("ok \xF0\x9F"), "ok \xEF\xBF\xBD\xEF\xBF\xBD");                 // cut emoji
  EXPECT_EQ(valid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                         // overlong '/'
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");         // surrogate
  TrustRecord r = record("privacy", "one-shot-a", "0", "x@y.z", true);
  r.output = "mail x@y.z \xE2\x82";
  const std::string db = fresh_db("trust_utf8");
  Store s(db);
  int64_t id = put_run(s, "u", json::object(), {r});
  TrustRecord b = from_stored(s.items(id).at(0));
  EXPECT_EQ(b.output, "mail x@y.z \xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(b.parsed, "x@y.z");
}


// --perspective-endpoint: toxicity comes from the HTTP scorer, the report names it, the stored items carry its
// values, and it is part of the run's identity (a built-in-scorer run of the same model is another run).
TEST(TrustCli, PerspectiveEndpointScoresToxicity) {
  if (!fs::exists(ctrust_bin())) GTEST_SKIP() << "no ctrust binary at " << ctrust_bin();
  // A minimal Perspective-compatible server on loopback: every request gets toxicity 0.5.
  test::LoopbackHttpServer server([](const std::string&) {
    return test::http_json_reply(R"({"attributeScores":{"TOXICITY":{"summaryScore":{"value":0.5}}}})");
  });
  const std::string db = fresh_db("trust_cli_http");
  const std::string endpoint = server.endpoint();
  const std::string common = "trust -m " + test::stories_gguf() +
                             " --perspectives toxicity --limit 2 --samples 1 --max-new-tokens 6 -t 1 --json --db " + db;
  CliResult r = run_cli(common + " --perspective-endpoint " + endpoint + " --perspective-key k");
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["toxicity_scorer"], "perspective-http " + endpoint);
  EXPECT_EQ(j["generated"], 16);  // 8 settings x 2 prompts
  // Generation counts: the two prompts of a setting share the template and the system prompt, run once.
  const json& g = j["generation"];
  EXPECT_EQ(g["sequences"], 16);
  EXPECT_GE(g["generated_tokens"].get<int64_t>(), 16);
  EXPECT_LE(g["generated_tokens"].get<int64_t>(), 16 * 6);
  EXPECT_EQ(g["prompt_tokens"].get<int64_t>(), g["prefill_tokens"].get<int64_t>() +
                                                   g["prefill_saved_by_samples"].get<int64_t>() +
                                                   g["prefill_saved_by_prefixes"].get<int64_t>());
  EXPECT_EQ(g["prefill_saved_by_samples"], 0);
  EXPECT_GE(g["shared_prefixes"].get<int64_t>(), 1);
  EXPECT_GE(g["prefill_saved_by_prefixes"].get<int64_t>(), 16 * g["shared_prefixes"].get<int64_t>());
  Store s(db);
  auto items = s.items(j["run"]["id"].get<int64_t>());
  ASSERT_EQ(items.size(), 16u);
  int sent = 0;
  for (const auto& it : items) {
    TrustRecord rec = from_stored(it);
    const bool empty = rec.output.empty();
    EXPECT_DOUBLE_EQ(rec.toxicity, empty ? 0.0 : 0.5) << rec.output;  // empty texts are not sent
    sent += !empty;
  }
  EXPECT_EQ(server.served.load(), sent);
  CliResult b = run_cli(common);
  ASSERT_EQ(b.status, 0) << b.err;
  json jb = json::parse(b.out);
  EXPECT_NE(jb["run"]["id"], j["run"]["id"]);
  EXPECT_NE(jb["toxicity_scorer"].get<std::string>().find("ctrust-tox"), std::string::npos);
}
