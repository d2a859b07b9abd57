// The batched scorer (ItemScorer: one masked forward per item, context kept across items) against the
// unbatched reference score_item, and its building blocks attention_masked / forward_masked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <random>

#include "base/error.h"
#include "eval/score.h"
#include "model/forward_masked.h"
#include "ops/attention.h"
#include "pipeline/runs.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

std::vector<float> randv(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

const Model& stories() {
  static std::unique_ptr<Model> m = open_model(test::stories_gguf());
  return *m;
}

// Every choice's log-likelihood, greedy flag and the predictions equal between the two scorers.
void expect_same(const ItemScore& a, const ItemScore& b, double tol, const std::string& what) {
  ASSERT_EQ(a.ll.size(), b.ll.size()) << what;
  for (size_t i = 0; i < a.ll.size(); i++) {
    EXPECT_NEAR(a.ll[i], b.ll[i], tol) << what << " choice " << i;
    EXPECT_EQ(a.n_tokens[i], b.n_tokens[i]) << what;
    EXPECT_EQ(a.n_bytes[i], b.n_bytes[i]) << what;
    EXPECT_EQ(a.greedy[i], b.greedy[i]) << what << " choice " << i;
  }
  EXPECT_EQ(a.pred, b.pred) << what;
  EXPECT_EQ(a.pred_norm, b.pred_norm) << what;
  EXPECT_EQ(a.pred_mean, b.pred_mean) << what;
  EXPECT_EQ(a.correct, b.correct) << what;
  if (a.mc2 >= 0 || b.mc2 >= 0) {
    EXPECT_NEAR(a.mc2, b.mc2, tol) << what;
  }
}

// Items of a built-in task: the first `per` items of each subtask, at most `n` in all.
std::vector<TaskItem> items_of(const std::string& task, int per, size_t n, int fewshot = -1) {
  TaskSpec spec = load_task_spec(task);
  if (fewshot >= 0) spec.num_fewshot = fewshot;
  TaskData td = load_task(spec, per, LimitMode::First);
  if (td.items.size() > n) td.items.resize(n);
  return td.items;
}

// Scores the items with both scorers (one ItemScorer for all, so contexts are reused across items), for each
// batch limit in `batches`; the unbatched reference is computed once. Returns the largest per-choice difference.
double compare_scorers(const Model& m, const std::vector<TaskItem>& items, int n_ctx, std::vector<int> batches,
                       double tol, const std::string& what) {
  KVCache cache = make_cache(m, n_ctx);
  std::vector<ItemScore> refs;
  for (const TaskItem& it : items) refs.push_back(score_item(m, cache, it));
  std::vector<const TaskItem*> all;
  for (const TaskItem& it : items) all.push_back(&it);
  double worst = 0;
  for (int max_batch : batches) {
    const std::string label = what + (max_batch == 512 ? std::string() : " (batch " + std::to_string(max_batch) + ")");
    ItemScorer sc(m, n_ctx, max_batch), packed(m, n_ctx, max_batch);
    // score_batch twice: the second call starts with the first call's context in the cache.
    std::vector<ItemScore> got_b = packed.score_batch(all), got_b2 = packed.score_batch(all);
    for (size_t k = 0; k < items.size(); k++) {
      const TaskItem& it = items[k];
      const ItemScore& ref = refs[k];
      ItemScore got = sc.score(it);
      const std::string id = " item " + it.task + "/" + it.id;
      expect_same(got, ref, tol, label + id);
      expect_same(got_b[k], ref, tol, label + " (score_batch)" + id);
      expect_same(got_b2[k], ref, tol, label + " (score_batch again)" + id);
      for (size_t i = 0; i < ref.ll.size(); i++)
        for (const ItemScore* g : {&got, &got_b[k], &got_b2[k]})
          if (i < g->ll.size()) worst = std::max(worst, std::fabs(ref.ll[i] - g->ll[i]));
    }
  }
  return worst;
}

}  // namespace

