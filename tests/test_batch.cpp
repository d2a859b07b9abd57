// Batched decoding (model/batch.h) against the one-sequence path: forward_batch rows equal forward() rows,
// batched greedy output equals generate() token for token, seeded sampling is reproducible and does not
// depend on the batch size, k samples per prompt equal k separate generate() calls.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/batch.h"
#include "model/model.h"
#include "test_paths.h"

using namespace ctrust;

namespace {

std::vector<std::vector<int32_t>> prompts_of(const Model& m, const std::vector<std::string>& texts) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& t : texts) out.push_back(m.tok.encode(t, true, false));
  return out;
}

const std::vector<std::string> kStoryPrompts = {
    "", "Once upon a time", "Lily went to the park with her mom. She saw a big dog and",
    "Tom", "The sun was hot. Ben wanted ice cream, so he asked his dad", "One day, a little bird",
    "Sue had a red ball. She", "The cat sat on the mat and looked at the", "Max and Mia"};

// generate() per request vs generate_batch with several batch sizes.
void expect_batch_equals_generate(const Model& m, const std::vector<std::vector<int32_t>>& prompts,
                                  const GenerateOptions& g, const std::vector<int>& batch_sizes) {
  std::vector<std::vector<int32_t>> want;
  std::vector<GenRequest> reqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateOptions o = g;
    o.seed = g.seed + 17 * i;
    o.max_tokens = g.max_tokens - (int)(i % 3) * 3;  // different lengths and limits per sequence
    want.push_back(generate(m, prompts[i], o));
    reqs.push_back({prompts[i], o, 1});
  }
  for (int b : batch_sizes) {
    BatchOptions bo;
    bo.max_batch = b;
    int done = 0;
    bo.on_done = [&](size_t, int, const std::vector<int32_t>&) { ++done; };
    auto got = generate_batch(m, reqs, bo);
    ASSERT_EQ(got.size(), prompts.size());
    EXPECT_EQ(done, (int)prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      ASSERT_EQ(got[i].size(), 1u);
      EXPECT_EQ(got[i][0], want[i]) << "batch " << b << " prompt " << i;
    }
  }
}

std::unique_ptr<Model> stories() { return open_model(test::stories_gguf()); }

}  // namespace

TEST(Batch, ForwardBatchRowsEqualForward) {
  auto m = stories();
  const int V = m->cfg.n_vocab;
  // Three sequences with different cached prefixes and different numbers of new tokens.
  std::vector<std::vector<int32_t>> pre = {{1, 40, 41}, {1}, {1, 300, 301, 302, 303, 9}};
  std::vector<std::vector<int32_t>> add = {{5}, {7, 8, 9, 10}, {100, 200}};
  std::vector<KVCache> a, b;
  std::vector<std::vector<float>> want;
  for (size_t i = 0; i < pre.size(); ++i) {
    a.push_back(make_cache(*m, 32));
    b.push_back(make_cache(*m, 32));
    forward(*m, a[i], pre[i].data(), (int)pre[i].size(), nullptr);
    forward(*m, b[i], pre[i].data(), (int)pre[i].size(), nullptr);
    std::vector<float> l(add[i].size() * V);
    forward(*m, a[i], add[i].data(), (int)add[i].size(), l.data());
    want.push_back(l);
  }
  std::vector<BatchSeq> bs;
  for (size_t i = 0; i < pre.size(); ++i) bs.push_back({&b[i], add[i].data(), (int)add[i].size(), i != 1});
  ASSERT_EQ(batch_logit_rows(bs), 4);  // 1 (all of 1) + 1 (last of 4) + 2 (all of 2)
  std::vector<float> got(batch_logit_rows(bs) * V);
  forward_batch(*m, bs, got.data());
  // rows: seq 0 all (1), seq 1 last only (1), seq 2 all (2)
  const std::vector<std::pair<int, int>> rows = {{0, 0}, {1, 3}, {2, 0}, {2, 1}};
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto [s, pos] = rows[r];
    float maxdiff = 0;
    for (int v = 0; v < V; ++v)
      maxdiff = std::max(maxdiff, std::fabs(got[r * V + v] - want[s][(size_t)pos * V + v]));
    EXPECT_LT(maxdiff, 1e-4f) << "row " << r;
  }
  for (size_t i = 0; i < pre.size(); ++i) {
    EXPECT_EQ(b[i].n_past, a[i].n_past);
    float maxdiff = 0;
    for (size_t j = 0; j < a[i].k.size(); ++j) maxdiff = std::max(maxdiff, std::fabs(a[i].k[j] - b[i].k[j]));
    EXPECT_LT(maxdiff, 1e-5f);
  }
}

