// Caller-owned forward state (model/forward_state.h): the activations of a forward pass live in the state its
// caller holds, and nothing of a pass stays allocated once that state is gone (no per-thread pools in the model
// or the kernels); states on two threads give the same logits as one thread.
#include <gtest/gtest.h>
#include <malloc.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "model/batch.h"
#include "model/model.h"
#include "test_paths.h"

using namespace ctrust;

namespace {

// Bytes the allocator has handed out and not taken back (every arena, and mmapped blocks).
size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

std::vector<int32_t> tokens(const Model& m, int n) {
  std::vector<int32_t> t = m.tok.encode(
      "The committee met on Tuesday to discuss the budget for the coming year. After a long debate about roads, "
      "schools and the new library, the members agreed to postpone the vote until the next session.", true);
  for (int i = 0; (int)t.size() < n; ++i) t.push_back(t[1 + i % 30]);
  t.resize(n);
  return t;
}

std::unique_ptr<Model> native_smollm() {
  LoadOptions o;
  o.compute = ComputeMode::Native;
  return open_model(test::smollm_q4_1(), o);
}

}  // namespace

// A state grows to the largest call it served and gives its memory back on release() or when it goes away; the
// overload without a state keeps nothing after the call (native mode: the kernels' activation buffers too).
// Before this state existed, a 256-row call left ~5 MB behind in per-thread pools for SmolLM2-135M.
TEST(ForwardState, MemoryIsReleasedWithItsOwner) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "no " << test::smollm_q4_1();
  auto m = native_smollm();
  const ModelConfig& c = m->cfg;
  const int n = 256;
  const std::vector<int32_t> t = tokens(*m, n);
  KVCache cache = make_cache(*m, n);
  std::vector<float> logits(c.n_vocab);
  ForwardOptions last;
  last.all_logits = false;
  forward(*m, cache, t.data(), 4, logits.data(), last);  // one-time allocations (OpenMP team, tables) first
  const std::vector<float> small = logits;
  cache.truncate(0);

  const size_t before = heap_in_use();
  const size_t slack = 256 << 10;  // far below the ~5 MB of a 256-row call
  // What forward() needs per row at least: x, xb, q, gate, up.
  const size_t per_row = sizeof(float) * (3 * (size_t)c.dim + 2 * (size_t)c.hidden_dim);
  {
    ForwardState st;
    EXPECT_EQ(st.capacity_bytes(), 0u);
    forward(*m, st, cache, t.data(), n, logits.data(), last);
    EXPECT_GE(st.capacity_bytes(), per_row * n);
    EXPECT_GE(heap_in_use(), before + st.capacity_bytes());
    st.release();
    EXPECT_EQ(st.capacity_bytes(), 0u);
    EXPECT_LT(heap_in_use(), before + slack);
    // A released state serves the next call as a new one, with the same result.
    cache.truncate(0);
    forward(*m, st, cache, t.data(), 4, logits.data(), last);
    EXPECT_EQ(logits, small);
    ForwardState sized(c, n);  // reserve: the same buffers a call of n rows grows
    EXPECT_GE(sized.capacity_bytes(), per_row * n);
  }
  EXPECT_LT(heap_in_use(), before + slack) << "the states' buffers outlived them";

  cache.truncate(0);
  forward(*m, cache, t.data(), n, logits.data(), last);  // a one-off call: a state of its own, freed on return
  EXPECT_LT(heap_in_use(), before + slack) << "a forward pass left memory behind";

  std::vector<KVCache> caches;
  caches.push_back(make_cache(*m, n));
  caches.push_back(make_cache(*m, n));
  std::vector<float> two(2 * (size_t)c.n_vocab);
  BatchSeq seqs[2] = {{&caches[0], t.data(), n / 2, false}, {&caches[1], t.data() + 3, n / 2, false}};
  const size_t before_batch = heap_in_use();
  forward_batch(*m, seqs, two.data());
  EXPECT_LT(heap_in_use(), before_batch + slack) << "a batched forward pass left memory behind";
}

// States are independent: two threads, each with its own state and cache, compute the logits one thread
// computes, bit for bit; and a state reused after a longer call of other tokens gives the same logits as a new
// one (nothing of the earlier call leaks into the next).
TEST(ForwardState, TwoStatesOnTwoThreadsGiveTheSameLogits) {
  if (!std::filesystem::exists(test::smollm_q4_1())) GTEST_SKIP() << "no " << test::smollm_q4_1();
  auto m = native_smollm();
  const int V = m->cfg.n_vocab, n = 40;
  const std::vector<int32_t> t = tokens(*m, 120);
  auto run = [&](ForwardState& st, int offset, int rows) {
    KVCache cache = make_cache(*m, rows);
    std::vector<float> out((size_t)rows * V);
    forward(*m, st, cache, t.data() + offset, rows, out.data());
    return out;
  };
  ForwardState fresh;
  const std::vector<float> ref = run(fresh, 0, n);

  ForwardState reused;
  run(reused, 7, 110);  // a longer call of other tokens first
  EXPECT_EQ(run(reused, 0, n), ref);

  std::vector<float> a, b;
  std::thread ta([&] {
    ForwardState st;
    a = run(st, 0, n);
  });
  std::thread tb([&] {
    ForwardState st;
    b = run(st, 0, n);
  });
  ta.join();
  tb.join();
  EXPECT_EQ(a, ref);
  EXPECT_EQ(b, ref);
}
