// Scoring and eval_run on the real stories260K model (fast), plus a few SmolLM2 items.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "eval/score.h"
#include "model/perplexity.h"
#include "pipeline/fingerprint.h"
#include "pipeline/runs.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

const Model& stories() {
  static std::unique_ptr<Model> m = open_model(test::stories_gguf());
  return *m;
}

std::string fresh_db(const std::string& name) {
  std::string p = test::scratch_dir() + "/" + name + ".db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(p + suf);
  return p;
}

// The same scores without any cache reuse: every choice's whole sequence through token_logprobs.
double ll_without_reuse(const Model& m, const TaskItem& it, size_t i) {
  Request r = make_request(m.tok, it.contexts[std::min(i, it.contexts.size() - 1)], it.continuations[i]);
  std::vector<float> lp = token_logprobs(m, r.tokens);  // lp[k] = log p(tokens[k+1] | ..k)
  double s = 0;
  for (size_t j = size_t(r.ctx_len); j < r.tokens.size(); j++) s += lp[j - 1];
  return s;
}

}  // namespace

TEST(EvalScore, RequestSplitsLikeLmEval) {
  const Tokenizer& tok = stories().tok;
  Request r = make_request(tok, "Once upon a time", " there was a cat");
  auto whole = tok.encode("Once upon a time there was a cat", true);
  auto ctx = tok.encode("Once upon a time", true);
  EXPECT_EQ(r.tokens, whole);
  EXPECT_EQ(r.ctx_len, int(ctx.size()));
  // Trailing spaces of the context move to the continuation.
  Request r2 = make_request(tok, "Once upon a time ", "there was a cat");
  EXPECT_EQ(r2.tokens, whole);
  EXPECT_EQ(r2.ctx_len, r.ctx_len);
}

TEST(EvalScore, SharedContextReuseMatchesFullRecompute) {
  const Model& m = stories();
  KVCache cache = make_cache(m, 256);
  TaskItem mc;
  mc.task = "t";
  mc.id = "0";
  mc.contexts = {"Lily went to the park. She saw a big"};
  mc.choice_texts = {"dog.", "tree and a red ball.", "sun"};
  for (auto& c : mc.choice_texts) mc.continuations.push_back(" " + c);
  mc.gold = 0;
  ItemScore s = score_item(m, cache, mc);
  ASSERT_EQ(s.ll.size(), 3u);
  for (size_t i = 0; i < 3; i++) EXPECT_NEAR(s.ll[i], ll_without_reuse(m, mc, i), 1e-4) << i;
  // acc / acc_norm / token-mean choose by their own rules.
  std::vector<double> norm, mean;
  for (size_t i = 0; i < 3; i++) {
    norm.push_back(s.ll[i] / double(mc.choice_texts[i].size()));
    mean.push_back(s.ll[i] / s.n_tokens[i]);
  }
  EXPECT_EQ(s.pred, int(std::max_element(s.ll.begin(), s.ll.end()) - s.ll.begin()));
  EXPECT_EQ(s.pred_norm, int(std::max_element(norm.begin(), norm.end()) - norm.begin()));
  EXPECT_EQ(s.pred_mean, int(std::max_element(mean.begin(), mean.end()) - mean.begin()));
  EXPECT_EQ(s.n_bytes[1], 20);
  EXPECT_EQ(s.correct, s.pred == 0);

  // Partial scoring: different contexts, one continuation.
  TaskItem part;
  part.task = "t";
  part.id = "1";
  part.contexts = {"Tom had a ball and Sue had a kite. Tom", "Tom had a ball and Sue had a kite. Sue"};
  part.continuations = {" flew it high.", " flew it high."};
  part.choice_texts = {"flew it high.", "flew it high."};
  part.gold = 1;
  ItemScore p = score_item(m, cache, part);
  for (size_t i = 0; i < 2; i++) EXPECT_NEAR(p.ll[i], ll_without_reuse(m, part, i), 1e-4) << i;
  EXPECT_NE(p.ll[0], p.ll[1]);
}