TEST(EvalBatched, AttentionMaskedCausalEqualsAttention) {
  const AttentionShape s{4, 2, 8};
  const int kvd = 16, qd = 32;
  for (int n : {70, 5}) {
    const int pos0 = 3, T = pos0 + n;
    auto q = randv(size_t(n) * qd, 1), k = randv(size_t(T) * kvd, 2), v = randv(size_t(T) * kvd, 3);
    std::vector<unsigned char> causal(size_t(n) * n, 0);
    for (int i = 0; i < n; i++)
      for (int j = 0; j <= i; j++) causal[size_t(i) * n + j] = 1;
    std::vector<float> a(size_t(n) * qd), b(size_t(n) * qd);
    attention(s, q.data(), k.data(), v.data(), kvd, pos0, n, a.data());
    attention_masked(s, q.data(), k.data(), v.data(), kvd, pos0, n, causal.data(), b.data());
    for (size_t i = 0; i < a.size(); i++) EXPECT_NEAR(a[i], b[i], 1e-5) << i;
  }
}

TEST(EvalBatched, AttentionMaskedHidesOtherBranches) {
  // 2 cached keys, then a branch of 2 tokens and a branch of 1: each branch sees the cache and itself only.
  // The result of a branch must equal plain attention over [cache, branch] alone.
  const AttentionShape s{2, 1, 4};
  const int kvd = 4, qd = 8, n_past = 2, n = 3;
  auto q = randv(size_t(n) * qd, 4), k = randv(size_t(n_past + n) * kvd, 5), v = randv(size_t(n_past + n) * kvd, 6);
  const unsigned char mask[9] = {1, 0, 0, 1, 1, 0, 0, 0, 1};
  std::vector<float> out(size_t(n) * qd);
  attention_masked(s, q.data(), k.data(), v.data(), kvd, n_past, n, mask, out.data());
  // Branch 1 (rows 0, 1): keys 0..3, causal.
  std::vector<float> ref1(2 * qd);
  attention(s, q.data(), k.data(), v.data(), kvd, n_past, 2, ref1.data());
  for (int i = 0; i < 2 * qd; i++) EXPECT_NEAR(out[size_t(i)], ref1[size_t(i)], 1e-5);
  // Branch 2 (row 2): keys 0, 1 and its own key 4.
  std::vector<float> k2(size_t(3) * kvd), v2(size_t(3) * kvd), ref2(qd);
  for (int c = 0; c < kvd; c++) {
    k2[size_t(c)] = k[size_t(c)], k2[size_t(kvd + c)] = k[size_t(kvd + c)], k2[size_t(2 * kvd + c)] = k[size_t(4 * kvd + c)];
    v2[size_t(c)] = v[size_t(c)], v2[size_t(kvd + c)] = v[size_t(kvd + c)], v2[size_t(2 * kvd + c)] = v[size_t(4 * kvd + c)];
  }
  attention(s, q.data() + 2 * qd, k2.data(), v2.data(), kvd, n_past, 1, ref2.data());
  for (int i = 0; i < qd; i++) EXPECT_NEAR(out[size_t(2 * qd + i)], ref2[size_t(i)], 1e-5);
}

TEST(EvalBatched, ForwardMaskedCausalEqualsForward) {
  const Model& m = stories();
  const int V = m.cfg.n_vocab;
  std::vector<int32_t> toks = m.tok.encode("Once upon a time, there was a little girl named Lily.", true);
  const int n = int(toks.size());
  KVCache c1 = make_cache(m, 64), c2 = make_cache(m, 64);
  std::vector<float> ref(size_t(n) * V);
  forward(m, c1, toks.data(), 3, nullptr);
  forward(m, c1, toks.data() + 3, n - 3, ref.data());
  forward(m, c2, toks.data(), 3, nullptr);
  const int k = n - 3;
  std::vector<int32_t> pos(static_cast<size_t>(k));
  std::vector<int32_t> rows = {k - 1, 0, 2};
  std::vector<unsigned char> mask(size_t(k) * k, 0);
  for (int i = 0; i < k; i++) {
    pos[size_t(i)] = 3 + i;
    for (int j = 0; j <= i; j++) mask[size_t(i) * k + j] = 1;
  }
  std::vector<float> got(rows.size() * V);
  forward_masked(m, c2, toks.data() + 3, pos.data(), k, mask.data(), rows.data(), int(rows.size()), got.data());
  EXPECT_EQ(c2.n_past, n);
  for (size_t r = 0; r < rows.size(); r++)
    for (int t = 0; t < V; t++)
      ASSERT_NEAR(got[r * V + t], ref[size_t(rows[r]) * V + t], 1e-4) << "row " << rows[r] << " token " << t;
  // A mask that lets a row see a later one is refused.
  mask[1] = 1;
  EXPECT_THROW(forward_masked(m, c2, toks.data(), pos.data(), 2, mask.data(), nullptr, 0, nullptr), Error);
}