TEST(Batch, ForwardBatchRejectsBadInputWithoutTouchingCaches) {
  auto m = stories();
  KVCache c1 = make_cache(*m, 4), c2 = make_cache(*m, 4);
  std::vector<int32_t> ok = {1, 2}, bad = {1, 9999}, tooLong = {1, 2, 3, 4, 5};
  std::vector<BatchSeq> bs = {{&c1, ok.data(), 2, false}, {&c2, bad.data(), 2, false}};
  EXPECT_THROW(forward_batch(*m, bs, nullptr), Error);
  EXPECT_EQ(c1.n_past, 0);
  bs[1] = {&c2, tooLong.data(), 5, false};
  EXPECT_THROW(forward_batch(*m, bs, nullptr), Error);
  bs[1] = {&c1, ok.data(), 2, false};  // same cache twice
  EXPECT_THROW(forward_batch(*m, bs, nullptr), Error);
  EXPECT_EQ(c1.n_past, 0);
  EXPECT_EQ(c2.n_past, 0);
  GenRequest empty;
  EXPECT_THROW(generate_batch(*m, {empty}), Error);
  BatchOptions zero;
  zero.max_batch = 0;
  EXPECT_THROW(generate_batch(*m, {GenRequest{{1}, {}, 1}}, zero), Error);
}

TEST(Batch, GreedyEqualsGenerateOnStories260K) {
  auto m = stories();
  GenerateOptions g;
  g.max_tokens = 40;
  g.stop_strings = {"dog."};  // some stories stop on it, others on max tokens or EOS
  expect_batch_equals_generate(*m, prompts_of(*m, kStoryPrompts), g, {1, 3, 8});
}

TEST(Batch, SeededSamplingIsReproducibleAndBatchIndependent) {
  auto m = stories();
  GenerateOptions g;
  g.max_tokens = 30;
  g.temperature = 1.0f;
  g.top_p = 0.9f;
  g.seed = 1234;
  auto prompts = prompts_of(*m, kStoryPrompts);
  expect_batch_equals_generate(*m, prompts, g, {1, 3, 8});
  // k samples per prompt share the prefill; sample j equals generate() with seed + j, in any batch size.
  std::vector<GenRequest> reqs;
  for (size_t i = 0; i < 3; ++i) reqs.push_back({prompts[i + 1], g, 5});
  reqs[1].opt.seed = 99;
  std::vector<std::vector<std::vector<int32_t>>> first;
  for (int b : {1, 3, 8}) {
    BatchOptions bo;
    bo.max_batch = b;
    auto got = generate_batch(*m, reqs, bo);
    for (size_t r = 0; r < reqs.size(); ++r)
      for (int j = 0; j < 5; ++j) {
        GenerateOptions o = reqs[r].opt;
        o.seed += j;
        EXPECT_EQ(got[r][j], generate(*m, reqs[r].prompt, o)) << "batch " << b << " request " << r << " sample " << j;
      }
    if (first.empty()) first = got;
    EXPECT_EQ(got, first);
  }
  // Different seeds do give different samples (the sampler is not accidentally greedy).
  auto got = generate_batch(*m, reqs);
  int distinct = 0;
  for (int j = 1; j < 5; ++j) distinct += got[0][j] != got[0][0];
  EXPECT_GT(distinct, 0);
}

