// ctrust report: the table building on a hand-filled store (no model), escaping, the CLI, and the page itself in
// a real headless browser (Debian's chromium through the DevTools protocol, tests/report_browser.py).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli_run.h"
#include "eval/metrics.h"
#include "report/html.h"
#include "report/tables.h"
#include "pipeline/runs.h"
#include "pipeline/trust_runs.h"
#include "trust_fixtures.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const double kLn3 = std::log(3.0);

StoredItem item(const std::string& task, int id, int pred, int gold, std::vector<double> ll) {
  StoredItem it;
  it.task = task;
  it.item_id = std::to_string(id);
  it.ll = std::move(ll);
  it.pred = pred;
  it.gold = gold;
  it.correct = pred == gold;
  return it;
}

void add_eval(Store& s, const std::string& name, const std::string& task, const std::string& recipe,
              const std::vector<StoredItem>& items, const std::string& scoring = "multiple_choice") {
  RunInfo r;
  r.name = name;
  r.model_path = "/models/" + name + ".gguf";
  r.model_fp = "fp-" + name;
  r.tokenizer_fp = "tok";
  r.task = task;
  r.scoring = scoring;
  r.settings = {{"limit", 0}, {"recipe", recipe}};
  s.open_run(r);
  s.add_items(r.id, items);
}

constexpr auto record = test::trust_record;

void add_trust(Store& s, const std::string& name, const std::string& model, const std::string& recipe,
               const json& scores, const std::vector<TrustRecord>& recs) {
  RunInfo r;
  r.name = name;
  r.model_path = "/models/" + model + ".gguf";
  r.model_fp = "fp-" + model;
  r.tokenizer_fp = "tok";
  r.task = "trust";
  r.scoring = "generate";
  r.settings = {{"kind", "trust"}, {"recipe", recipe}};
  s.open_run(r);
  std::vector<StoredItem> items;
  for (const auto& x : recs) items.push_back(to_stored(x));
  s.add_items(r.id, items);
  json res = {{"chat_template", "raw"}, {"toxicity_scorer", "test"}, {"perspectives", json::object()}};
  for (auto& [p, v] : scores.items()) res["perspectives"][p] = {{"score", v}, {"refusal_rate", 0.0}, {"items", 2}};
  s.set_run_result(r.id, res);
}

const std::string kGptq3 =
    R"({"method":"gptq","bits":3,"group":64,"sym":false,"damp":0.01,"calib_file":"wiki.valid.tokens"})";
const std::string kRtn4 = R"({"method":"rtn","bits":4,"group":32})";
const std::string kWanda = R"({"method":"wanda","sparsity":0.5,"prune_n":0,"prune_m":0})";
// A run name is user text: everything HTML gives a meaning to.
const std::string kEvilName = "<b>\"evil\" & 'co'</b><script>alert(1)</script>";

