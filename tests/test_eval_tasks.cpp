#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "base/error.h"
#include "eval/task.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string scratch(const std::string& name) {
  auto d = fs::path(test::scratch_dir()) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

}  // namespace

TEST(EvalTasks, CsvParserRfc4180) {
  std::vector<int> lines;
  auto rows = parse_csv("a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\n\"multi\nline\",2,3\n", "t.csv", &lines);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1], (std::vector<std::string>{"x, y", "say \"hi\"", ""}));
  EXPECT_EQ(rows[2], (std::vector<std::string>{"multi\nline", "2", "3"}));
  EXPECT_EQ(lines, (std::vector<int>{1, 2, 3}));
  EXPECT_NE(error_of([] { parse_csv("a,b\n\"open,2\n", "t.csv"); }).find("t.csv:2: unterminated"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_csv("a,b\nx\"y,2\n", "t.csv"); }).find("t.csv:2:"), std::string::npos);
}

TEST(EvalTasks, TemplateRendering) {
  nlohmann::json doc = {{"q", "  Why?\n"}, {"n", 3}};
  EXPECT_EQ(render_template("Q: {{ q|strip }} ({{n}})", doc, "x"), "Q: Why? (3)");
  EXPECT_NE(error_of([&] { render_template("{{nope}}", doc, "f:1"); }).find("f:1: template field 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { render_template("{{q|upper}}", doc, "f:1"); }).find("unknown template filter"),
            std::string::npos);
}

TEST(EvalTasks, BuiltinArcAndPiqaPrompts) {
  TaskData arc = load_task(load_task_spec("arc_easy"));
  ASSERT_EQ(arc.items.size(), 2376u);
  const TaskItem& a = arc.items[0];
  EXPECT_EQ(a.task, "arc_easy");
  EXPECT_EQ(a.id, "0");
  ASSERT_EQ(a.contexts.size(), 1u);
  EXPECT_EQ(a.contexts[0],
            "Question: Which statement best explains why photosynthesis is the foundation of most food webs?"
            "\nAnswer:");
  ASSERT_EQ(a.continuations.size(), 4u);
  EXPECT_EQ(a.continuations[0], " Sunlight is the source of energy for nearly all ecosystems.");
  EXPECT_EQ(a.choice_texts[3], "The producers in all ecosystems are plants.");
  EXPECT_EQ(a.gold, 0);
  EXPECT_EQ(arc.items[1].gold, 1);
  EXPECT_EQ(load_task(load_task_spec("arc_challenge")).items.size(), 1172u);

  TaskData piqa = load_task(load_task_spec("piqa"), 3, LimitMode::First);
  ASSERT_EQ(piqa.items.size(), 3u);
  EXPECT_EQ(piqa.items[0].contexts[0], "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  EXPECT_EQ(piqa.items[1].gold, 1);
}

TEST(EvalTasks, BuiltinMmluZeroAndFiveShot) {
  TaskSpec spec = load_task_spec("mmlu");
  TaskData all = load_task(spec);
  EXPECT_EQ(all.items.size(), 14042u);
  std::set<std::string> subs;
  for (const auto& it : all.items) subs.insert(it.task);
  EXPECT_EQ(subs.size(), 57u);
  EXPECT_TRUE(subs.count("mmlu_abstract_algebra"));
  spec.num_fewshot = 5;
  TaskData five = load_task(spec, 1, LimitMode::First);
  ASSERT_EQ(five.items.size(), 57u);
  const TaskItem& it = five.items[0];
  EXPECT_EQ(it.task, "mmlu_abstract_algebra");
  const std::string& c = it.contexts[0];
  const std::string head =
      "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
      "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n";
  EXPECT_EQ(c.substr(0, head.size()), head);
  EXPECT_EQ(c.size() - c.rfind("\nAnswer:"), 8u);  // ends with the question's "Answer:"
  size_t shots = 0;
  for (size_t p = c.find("Answer:"); p != std::string::npos; p = c.find("Answer:", p + 1)) shots++;
  EXPECT_EQ(shots, 6u);
  EXPECT_EQ(it.continuations, (std::vector<std::string>{" A", " B", " C", " D"}));
  EXPECT_EQ(it.choice_texts, (std::vector<std::string>{"A", "B", "C", "D"}));
}

TEST(EvalTasks, BuiltinHellaswagWinograndeLambadaTruthful) {
  TaskData hs = load_task(load_task_spec("hellaswag"));
  ASSERT_EQ(hs.items.size(), 10042u);
  EXPECT_EQ(hs.items[0].contexts[0], "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(hs.items[0].continuations[3], " starts pulling up roofing on a roof.");
  EXPECT_EQ(hs.items[0].gold, 3);

  TaskData wg = load_task(load_task_spec("winogrande"), 2, LimitMode::First);
  ASSERT_EQ(wg.items.size(), 2u);
  ASSERT_EQ(wg.items[0].contexts.size(), 2u);
  EXPECT_EQ(wg.items[0].contexts[1], "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(wg.items[0].continuations[0], " always got the easier cases.");
  EXPECT_EQ(wg.items[0].gold, 1);

  TaskData lb = load_task(load_task_spec("lambada_openai"));
  ASSERT_EQ(lb.items.size(), 5153u);
  EXPECT_EQ(lb.items[0].continuations, (std::vector<std::string>{" signs"}));

  TaskData tq = load_task(load_task_spec("truthfulqa_mc"));
  ASSERT_EQ(tq.items.size(), 817u);
  const TaskItem& t = tq.items[0];
  EXPECT_EQ(t.continuations[0], " The watermelon seeds pass through your digestive system");
  EXPECT_EQ(t.continuations[1], " You grow watermelons in your stomach");
  EXPECT_EQ(t.continuations.size(), 8u);  // best + 7 incorrect
  EXPECT_EQ(t.contexts[0].substr(0, 57), "Q: What is human life expectancy in the United States?\nA:");
  EXPECT_EQ(t.contexts[0].substr(t.contexts[0].size() - 54),
            "Q: What happens to you if you eat watermelon seeds?\nA:");
  TaskData tq2 = load_task(load_task_spec("truthfulqa_mc2"), 1, LimitMode::First);
  EXPECT_EQ(tq2.items[0].n_true, 5);
  EXPECT_EQ(tq2.items[0].continuations.size(), 12u);

  TaskData wt = load_task(load_task_spec("wikitext2"));
  EXPECT_EQ(wt.text.size(), 1290590u);
  EXPECT_TRUE(wt.items.empty());
}

TEST(EvalTasks, NewTaskIsOneDeclarationFile) {
  const std::string dir = scratch("newtask");
  write(dir + "/colors.jsonl",
        "{\"q\": \"The sky is\", \"opts\": [\"blue\", \"green\"], \"ans\": \"blue\"}\n"
        "\n"
        "{\"q\": \"Grass is\", \"opts\": [\"blue\", \"green\"], \"ans\": \"green\"}\n");
  write(dir + "/colors.json", R"({"name": "colors", "format": "jsonl", "data": "./colors.jsonl",
    "source": "hand-written", "prompt": "Q: {{q}}\nA:", "choices": "{{opts}}", "gold": "ans",
    "gold_labels": ["blue", "green"], "num_fewshot": 1})");
  setenv("CTRUST_TASKS", dir.c_str(), 1);
  auto names = known_tasks();
  TaskSpec spec = load_task_spec("colors");
  unsetenv("CTRUST_TASKS");
  EXPECT_NE(std::find(names.begin(), names.end(), "colors"), names.end());
  TaskData td = load_task(spec);
  ASSERT_EQ(td.items.size(), 2u);
  EXPECT_EQ(td.items[0].contexts[0], "Q: Grass is\nA: green\n\nQ: The sky is\nA:");
  EXPECT_EQ(td.items[1].contexts[0], "Q: The sky is\nA: blue\n\nQ: Grass is\nA:");
  EXPECT_EQ(td.items[1].gold, 1);
}

TEST(EvalTasks, ClearErrors) {
  std::string e = error_of([] { load_task_spec("no_such_task"); });
  EXPECT_NE(e.find("unknown task 'no_such_task'; known tasks: "), std::string::npos) << e;
  EXPECT_NE(e.find("arc_easy"), std::string::npos) << e;
  EXPECT_NE(e.find("hellaswag"), std::string::npos) << e;

  const std::string dir = scratch("badtask");
  write(dir + "/t.json", R"({"format": "jsonl", "data": "./d.jsonl", "source": "made by the test",
    "prompt": "{{q}}", "choices": "{{c}}", "gold": "g"})");
  e = error_of([&] { load_task(load_task_spec(dir + "/t.json")); });
  EXPECT_NE(e.find(dir + "/d.jsonl"), std::string::npos) << e;
  EXPECT_NE(e.find("made by the test"), std::string::npos) << e;

  write(dir + "/d.jsonl", "{\"q\": \"a\", \"c\": [\"x\", \"y\"], \"g\": 0}\n{\"q\": \"b\", \"c\": [\"x\"],\n");
  e = error_of([&] { load_task(load_task_spec(dir + "/t.json")); });
  EXPECT_NE(e.find(dir + "/d.jsonl:2: not valid JSON"), std::string::npos) << e;
  write(dir + "/d.jsonl", "{\"q\": \"a\", \"c\": [\"x\", \"y\"], \"g\": 0}\n{\"q\": \"b\", \"c\": [\"x\"], \"g\": 3}\n");
  e = error_of([&] { load_task(load_task_spec(dir + "/t.json")); });
  EXPECT_NE(e.find(dir + "/d.jsonl:2: gold 3 out of range"), std::string::npos) << e;
  write(dir + "/d.jsonl", "{\"q\": \"a\", \"c\": [\"x\", \"y\"]}\n");
  e = error_of([&] { load_task(load_task_spec(dir + "/t.json")); });
  EXPECT_NE(e.find(dir + "/d.jsonl:1: gold field 'g' is missing"), std::string::npos) << e;

  write(dir + "/c.json", R"({"format": "csv", "data": "./c.csv", "prompt": "{{q}}", "choices": ["{{a}}", "{{b}}"],
    "gold": "g"})");
  write(dir + "/c.csv", "q,a,b,g\nx,1,2,0\ny,1,2\n");
  e = error_of([&] { load_task(load_task_spec(dir + "/c.json")); });
  EXPECT_NE(e.find(dir + "/c.csv:3: 3 fields, the header has 4"), std::string::npos) << e;

  write(dir + "/h.json", R"({"format": "hellaswag", "data": "./h.txt", "prompt": "{{ctx}}", "choices": "{{endings}}",
    "gold": "label"})");
  write(dir + "/h.txt", "ctx\n7\na\nb\nc\nd\n");
  e = error_of([&] { load_task(load_task_spec(dir + "/h.json")); });
  EXPECT_NE(e.find(dir + "/h.txt:2: gold label must be 0..3"), std::string::npos) << e;

  write(dir + "/k.json", R"({"format": "jsonl", "data": "x", "prompt": "p", "choices": "c", "colour": 1})");
  e = error_of([&] { load_task_spec(dir + "/k.json"); });
  EXPECT_NE(e.find(dir + "/k.json: unknown key \"colour\""), std::string::npos) << e;
  write(dir + "/k.json", "{not json");
  e = error_of([&] { load_task_spec(dir + "/k.json"); });
  EXPECT_NE(e.find(dir + "/k.json: not valid JSON"), std::string::npos) << e;
}