TEST(Batch, GreedyEqualsGenerateOnSmolLM2) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched (scripts/setup.sh)";
  auto m = open_model(test::smollm_q4_1());
  std::vector<std::string> texts = {
      "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
      "<|im_start|>user\nWrite one sentence about the sea.<|im_end|>\n<|im_start|>assistant\n",
      "The quick brown fox",
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nIs the following sentence "
      "positive or negative? 'I loved this movie, the actors were wonderful.'<|im_end|>\n<|im_start|>assistant\n",
      "1, 2, 3,"};
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& t : texts) prompts.push_back(m->tok.encode(t, m->tok.adds_bos(), true));
  GenerateOptions g;
  g.max_tokens = 12;  // enough to diverge if batching were wrong; keeps the test short on 2 cores
  g.stop_strings = {"<|im_end|>"};
  expect_batch_equals_generate(*m, prompts, g, {1, 5});
}

// In the native compute mode every row's product is independent of the other rows multiplied with it, so batched
// greedy generation is the same as one sequence at a time (here exactly, token for token).
TEST(Batch, NativeGreedyEqualsGenerateOnSmolLM2) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched (scripts/setup.sh)";
  LoadOptions o;
  o.compute = ComputeMode::Native;
  auto m = open_model(test::smollm_q4_1(), o);
  std::vector<std::string> texts = {
      "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
      "The quick brown fox", "1, 2, 3,"};
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& t : texts) prompts.push_back(m->tok.encode(t, m->tok.adds_bos(), true));
  GenerateOptions g;
  g.max_tokens = 10;
  g.stop_strings = {"<|im_end|>"};
  expect_batch_equals_generate(*m, prompts, g, {3});
}