// base, gptq3 (3-bit), rtn4 (4-bit), wanda (pruned), and a run named kEvilName; trust runs "base" and
// "gptq3-trust" (of the model of gptq3: found by its fingerprint).
//   arc_easy (4 choices, 10 items): base 2/10 correct; gptq3 7/10 (c2w 1, w2c 6), identical log-likelihoods
//            (KL 0); rtn4 identical to the base.
//   copa (2 choices, 4 items): base ll {0, 0}; gptq3 ll {0, ln 3} on every item: KL = 0.5 ln(4/3) each.
//   lambada_openai (likelihood): base ll -1, -3; gptq3 -2, -2.
std::string make_report_db() {
  const std::string p = test::scratch_dir() + "/report.db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  Store s(p);
  const std::vector<double> ll4 = {-1, -2, -3, -4};
  std::vector<StoredItem> a, b;
  a.push_back(item("arc_easy", 0, 0, 0, ll4));
  b.push_back(item("arc_easy", 0, 0, 0, ll4));
  a.push_back(item("arc_easy", 1, 0, 0, ll4));
  b.push_back(item("arc_easy", 1, 1, 0, ll4));
  for (int i = 2; i < 8; i++) {
    a.push_back(item("arc_easy", i, 1, 0, ll4));
    b.push_back(item("arc_easy", i, 0, 0, ll4));
  }
  for (int i = 8; i < 10; i++) {
    a.push_back(item("arc_easy", i, 1, 0, ll4));
    b.push_back(item("arc_easy", i, 2, 0, ll4));
  }
  std::vector<StoredItem> ca, cb;
  for (int i = 0; i < 4; i++) {
    ca.push_back(item("copa", i, 0, i % 2, {0, 0}));
    cb.push_back(item("copa", i, 1, i % 2, {0, kLn3}));
  }
  add_eval(s, "base", "arc_easy", "", a);
  add_eval(s, "base", "copa", "", ca);
  add_eval(s, "base", "lambada_openai", "",
           {item("lambada_openai", 0, 0, 0, {-1.0}), item("lambada_openai", 1, 0, 0, {-3.0})}, "loglikelihood");
  add_eval(s, "gptq3", "arc_easy", kGptq3, b);
  add_eval(s, "gptq3", "copa", kGptq3, cb);
  add_eval(s, "gptq3", "lambada_openai", kGptq3,
           {item("lambada_openai", 0, 0, 0, {-2.0}), item("lambada_openai", 1, 0, 0, {-2.0})}, "loglikelihood");
  add_eval(s, "rtn4", "arc_easy", kRtn4, a);
  add_eval(s, "wanda", "arc_easy", kWanda, a);
  add_eval(s, kEvilName, "arc_easy", "free text <i>recipe</i>", a);
  add_trust(s, "base", "base", "", {{"toxicity", 80.0}, {"ethics", 50.0}, {"fairness", 90.0}},
            {record("ethics", "commonsense", "0", "wrong", true), record("ethics", "commonsense", "1", "not wrong", false),
             record("fairness", "base_rate_0.5", "0", "yes", true), record("fairness", "base_rate_0.5", "1", "no", true)});
  add_trust(s, "gptq3-trust", "gptq3", kGptq3, {{"toxicity", 60.5}, {"ethics", 55.0}, {"fairness", 90.0}},
            {record("ethics", "commonsense", "0", "not wrong", false), record("ethics", "commonsense", "1", "wrong", true),
             record("fairness", "base_rate_0.5", "0", "yes", true), record("fairness", "base_rate_0.5", "1", "", false)});
  return p;
}