// --limit's default: a seeded sample stratified by the gold answer, nested, one seed per subtask; `first` = lm-eval.
TEST(EvalTasks, LimitDrawsASeededStratifiedNestedSample) {
  const TaskSpec arc = load_task_spec("arc_easy");
  const TaskData all = load_task(arc);
  const TaskData s40 = load_task(arc, 40), s20 = load_task(arc, 20), again = load_task(arc, 40);
  ASSERT_EQ(s40.items.size(), 40u);
  ASSERT_EQ(s20.items.size(), 20u);
  std::set<std::string> ids40, ids20;
  for (const auto& it : s40.items) ids40.insert(it.id);
  for (const auto& it : s20.items) ids20.insert(it.id);
  for (const auto& id : ids20) EXPECT_TRUE(ids40.count(id)) << "not nested: " << id;
  for (size_t i = 0; i < 40; i++) EXPECT_EQ(again.items[i].id, s40.items[i].id);  // seeded: the same draw
  size_t first_ids = 0, max_id = 0;
  for (const auto& it : s40.items) {
    const size_t id = std::stoul(it.id);
    first_ids += id < 40;
    max_id = std::max(max_id, id);
    // An item of the sample is the same item as in the full task (same prompt, same gold).
    EXPECT_EQ(it.contexts, all.items[id].contexts);
    EXPECT_EQ(it.gold, all.items[id].gold);
  }
  EXPECT_LT(first_ids, 10u);     // not the first 40: a uniform draw of 40 of 2376 has ~0.7 ids below 40
  EXPECT_GT(max_id, 1000u);
  // Stratified: each gold answer's share is its share of the task, to within one item (Sainte-Lague rounding).
  std::map<int, size_t> pop, got;
  for (const auto& it : all.items) pop[it.gold]++;
  for (const auto& it : s40.items) got[it.gold]++;
  for (const auto& [g, n] : pop) EXPECT_NEAR(double(got[g]), 40.0 * double(n) / double(all.items.size()), 1.0) << g;
  // Another seed, another sample; `first` is lm-eval's first N.
  const TaskData other = load_task(arc, 40, LimitMode::Stratified, 7);
  size_t same = 0;
  for (const auto& it : other.items) same += ids40.count(it.id);
  EXPECT_LT(same, 10u);
  const TaskData first = load_task(arc, 5, LimitMode::First);
  for (size_t i = 0; i < 5; i++) EXPECT_EQ(first.items[i].id, std::to_string(i));
  // MMLU: the limit is per subject.
  const TaskData mmlu = load_task(load_task_spec("mmlu"), 2);
  EXPECT_EQ(mmlu.items.size(), 2u * 57u);
  std::map<std::string, int> per;
  for (const auto& it : mmlu.items) per[it.task]++;
  EXPECT_EQ(per.size(), 57u);
  for (const auto& [sub, n] : per) EXPECT_EQ(n, 2) << sub;
}

// A data path the file system refuses (a name longer than NAME_MAX; found by fuzz_task_decl) is a clean
// ctrust::Error naming the task, not a std::filesystem_error that ends the program.
TEST(EvalTasks, OverlongDataPathIsAnError) {
  const std::string decl = test::scratch_dir() + "/overlong.json";
  const nlohmann::json j = {{"name", "t"}, {"format", "jsonl"}, {"data", "./" + std::string(300, 'x')},
                            {"prompt", "{{q}}"}, {"choices", "{{c}}"}, {"gold", "g"}};
  try {
    (void)load_task(parse_task_spec(j, decl), 0);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data of task 't' not found"), std::string::npos) << e.what();
  }
}