TEST(EvalScore, RunResumeAndNewTaskFile) {
  const Model& m = stories();
  const std::string dir = test::scratch_dir() + "/story_task";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream d(dir + "/story.jsonl");
    const char* animals[] = {"cat", "dog", "bird", "fish", "frog", "bear", "duck", "lion", "cow", "pig"};
    for (int i = 0; i < 10; i++)
      d << "{\"ctx\": \"Once upon a time, there was a little " << animals[i] << ". It was very\", \"opts\": "
        << "[\"happy.\", \"big.\", \"sad.\"], \"gold\": " << (i % 3) << "}\n";
  }
  std::ofstream(dir + "/story.json") << R"({"name": "story", "format": "jsonl", "data": "./story.jsonl",
    "source": "written by the test", "prompt": "{{ctx}}", "choices": "{{opts}}", "gold": "gold"})";

  // Reference: one uninterrupted run.
  EvalOptions opt;
  opt.db = fresh_db("eval_full");
  opt.name = "stories";
  opt.batch = 3;
  opt.progress = false;
  EvalResult full = eval_run(m, test::stories_gguf(), dir + "/story.json", opt);
  EXPECT_EQ(full.n_total, 10);
  EXPECT_EQ(full.n_scored, 10);
  ASSERT_EQ(full.tasks.size(), 1u);
  EXPECT_EQ(full.tasks[0].task, "story");
  EXPECT_EQ(full.tasks[0].n, 10);
  EXPECT_EQ(full.run.model_fp, model_fingerprint(m));

  // Interrupted after the second committed batch (6 items), then resumed.
  opt.db = fresh_db("eval_resume");
  opt.on_commit = [](int64_t done, int64_t) {
    if (done >= 6) throw std::runtime_error("interrupted");
  };
  EXPECT_THROW(eval_run(m, test::stories_gguf(), dir + "/story.json", opt), std::runtime_error);
  EXPECT_EQ(Store(opt.db).items(1).size(), 6u);
  opt.on_commit = nullptr;
  EvalResult resumed = eval_run(m, test::stories_gguf(), dir + "/story.json", opt);
  EXPECT_EQ(resumed.run.id, 1);
  EXPECT_EQ(resumed.n_skipped, 6);
  EXPECT_EQ(resumed.n_scored, 4);
  EXPECT_EQ(resumed.run.n_items, 10);
  EXPECT_DOUBLE_EQ(resumed.tasks[0].acc, full.tasks[0].acc);
  auto a = Store(fresh_db("unused")).list_runs();
  EXPECT_TRUE(a.empty());
  // Item by item the same as the uninterrupted run. Not bit for bit: the batched scorer packs different items
  // together after a resume, which changes float rounding (the scorers agree to 1e-4, EvalBatched.*).
  auto fa = Store(fs::path(test::scratch_dir()) / "eval_full.db").items(1);
  auto fb = Store(opt.db).items(1);
  ASSERT_EQ(fa.size(), fb.size());
  for (size_t i = 0; i < fa.size(); i++) {
    EXPECT_EQ(fa[i].item_id, fb[i].item_id);
    ASSERT_EQ(fa[i].ll.size(), fb[i].ll.size());
    for (size_t k = 0; k < fa[i].ll.size(); k++) EXPECT_NEAR(fa[i].ll[k], fb[i].ll[k], 1e-4) << i << " " << k;
    EXPECT_EQ(fa[i].pred, fb[i].pred);
  }
  // Compared with itself: no flips.
  Comparison c = compare_runs(opt.db, "1", "1");
  EXPECT_EQ(c.tasks.at("story").m.flips, 0.0);
  EXPECT_EQ(c.tasks.at("story").m.kl_ab, 0.0);
  EXPECT_EQ(c.tasks.at("story").m.kl_ba, 0.0);
  EXPECT_EQ(c.tasks.at("story").m.n, 10);
}

TEST(EvalScore, BuiltinTasksOnStories) {
  const Model& m = stories();
  EvalOptions opt;
  opt.db = fresh_db("eval_builtin");
  opt.limit = 2;
  opt.progress = false;
  for (const char* t : {"arc_easy", "hellaswag", "winogrande", "lambada_openai", "truthfulqa_mc2"}) {
    EvalResult r = eval_run(m, test::stories_gguf(), t, opt);
    EXPECT_EQ(r.n_scored, 2) << t;
    ASSERT_FALSE(r.tasks.empty()) << t;
    EXPECT_GE(r.tasks[0].acc, 0.0);
    EXPECT_LE(r.tasks[0].acc, 1.0);
  }
  auto runs = list_runs(opt.db);
  ASSERT_EQ(runs.size(), 5u);
  Store s(opt.db);
  auto tq = summarize(runs[4], s.items(runs[4].id));
  EXPECT_GT(tq[0].mc2, 0.0);
  EXPECT_LT(tq[0].mc2, 1.0);
}

TEST(EvalScore, PerplexityChunksMatchEngine) {
  const Model& m = stories();
  TaskData td = load_task(load_task_spec("wikitext2"));
  const std::string text = td.text.substr(0, 20000);
  auto tokens = perplexity_tokens(m, text);
  ASSERT_GE(perplexity_chunks(tokens.size(), 128), 2);
  PerplexityResult ref = perplexity(m, tokens, 128, 2);
  ASSERT_EQ(ref.chunk_nll.size(), 2u);
  for (int c = 0; c < 2; c++) {
    ChunkScore s = score_chunk(m, tokens, 128, c);
    EXPECT_EQ(s.n_scored, 63);
    EXPECT_NEAR(s.nll_sum / double(s.n_scored), ref.chunk_nll[size_t(c)], 1e-5) << c;
  }

  // The same through eval_run with a perplexity task declared on that text (chunks of 128).
  const std::string dir = test::scratch_dir() + "/ppl_task";
  fs::create_directories(dir);
  std::ofstream(dir + "/wiki.txt", std::ios::binary) << text;
  std::ofstream(dir + "/wiki.json") << R"({"name": "wiki_small", "format": "text", "data": "./wiki.txt",
    "scoring": "perplexity", "n_ctx": 128})";
  EvalOptions opt;
  opt.db = fresh_db("eval_ppl");
  opt.limit = 2;
  opt.progress = false;
  EvalResult r = eval_run(m, test::stories_gguf(), dir + "/wiki.json", opt);
  ASSERT_EQ(r.tasks.size(), 1u);
  EXPECT_EQ(r.tasks[0].n, 2);
  EXPECT_NEAR(std::log(r.tasks[0].ppl), (ref.chunk_nll[0] + ref.chunk_nll[1]) / 2, 1e-5);
  EXPECT_NEAR(r.tasks[0].ppl, ref.ppl, 1e-3 * ref.ppl);
}