TEST(EvalBatched, ScorerEqualsUnbatchedOnStories) {
  const Model& m = stories();
  // Multiple choice, hellaswag's long endings, partial scoring, loglikelihood, many choices (mc2) and MMLU
  // 5-shot (long contexts cut from the left to the 512-token context; few-shot headers shared across items).
  struct Case { const char* task; int per, n, fewshot; };
  double worst = 0;
  for (Case c : {Case{"arc_easy", 4, 4, -1}, Case{"hellaswag", 4, 4, -1}, Case{"winogrande", 4, 4, -1},
                 Case{"lambada_openai", 3, 3, -1}, Case{"truthfulqa_mc2", 2, 2, -1}, Case{"piqa", 3, 3, -1},
                 Case{"boolq", 2, 2, -1}, Case{"mmlu", 2, 4, 5}, Case{"mmlu", 3, 3, 0}}) {
    const auto items = items_of(c.task, c.per, size_t(c.n), c.fewshot);
    ASSERT_EQ(items.size(), size_t(c.n)) << c.task;
    // Batch 512, and tiny batches of 7 tokens: the context runs ahead in chunks and the choices go in several
    // batches. The unbatched reference is computed once for both.
    worst = std::max(worst, compare_scorers(m, items, m.cfg.n_ctx, {512, 7}, 1e-4, c.task));
  }
  std::printf("largest per-choice difference batched vs unbatched: %.3g nats\n", worst);
}

TEST(EvalBatched, ScorerReusesContextAcrossItems) {
  const Model& m = stories();
  auto items = items_of("arc_easy", 3, 3);
  ItemScorer sc(m, m.cfg.n_ctx);
  sc.score(items[0]);
  const int64_t first = sc.tokens_run();
  sc.score(items[0]);  // the same context again: only its last token and the choices run
  const int64_t again = sc.tokens_run() - first;
  EXPECT_LT(again, first);
  int64_t choice_tokens = 0;
  for (size_t i = 0; i < items[0].continuations.size(); i++) {
    Request r = make_request(m.tok, items[0].contexts[0], items[0].continuations[i]);
    choice_tokens += int64_t(r.tokens.size()) - 1 - r.ctx_len;
  }
  EXPECT_EQ(again, 1 + choice_tokens);
  EXPECT_EQ(sc.forwards(), 2);  // one forward per item

  // score_batch packs the three items into one forward.
  ItemScorer pk(m, m.cfg.n_ctx);
  std::vector<const TaskItem*> three = {&items[0], &items[1], &items[2]};
  auto r = pk.score_batch(three);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(pk.forwards(), 1);
  // A batch limit below one item's size: every item alone (several forwards), same results.
  ItemScorer small(m, m.cfg.n_ctx, 8);
  auto r2 = small.score_batch(three);
  EXPECT_GT(small.forwards(), 3);
  for (size_t k = 0; k < 3; k++) expect_same(r2[k], r[k], 1e-4, "small batches");
}