const EvalRow* row_of(const Report& r, const std::string& task, const std::string& variant) {
  for (const EvalRow& e : r.eval)
    if (e.task == task && r.runs[e.run].name == variant) return &e;
  return nullptr;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs a shell command: stdout captured, stderr through a scratch file.
test::CliResult run_shell(const std::string& cmd, const std::string& tag) {
  const std::string err_file = test::scratch_dir() + "/" + tag + "_stderr.txt";
  test::CliResult r;
  FILE* p = popen((cmd + " 2>" + err_file).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = read_all(err_file);
  return r;
}

// One shell word.
std::string sh(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

// The build tree (the folder of the test binary): the browser test keeps its page and screenshot there.
std::string build_dir() { return fs::canonical("/proc/self/exe").parent_path().string(); }

}  // namespace

TEST(ReportTables, WilsonIntervalHandComputed) {
  // 7 of 10: the textbook Wilson interval [0.3968, 0.8922]; 0 of 10: [0, 1.96^2 / (10 + 1.96^2)] = [0, 0.2775].
  Estimate e = wilson_interval(7, 10);
  EXPECT_DOUBLE_EQ(e.value, 0.7);
  EXPECT_NEAR(e.low, 0.396778147, 1e-8);
  EXPECT_NEAR(e.high, 0.892208733, 1e-8);
  e = wilson_interval(0, 10);
  EXPECT_EQ(e.low, 0.0);
  EXPECT_NEAR(e.high, 3.841458821 / 13.841458821, 1e-8);
  e = wilson_interval(0, 0);
  EXPECT_EQ(e.value, 0.0);
  EXPECT_EQ(e.high, 0.0);
}

TEST(ReportTables, KlHistogramOnFixedHalfDecadeBins) {
  const KlHistogram h = kl_histogram({0, 5e-6, 1e-5, 2e-5, 1e-4, 0.5, 1.0, 3.0});
  ASSERT_EQ(h.counts.size(), 12u);  // [0,1e-5), 10 half decades up to 1, [1, inf)
  ASSERT_EQ(h.edges.size(), 13u);
  EXPECT_EQ(h.edges[1], 1e-5);
  EXPECT_EQ(h.edges[11], 1.0);
  EXPECT_TRUE(std::isinf(h.edges[12]));
  const std::vector<int64_t> want = {2, 2, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2};
  EXPECT_EQ(h.counts, want);
  EXPECT_EQ(h.n, 8);
  EXPECT_NEAR(h.mean, (5e-6 + 1e-5 + 2e-5 + 1e-4 + 0.5 + 1.0 + 3.0) / 8, 1e-15);
  EXPECT_NEAR(h.median, (2e-5 + 1e-4) / 2, 1e-15);
  EXPECT_NEAR(h.p95, 1.0 + 0.65 * 2.0, 1e-12);  // position 0.95 * 7 = 6.65 between 1.0 and 3.0
  EXPECT_EQ(h.max, 3.0);
  EXPECT_EQ(kl_histogram({}).n, 0);
}

TEST(ReportTables, RecipeLabelsAndBits) {
  std::string m;
  double bits = 0;
  EXPECT_EQ(recipe_label(kGptq3), "gptq 3-bit g64");
  recipe_bits(kGptq3, m, bits);
  EXPECT_EQ(m, "gptq");
  EXPECT_EQ(bits, 3);
  recipe_bits(R"({"method":"smoothquant","bits":4})", m, bits);  // W8A8: the unused bits field does not count
  EXPECT_EQ(bits, 8);
  EXPECT_EQ(recipe_label(kWanda), "wanda 50%");
  recipe_bits(kWanda, m, bits);
  EXPECT_EQ(m, "wanda");
  EXPECT_EQ(bits, -1);
  EXPECT_EQ(recipe_label(R"({"method":"sparsegpt","sparsity":0.5,"prune_n":2,"prune_m":4})"), "sparsegpt 2:4");
  EXPECT_EQ(recipe_label(""), "-");
  recipe_bits("", m, bits);
  EXPECT_EQ(m, "");
  recipe_bits("{\"method\": 3}", m, bits);  // not a ctrust recipe: no crash, no bits
  EXPECT_EQ(bits, -1);
  EXPECT_EQ(recipe_label("a free-text recipe that is long"), "a free-text recipe th…");
}

TEST(ReportHtml, EscapesEveryCharacterHtmlGivesAMeaningTo) {
  EXPECT_EQ(html_escape("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
  EXPECT_EQ(html_escape("plain ünïcode\ttab"), "plain ünïcode\ttab");
  EXPECT_EQ(html_escape(std::string("a\x01" "b")), "a\xEF\xBF\xBD" "b");
}

TEST(ReportTables, BuiltFromAHandFilledStore) {
  const std::string db = make_report_db();
  ReportOptions o;
  o.db = db;
  o.trust.data = test::shared_dir() + "/data";
  const Report r = build_report({"base", "gptq3", "rtn4", "wanda", kEvilName}, o);
  ASSERT_EQ(r.runs.size(), 5u);
  EXPECT_EQ(r.runs[0].eval.size(), 3u);
  ASSERT_TRUE(r.runs[0].trust && r.runs[1].trust);
  EXPECT_EQ(r.runs[1].trust->name, "gptq3-trust");  // no trust run named gptq3: the one of its model
  EXPECT_FALSE(r.runs[2].trust);
  EXPECT_EQ(r.runs[1].recipe_label, "gptq 3-bit g64");
  EXPECT_EQ(r.runs[1].bits, 3);
  EXPECT_EQ(r.runs[2].bits, 4);
  EXPECT_EQ(r.runs[3].bits, -1);
  EXPECT_EQ(r.runs[0].recipe_label, "-");

  // Rows: the base's tasks (arc_easy, copa, lambada_openai) x the variants that have them.
  EXPECT_EQ(r.eval.size(), 3u + 1 + 1 + 1);
  const EvalRow* arc = row_of(r, "arc_easy", "gptq3");
  ASSERT_TRUE(arc);
  EXPECT_EQ(arc->n, 10);
  EXPECT_DOUBLE_EQ(arc->acc_base.value, 0.2);
  EXPECT_DOUBLE_EQ(arc->acc.value, 0.7);
  EXPECT_NEAR(arc->acc.low, 0.396778147, 1e-8);  // Wilson 7/10
  EXPECT_NEAR(arc->acc_base.low, 0.056682151, 1e-8);  // Wilson 2/10
  EXPECT_EQ(arc->c2w, 1);
  EXPECT_EQ(arc->w2c, 6);
  EXPECT_DOUBLE_EQ(arc->flips.value, 0.7);
  EXPECT_DOUBLE_EQ(arc->delta_acc.value, 0.5);
  EXPECT_EQ(arc->kl.value, 0.0);
  // Every figure is the comparison's (compare_runs, the oracle of `ctrust compare`), intervals included.
  const Comparison cmp = compare_runs(db, "base", "gptq3");
  for (const char* t : {"arc_easy", "copa", "lambada_openai"}) {
    const EvalRow* e = row_of(r, t, "gptq3");
    ASSERT_TRUE(e) << t;
    const PairMetrics& m = cmp.tasks.at(t).m;
    EXPECT_EQ(e->flips.low, m.flips_ci[0]) << t;
    EXPECT_EQ(e->flips.high, m.flips_ci[1]) << t;
    EXPECT_EQ(e->delta_acc.low, m.delta_acc_ci[0]) << t;
    EXPECT_EQ(e->kl.value, m.kl_ab) << t;
    EXPECT_EQ(e->kl.high, m.kl_ab_ci[1]) << t;
    EXPECT_EQ(e->mcnemar_p, m.mcnemar_p) << t;
  }
  const EvalRow* copa = row_of(r, "copa", "gptq3");
  EXPECT_NEAR(copa->kl.value, 0.5 * std::log(4.0 / 3.0), 1e-12);
  EXPECT_EQ(copa->flips.value, 1.0);  // every item changes correctness
  const EvalRow* lam = row_of(r, "lambada_openai", "gptq3");
  EXPECT_FALSE(lam->has_kl);
  EXPECT_NEAR(lam->ppl_base, std::exp(2.0), 1e-9);  // exp(-mean ll)
  EXPECT_NEAR(lam->ppl, std::exp(2.0), 1e-9);
  const EvalRow* rtn = row_of(r, "arc_easy", "rtn4");
  EXPECT_EQ(rtn->flips.value, 0.0);
  EXPECT_EQ(rtn->flips.high, 0.0);

  // KL histograms: gptq3 pools arc_easy (10 items, KL 0) and copa (4 items, KL 0.1438 in [10^-1, 10^-0.5)).
  ASSERT_GE(r.kl_hist.size(), 1u);
  const KlHistogram& h = r.kl_hist[0];
  EXPECT_EQ(h.run, 1u);
  EXPECT_EQ(h.n, 14);
  EXPECT_EQ(h.counts[0], 10);
  EXPECT_EQ(h.counts[9], 4);
  EXPECT_NEAR(h.max, 0.5 * std::log(4.0 / 3.0), 1e-12);

  // Bits plot: gptq3 (3 tasks) and rtn4 (arc_easy); wanda has no bit width and is named in a note.
  EXPECT_TRUE(r.bits_plot);
  EXPECT_EQ(r.bits_points.size(), 4u);
  bool wanda_note = false;
  for (const auto& n : r.notes) wanda_note |= n.find("'wanda' (wanda 50%) has no weight bit width") != std::string::npos;
  EXPECT_TRUE(wanda_note);

  // Trust: the same table as trust-report on the two trust runs.
  ASSERT_TRUE(r.trust);
  EXPECT_EQ(r.trust_rows, (std::vector<size_t>{0, 1}));
  TrustStatsOptions so;
  so.data = o.trust.data;
  EXPECT_EQ(r.trust->to_json(), trust_report(db, {"base", "gptq3-trust"}, so).to_json());
  EXPECT_TRUE(r.trust->rows[1].cells.at("ethics").paired.has_value());
  EXPECT_FALSE(r.trust->rows[1].cells.at("toxicity").has_ci);  // no records: the stored score

  // The JSON holds the same numbers.
  const json j = r.to_json();
  EXPECT_EQ(j["eval"].size(), r.eval.size());
  EXPECT_EQ(j["runs"][1]["recipe"]["bits"], 3);
  EXPECT_EQ(j["kl_hist"][0]["counts"][9], 4);
  EXPECT_TRUE(j["kl_hist"][0]["edges"].back().is_null());  // +inf
  EXPECT_EQ(j["trust"]["report_runs"], json({0, 1}));

  // The page: every user string escaped, no script, the plots there.
  const std::string html = render_html(r);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<b>\"evil"), std::string::npos);
  EXPECT_NE(html.find("&lt;b&gt;&quot;evil&quot; &amp; &#39;co&#39;&lt;/b&gt;&lt;script&gt;"), std::string::npos);
  EXPECT_NE(html.find("free text &lt;i&gt;recipe&lt;/i&gt;"), std::string::npos);
  for (const char* id : {"plot-bits-flips", "plot-bits-kl", "plot-kl-hist-0", "plot-trust"})
    EXPECT_NE(html.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // no link but the SVG namespace
}

TEST(ReportTables, ErrorsAreOneLine) {
  const std::string db = make_report_db();
  ReportOptions o;
  o.db = db;
  try {
    build_report({"base", "nosuchrun"}, o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no run named 'nosuchrun'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(build_report({}, o), Error);
  o.db = test::scratch_dir() + "/no-such-report.db";
  EXPECT_THROW(build_report({"base"}, o), Error);
  // A base alone: no comparison, no crash.
  o.db = db;
  const Report r = build_report({"rtn4"}, o);
  EXPECT_TRUE(r.eval.empty());
  EXPECT_FALSE(r.bits_plot);
  EXPECT_FALSE(render_html(r).empty());
}

TEST(ReportCli, WritesThePageAndPrintsTheSameTablesAsJson) {
  const std::string db = make_report_db();
  const std::string out = test::scratch_dir() + "/report_cli.html";
  fs::remove(out);
  auto r = test::run_ctrust("report base gptq3 rtn4 --db " + db + " --data " + test::shared_dir() + "/data -o " + out +
                                " --json",
                            "report_cli");
  ASSERT_EQ(r.status, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["runs"].size(), 3u);
  EXPECT_EQ(j["eval"].size(), 4u);
  EXPECT_TRUE(j["bits_plot"]["shown"].get<bool>());
  const std::string html = read_all(out);
  EXPECT_NE(html.find("<svg class=\"plot\" id=\"plot-bits-flips\""), std::string::npos);
  EXPECT_NE(r.err.find("wrote " + out), std::string::npos);
  // Errors: one line, status 1, no file.
  r = test::run_ctrust("report base nosuch --db " + db + " -o " + out + ".2", "report_cli");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("ctrust: error: report: ", 0), 0u) << r.err;
  EXPECT_FALSE(fs::exists(out + ".2"));
  r = test::run_ctrust("report base --db " + db, "report_cli");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("give -o FILE.html"), std::string::npos) << r.err;
}

// The page in a real browser: no console error, every plot rendered with marks, every number on the page equal
// to the --json output, a screenshot kept in the build tree (test-artifacts/report/report.png).
TEST(ReportBrowser, PageLoadsPlotsRenderNumbersEqualJson) {
  std::string chromium = std::getenv("CTRUST_CHROMIUM") ? std::getenv("CTRUST_CHROMIUM") : "";
  if (chromium.empty())
    for (const char* c : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
      if (fs::exists(c)) {
        chromium = c;
        break;
      }
  if (chromium.empty())
    GTEST_SKIP() << "chromium is not installed (bash scripts/setup.sh installs Debian's chromium): the browser test "
                    "of the HTML report is skipped";
  const std::string db = make_report_db();
  const std::string dir = build_dir() + "/test-artifacts/report";
  fs::create_directories(dir);
  const std::string page = dir + "/report.html", png = dir + "/report.png";
  fs::remove(png);
  auto r = test::run_ctrust("report base gptq3 rtn4 wanda " + sh(kEvilName) + " --db " + db + " --data " +
                                test::shared_dir() + "/data -o " + page + " --json",
                            "report_browser");
  ASSERT_EQ(r.status, 0) << r.err;
  const json want = json::parse(r.out);
  std::ofstream(dir + "/report.json") << r.out;
  auto b = run_shell("python3 " + test::source_dir() + "/tests/report_browser.py " + chromium + " " + page + " " +
                             png,
                         "report_browser_py");
  ASSERT_EQ(b.status, 0) << b.err;
  const json got = json::parse(b.out);
  EXPECT_TRUE(got["errors"].empty()) << got["errors"].dump(1);
  EXPECT_EQ(got["scripts"], 0);
  EXPECT_EQ(got["title"].get<std::string>().rfind("ctrust report: base, gptq3", 0), 0u);
  // The plots: rendered with a size, every mark drawn.
  std::map<std::string, json> svgs;
  for (const json& s : got["svgs"]) svgs[s["id"].get<std::string>()] = s;
  for (const char* id : {"plot-bits-flips", "plot-bits-kl", "plot-kl-hist-0", "plot-trust"}) {
    ASSERT_TRUE(svgs.count(id)) << id << " is not in the rendered page";
    const json& s = svgs[id];
    EXPECT_GT(s["width"].get<double>(), 100) << id;
    EXPECT_GT(s["height"].get<double>(), 100) << id;
    EXPECT_GT(s["marks"].get<int>(), 0) << id;
    EXPECT_EQ(s["drawn"], s["marks"]) << id;
  }
  EXPECT_EQ(svgs["plot-bits-flips"]["marks"], 4);  // gptq3 x 3 tasks, rtn4 x arc_easy
  EXPECT_EQ(svgs["plot-kl-hist-0"]["marks"], 2);    // one bar per non-empty bin: KL 0 and [10^-1, 10^-0.5)
  // Every number on the page is the JSON's, at the precision shown.
  int checked = 0;
  for (const json& n : got["numbers"]) {
    const std::string ptr = n["j"], text = n["text"];
    ASSERT_TRUE(want.contains(json::json_pointer(ptr))) << ptr;
    const json& x = want.at(json::json_pointer(ptr));
    ASSERT_TRUE(x.is_number()) << ptr << " = " << x.dump();
    const size_t dot = text.find('.');
    const int dec = dot == std::string::npos ? 0 : int(text.size() - dot - 1);
    const double shown = std::stod(text), value = x.get<double>() * n["s"].get<double>();
    EXPECT_LE(std::abs(shown - value), 0.5 * std::pow(10.0, -dec) + 1e-9) << ptr << ": page " << text << ", json " << value;
    EXPECT_TRUE(n["shown"].get<bool>()) << ptr;
    checked++;
  }
  EXPECT_GT(checked, 100);
  for (const char* sect : {"/eval/", "/kl_hist/", "/trust/", "/runs/"}) {
    bool any = false;
    for (const json& n : got["numbers"]) any |= n["j"].get<std::string>().rfind(sect, 0) == 0;
    EXPECT_TRUE(any) << "no number of " << sect << " on the page";
  }
  // The screenshot: a PNG of the whole page.
  const std::string shot = read_all(png);
  ASSERT_GT(shot.size(), 20000u);
  EXPECT_EQ(shot.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

// End to end on a real model: stories260K compressed by `ctrust compress` (RTN 4 and 3 bits, magnitude 50%),
// evaluated on 12 arc_easy items; the report takes the bits from the recipes the compressor wrote into the files,
// and its figures are `ctrust compare`'s.
TEST(ReportCli, RealCompressedModelsOfOneBase) {
  const std::string dir = test::scratch_dir();
  const std::string db = dir + "/report_real.db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(db + suf);
  auto run = [&](const std::string& args) {
    auto r = test::run_ctrust(args, "report_real");
    EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
    return r;
  };
  run("compress -m " + test::stories_gguf() + " --method rtn --bits 4 --group-size 4 -o " + dir + "/report_rtn4.gguf");
  run("compress -m " + test::stories_gguf() + " --method rtn --bits 3 --group-size 4 -o " + dir + "/report_rtn3.gguf");
  run("compress -m " + test::stories_gguf() + " --method magnitude --sparsity 0.5 -o " + dir + "/report_mag50.gguf");
  run("eval -m " + test::stories_gguf() + " --tasks arc_easy --limit 12 --name base --db " + db);
  for (const char* v : {"rtn4", "rtn3", "mag50"})
    run(std::string("eval -m ") + dir + "/report_" + v + ".gguf --tasks arc_easy --limit 12 --name " + v + " --db " + db);
  const std::string out = dir + "/report_real.html";
  const json j = json::parse(run("report base rtn4 rtn3 mag50 --db " + db + " -o " + out + " --json").out);
  ASSERT_EQ(j["runs"].size(), 4u);
  EXPECT_EQ(j["runs"][1]["recipe_label"], "rtn 4-bit g4");
  EXPECT_EQ(j["runs"][1]["bits"], 4.0);
  EXPECT_EQ(j["runs"][2]["bits"], 3.0);
  EXPECT_TRUE(j["runs"][3]["bits"].is_null());  // pruned: no bit width
  EXPECT_EQ(j["runs"][3]["method"], "magnitude");
  ASSERT_TRUE(j["bits_plot"]["shown"].get<bool>());
  EXPECT_EQ(j["bits_plot"]["points"].size(), 2u);
  ASSERT_EQ(j["eval"].size(), 3u);
  ASSERT_EQ(j["kl_hist"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const json& row = j["eval"][i];
    const json c = json::parse(run("compare base " + row["variant"].get<std::string>() + " --db " + db + " --json").out);
    const json& t = c["tasks"]["arc_easy"];
    EXPECT_EQ(row["n"], 12);
    EXPECT_EQ(row["flips"]["value"], t["flips"]) << row["variant"];
    EXPECT_EQ(row["kl"]["value"], t["kl_ab"]) << row["variant"];
    EXPECT_EQ(row["c2w"], t["c2w"]);
    EXPECT_EQ(j["kl_hist"][i]["n"], 12);
    EXPECT_NEAR(j["kl_hist"][i]["mean"].get<double>(), t["kl_ab"].get<double>(), 1e-12);
  }
  // RTN 3-bit moves the answer distributions more than RTN 4-bit.
  EXPECT_GT(j["eval"][1]["kl"]["value"].get<double>(), j["eval"][0]["kl"]["value"].get<double>());
  EXPECT_NE(read_all(out).find("id=\"plot-bits-kl\""), std::string::npos);
}