// Shared prompt prefixes (BatchOptions::min_shared_prefix): the prefix tree and the saved-token counts on
// hand-built token prompts, checked against counts worked out by hand.
TEST(Batch, SharedPrefixCountsOnHandBuiltPrompts) {
  auto m = stories();
  auto seq = [](int from, int n) {
    std::vector<int32_t> v;
    for (int i = 0; i < n; ++i) v.push_back(from + i);
    return v;
  };
  auto cat = [](std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const auto A = cat({1}, seq(100, 19));  // 20 tokens shared by all
  const auto B = seq(200, 20);            // 20 more shared by requests 0-2
  GenerateOptions g;
  g.max_tokens = 3;
  std::vector<GenRequest> reqs = {
      {cat(cat(A, B), seq(300, 5)), g, 1},  // 45 tokens
      {cat(cat(A, B), seq(310, 3)), g, 2},  // 43 tokens, 2 samples
      {cat(A, B), g, 1},                    // 40 tokens: a prefix of the two above, keeps its last token
      {cat(A, seq(400, 7)), g, 1},          // 27 tokens
      {cat(A, seq(410, 2)), g, 1},          // 22 tokens
      {seq(50, 30), g, 1},                  // 30 tokens, shares nothing
  };
  GenRequest none = reqs[0];
  none.opt.max_tokens = 0;                  // generates nothing: not counted, not shared
  reqs.push_back(none);
  BatchStats st;
  BatchOptions bo;
  bo.stats = &st;
  auto got = generate_batch(*m, reqs, bo);
  // Nodes: A (20 tokens, 5 requests); A+B capped at 39 (request 2 keeps 1 own token; 3 requests, +19).
  EXPECT_EQ(st.shared_prefixes, 2);
  EXPECT_EQ(st.sequences, 7);
  EXPECT_EQ(st.prompt_tokens, 45 + 2 * 43 + 40 + 27 + 22 + 30);
  EXPECT_EQ(st.saved_by_samples, 43);
  // Run: node A 20, node A+B 19, suffixes 6 + 4 + 1 + 7 + 2, request 5 whole (30).
  EXPECT_EQ(st.prefill_tokens, 20 + 19 + 6 + 4 + 1 + 7 + 2 + 30);
  EXPECT_EQ(st.saved_by_prefixes, st.prompt_tokens - st.prefill_tokens - st.saved_by_samples);
  EXPECT_EQ(st.saved_by_prefixes, 39 * 3 + 20 * 2 - 20 - 19);
  EXPECT_GE(st.generated_tokens, 7);
  EXPECT_LE(st.generated_tokens, 7 * 3);
  // Off: nothing shared but the samples; the same tokens.
  BatchStats off;
  bo.min_shared_prefix = 0;
  bo.stats = &off;
  EXPECT_EQ(generate_batch(*m, reqs, bo), got);
  EXPECT_EQ(off.shared_prefixes, 0);
  EXPECT_EQ(off.saved_by_prefixes, 0);
  EXPECT_EQ(off.prefill_tokens, off.prompt_tokens - 43);
  // Threshold 20: A+B's 19-token step off A is too short, but requests 0 and 1 share 20 tokens past A (A+B
  // and not capped by request 2): nodes A (5 users) and A+B (40 tokens, 2 users, 20 run).
  bo.min_shared_prefix = 20;
  generate_batch(*m, reqs, bo);
  EXPECT_EQ(off.shared_prefixes, 2);
  EXPECT_EQ(off.saved_by_prefixes, 20 * 4 + 20 * 1);
  bo.min_shared_prefix = 21;
  generate_batch(*m, reqs, bo);
  EXPECT_EQ(off.shared_prefixes, 1);  // A+B (39 tokens, one level) is now the only node
  EXPECT_EQ(off.saved_by_prefixes, 39 * 2);
  bo.min_shared_prefix = -1;
  EXPECT_THROW(generate_batch(*m, reqs, bo), Error);
  EXPECT_EQ(st.peak_prefix_caches, 2);  // A and A+B: one path of the tree
  // Two prefixes whose requests alternate: they start in sorted order, so only one prefix cache is held at a
  // time, and each request still gets its own answer.
  std::vector<GenRequest> alt;
  for (int i = 0; i < 6; ++i) alt.push_back({cat(seq(i % 2 ? 100 : 200, 20), seq(300 + 10 * i, 3)), g, 1});
  BatchStats sa;
  BatchOptions ba;
  ba.stats = &sa;
  std::vector<size_t> order;
  ba.on_done = [&](size_t r, int, const std::vector<int32_t>&) { order.push_back(r); };
  ba.max_batch = 1;
  auto got_alt = generate_batch(*m, alt, ba);
  EXPECT_EQ(sa.shared_prefixes, 2);
  EXPECT_EQ(sa.peak_prefix_caches, 1);
  EXPECT_EQ(order, (std::vector<size_t>{1, 3, 5, 0, 2, 4}));  // prompts starting 100.. sort first
  ba.min_shared_prefix = 0;
  EXPECT_EQ(generate_batch(*m, alt, ba), got_alt);
}

namespace {
// generate() per request (seed + j per sample) against generate_batch with and without prefix sharing, in
// several batch sizes; returns the prefix-saved tokens of the sharing runs (all equal).
int64_t expect_shared_equals_generate(const Model& m, const std::vector<std::vector<int32_t>>& prompts,
                                      const GenerateOptions& g, int samples, const std::vector<int>& batch_sizes) {
  std::vector<GenRequest> reqs;
  std::vector<std::vector<std::vector<int32_t>>> want;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateOptions o = g;
    o.seed = g.seed + 17 * i;
    o.max_tokens = g.max_tokens - (int)(i % 3) * 2;
    reqs.push_back({prompts[i], o, samples});
    want.emplace_back();
    for (int j = 0; j < samples; ++j) {
      GenerateOptions oj = o;
      oj.seed += j;
      want.back().push_back(generate(m, prompts[i], oj));
    }
  }
  int64_t saved = -1;
  for (int share : {0, 16})
    for (int b : batch_sizes) {
      BatchStats st;
      BatchOptions bo;
      bo.max_batch = b;
      bo.min_shared_prefix = share;
      bo.stats = &st;
      auto got = generate_batch(m, reqs, bo);
      for (size_t i = 0; i < prompts.size(); ++i)
        for (int j = 0; j < samples; ++j)
          EXPECT_EQ(got[i][j], want[i][j]) << "share " << share << " batch " << b << " prompt " << i << " sample " << j;
      if (share == 0) {
        EXPECT_EQ(st.saved_by_prefixes, 0);
      } else {
        if (saved >= 0) {
          EXPECT_EQ(st.saved_by_prefixes, saved);
        }
        saved = st.saved_by_prefixes;
      }
    }
  return saved;
}
}  // namespace