// Against llama.cpp (tests/golden/eval_stories260k.json, made by scripts/ref/make_eval_golden.py).
TEST(EvalScore, ChoiceLogLikelihoodsMatchLlamaCpp) {
  std::ifstream in(test::golden_dir() + "/eval_stories260k.json");
  ASSERT_TRUE(in) << "missing golden file";
  nlohmann::json g = nlohmann::json::parse(in);
  const Model& m = stories();
  KVCache cache = make_cache(m, 256);
  ASSERT_EQ(g["items"].size(), 3u);
  for (const auto& gi : g["items"]) {
    TaskItem it;
    it.task = "golden";
    it.id = "0";
    it.contexts = {gi["context"].get<std::string>()};
    it.continuations = gi["continuations"].get<std::vector<std::string>>();
    it.choice_texts = gi["choice_texts"].get<std::vector<std::string>>();
    ItemScore s = score_item(m, cache, it);
    const auto ref = gi["ll"].get<std::vector<double>>();
    ASSERT_EQ(s.ll.size(), ref.size());
    for (size_t i = 0; i < ref.size(); i++) EXPECT_NEAR(s.ll[i], ref[i], 1e-3) << it.contexts[0] << i;
    EXPECT_EQ(s.pred, int(std::max_element(ref.begin(), ref.end()) - ref.begin()));
  }
}

// SmolLM2 (byte-level BPE): one ARC item through eval_run; its first choice equals recomputation.
TEST(EvalScore, SmolLM2OneArcItem) {
  if (!fs::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not in the cache (scripts/setup.sh)";
  auto m = open_model(test::smollm_q4_1());
  EvalOptions opt;
  opt.db = fresh_db("eval_smollm");
  opt.limit = 1;
  opt.progress = false;
  opt.max_ctx = 256;
  EvalResult r = eval_run(*m, test::smollm_q4_1(), "arc_easy", opt);
  EXPECT_EQ(r.n_scored, 1);
  EXPECT_EQ(r.run.tokenizer_fp, tokenizer_fingerprint(*m));
  auto items = Store(opt.db).items(r.run.id);
  ASSERT_EQ(items.size(), 1u);
  ASSERT_EQ(items[0].ll.size(), 4u);
  TaskData td = load_task(load_task_spec("arc_easy"), 1);
  EXPECT_NEAR(items[0].ll[0], ll_without_reuse(*m, td.items[0], 0), 2e-3);
}

// Which items share a forward pass must not depend on timing. In the native mode packing moves the last bits of
// the scores (docs/tasks.md), so with the old rule (the batch stopped growing while one took longer than
// commit_seconds) a slow machine stored other numbers than a fast one. Here commit_seconds = 0 stands for the
// slowest machine: the stored log-likelihoods must equal those of a run that never looks at the clock.
TEST(EvalScore, SmolLM2NativePackingIgnoresTiming) {
  if (!fs::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not in the cache (scripts/setup.sh)";
  LoadOptions lo;
  lo.compute = ComputeMode::Native;
  auto m = open_model(test::smollm_q4_1(), lo);
  std::vector<std::vector<StoredItem>> runs;
  for (double secs : {1e9, 0.0}) {
    EvalOptions opt;
    opt.db = fresh_db(secs > 0 ? "eval_pack_fast" : "eval_pack_slow");
    opt.limit = 16;
    opt.progress = false;
    opt.commit_seconds = secs;
    EvalResult r = eval_run(*m, test::smollm_q4_1(), "hellaswag", opt);
    ASSERT_EQ(r.n_scored, 16);
    runs.push_back(Store(opt.db).items(r.run.id));
  }
  ASSERT_EQ(runs[0].size(), runs[1].size());
  for (size_t i = 0; i < runs[0].size(); i++) {
    EXPECT_EQ(runs[0][i].item_id, runs[1][i].item_id);
    EXPECT_EQ(runs[0][i].ll, runs[1][i].ll) << "item " << runs[0][i].item_id;  // bit for bit
  }
}