TEST(EvalBatched, ScorerEqualsUnbatchedOnSmolLM2) {
  if (!fs::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not in the cache (scripts/setup.sh)";
  static std::unique_ptr<Model> m = open_model(test::smollm_q4_1());
  struct Case { const char* task; int per, n, fewshot; };
  double worst = 0;
  for (Case c : {Case{"hellaswag", 3, 3, -1}, Case{"arc_challenge", 2, 2, -1}, Case{"winogrande", 2, 2, -1},
                 Case{"boolq", 1, 1, -1}, Case{"mmlu", 2, 3, 5}}) {
    const auto items = items_of(c.task, c.per, size_t(c.n), c.fewshot);
    worst = std::max(worst, compare_scorers(*m, items, 2048, {512}, 1e-4, c.task));
  }
  RecordProperty("max_ll_difference", std::to_string(worst));
  std::printf("largest per-choice difference batched vs unbatched: %.3g nats\n", worst);
}

TEST(EvalBatched, ProgressRateCountsOnlyScoredItems) {
  // 100 of 500 items resumed from the store, 20 scored in 10 s: 2 items/s, 380 left -> ETA 190 s.
  EXPECT_EQ(progress_line("arc_easy", 20, 100, 500, 10.0), "arc_easy: 120/500 items (100 resumed), 2.00 items/s, ETA 190 s");
  EXPECT_EQ(progress_line("piqa", 0, 0, 10, 0.0), "piqa: 0/10 items");
  EXPECT_EQ(progress_line("piqa", 5, 0, 10, 2.5), "piqa: 5/10 items, 2.00 items/s, ETA 2 s");
}

// Every built-in declaration in tasks/ loads its real data and scores through eval_run (stories260K, 1 item per
// subtask; MMLU: 57 subjects + the aggregate).
TEST(EvalBatched, EveryBuiltinTaskRuns) {
  const Model& m = stories();
  const std::string db = test::scratch_dir() + "/every_task.db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(db + suf);
  EvalOptions opt;
  opt.db = db;
  opt.limit = 1;
  opt.progress = false;
  const std::vector<std::string> want = {"arc_challenge", "arc_easy", "boolq", "hellaswag", "lambada_openai", "mmlu",
                                         "piqa", "truthfulqa_mc", "truthfulqa_mc2", "wikitext2", "winogrande"};
  std::vector<std::string> known = known_tasks();
  for (const auto& t : want) EXPECT_NE(std::find(known.begin(), known.end(), t), known.end()) << t;
  for (const auto& t : want) {
    EvalResult r = eval_run(m, test::stories_gguf(), t, opt);
    ASSERT_FALSE(r.tasks.empty()) << t;
    if (t == "mmlu") {
      EXPECT_EQ(r.n_scored, 57);
      EXPECT_EQ(r.tasks.size(), 58u);  // aggregate + 57 subjects
      EXPECT_EQ(r.tasks[0].task, "mmlu");
      EXPECT_EQ(r.tasks[0].n, 57);
    } else {
      EXPECT_EQ(r.n_scored, 1) << t;
    }
    if (t == "wikitext2" || t == "lambada_openai") {
      EXPECT_GT(r.tasks[0].ppl, 1.0) << t;
    } else {
      EXPECT_GE(r.tasks[0].acc, 0.0) << t;
      EXPECT_LE(r.tasks[0].acc, 1.0) << t;
    }
  }
}

// A task whose data file is missing or malformed fails before anything is written: no empty run is left.
TEST(EvalRunErrors, BadDataLeavesNoRun) {
  const Model& m = stories();
  const std::string dir = test::scratch_dir() + "/bad_data_task";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir + "/t.json") << R"({"name": "t", "format": "jsonl", "data": "./d.jsonl", "source": "the test",
    "prompt": "{{q}}", "choices": "{{c}}", "gold": "g"})";
  const std::string db = test::scratch_dir() + "/bad_data.db";
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(db + suf);
  EvalOptions opt;
  opt.db = db;
  opt.progress = false;
  try {
    eval_run(m, test::stories_gguf(), dir + "/t.json", opt);
    ADD_FAILURE() << "missing data accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/d.jsonl"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("the test"), std::string::npos) << e.what();
  }
  std::ofstream(dir + "/d.jsonl") << "{\"q\": \"a\", \"c\": [\"x\", \"y\"], \"g\": 0}\n{\"q\": oops\n";
  try {
    eval_run(m, test::stories_gguf(), dir + "/t.json", opt);
    ADD_FAILURE() << "malformed data accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/d.jsonl:2:"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(db));  // nothing stored: not even an empty database
}

// LLM.int8() outlier layers pick their outlier columns from all rows of a forward: the scorer must then not let
// items share forwards or cached contexts, so an item's scores do not depend on the items around it.
TEST(EvalBatched, Int8OutlierItemsIndependentOfNeighbours) {
  auto m = open_model(test::stories_gguf());
  for (LayerWeights& L : m->layers)
    for (Linear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
      l->mode = LinearMode::Int8Outlier;
      l->threshold = 0.5f;  // low, so that outlier columns really occur in this small model
    }
  const auto items = items_of("arc_easy", 6, 6);
  std::vector<const TaskItem*> all;
  for (const auto& it : items) all.push_back(&it);
  ItemScorer packed(*m, m->cfg.n_ctx);
  const auto together = packed.score_batch(all);
  ASSERT_EQ(together.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    ItemScorer alone(*m, m->cfg.n_ctx);
    const ItemScore one = alone.score(items[i]);
    ASSERT_EQ(one.ll.size(), together[i].ll.size());
    for (size_t c = 0; c < one.ll.size(); ++c) EXPECT_EQ(one.ll[c], together[i].ll[c]) << "item " << i << " choice " << c;
  }
}