TEST(Batch, SharedPrefixEqualsGenerateOnStories260K) {
  auto m = stories();
  const std::string sys = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ";
  const std::string demo = "One day, she saw a big red ball under a tree. ";
  std::vector<std::string> texts = {sys + demo + "She",
                                    sys + demo + "The ball was",
                                    sys + demo + "Lily wanted to",
                                    sys + "Her mom said",
                                    sys + "Tom",
                                    sys,  // the shared text itself: keeps its own last token
                                    sys,  // twice
                                    "Max and Mia went to the zoo."};
  auto prompts = prompts_of(*m, texts);
  GenerateOptions g;
  g.max_tokens = 24;
  g.stop_strings = {"dog."};
  EXPECT_GT(expect_shared_equals_generate(*m, prompts, g, 1, {1, 3, 8}), 6 * 16);
  // Seeded sampling, 3 samples per prompt: every sample equals its own generate() call.
  g.temperature = 1.0f;
  g.top_p = 0.9f;
  g.seed = 77;
  EXPECT_GT(expect_shared_equals_generate(*m, prompts, g, 3, {2, 8}), 6 * 16);
}

// The acceptance case: chat prompts sharing the template and a system prompt, f32 mode (the exact arithmetic),
// greedy tokens identical with and without sharing and to generate() alone.
TEST(Batch, SharedPrefixEqualsGenerateOnSmolLM2) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "SmolLM2 not fetched (scripts/setup.sh)";
  auto m = open_model(test::smollm_q4_1());
  const std::string sys =
      "<|im_start|>system\nYou are a helpful assistant. For each sentence, answer with one word: positive or "
      "negative. Do not explain your answer.<|im_end|>\n<|im_start|>user\n";
  std::vector<std::string> texts = {
      sys + "Sentence: 'I loved this movie, the actors were wonderful.'<|im_end|>\n<|im_start|>assistant\n",
      sys + "Sentence: 'The food was cold and the waiter was rude.'<|im_end|>\n<|im_start|>assistant\n",
      sys + "Sentence: 'What a beautiful day at the beach.'<|im_end|>\n<|im_start|>assistant\n",
      sys + "Write a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n",
      "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"};
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& t : texts) prompts.push_back(m->tok.encode(t, m->tok.adds_bos(), true));
  GenerateOptions g;
  g.max_tokens = 12;
  g.stop_strings = {"<|im_end|>"};
  const int64_t saved = expect_shared_equals_generate(*m, prompts, g, 1, {4});
  EXPECT_GE(saved, 3 * 30);  // the system prompt (> 30 tokens) runs once instead of four times
  // Seeded sampling, 3 samples of 2 prompts: the samples' decode rows attend together over their common prompt
  // (attention_decode_shared, head size 64), and every sample still equals its own generate() call.
  g.temperature = 1.0f;
  g.top_p = 0.95f;
  g.seed = 5;
  g.max_tokens = 10;
  expect_shared_equals_generate(*m, {prompts[0], prompts[3]}, g, 3, {6});
}
