#include "model/batch.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include "base/error.h"
#include "model/block.h"
#include "ops/attention.h"
#include "ops/ops.h"

namespace ctrust {

namespace {

// y = x W^T over the rows of all sequences: one call (one GEMM), except for the LLM.int8() outlier mode whose
// outlier columns depend on the rows of the call -- there each sequence's rows are multiplied on their own so
// that the result does not depend on which sequences share the batch.
void batch_linear(const Linear& L, const float* x, float* y, std::span<const BatchSeq> seqs, int64_t rows) {
  if (L.mode != LinearMode::Int8Outlier || seqs.size() == 1) {
    linear(L, x, y, (int)rows);
    return;
  }
  int64_t r0 = 0;
  for (const BatchSeq& s : seqs) {
    linear(L, x + r0 * L.in, y + r0 * L.out, s.n);
    r0 += s.n;
  }
}

}  // namespace

int64_t batch_logit_rows(std::span<const BatchSeq> seqs) {
  int64_t n = 0;
  for (const BatchSeq& s : seqs) n += s.all_logits ? s.n : 1;
  return n;
}

void copy_cache(const KVCache& src, KVCache& dst) {
  if (src.kv_dim != dst.kv_dim || src.n_ctx <= 0 || dst.n_ctx <= 0 ||
      src.k.size() / src.n_ctx != dst.k.size() / dst.n_ctx)
    fail("copy_cache: the caches belong to different models");
  if (src.n_past > dst.n_ctx) fail("copy_cache: {} positions do not fit a cache of {}", src.n_past, dst.n_ctx);
  const int64_t layers = src.kv_dim ? (int64_t)src.k.size() / ((int64_t)src.n_ctx * src.kv_dim) : 0;
  const size_t row = (size_t)src.n_past * src.kv_dim;
  for (int64_t l = 0; l < layers; ++l) {
    std::memcpy(dst.k.data() + l * dst.n_ctx * dst.kv_dim, src.k.data() + l * src.n_ctx * src.kv_dim,
                sizeof(float) * row);
    std::memcpy(dst.v.data() + l * dst.n_ctx * dst.kv_dim, src.v.data() + l * src.n_ctx * src.kv_dim,
                sizeof(float) * row);
  }
  dst.n_past = src.n_past;
}

void forward_batch(const Model& m, std::span<const BatchSeq> seqs, float* logits) {
  ForwardState st;
  forward_batch(m, st, seqs, logits);
}

void forward_batch(const Model& m, ForwardState& b, std::span<const BatchSeq> seqs, float* logits) {
  const ModelConfig& c = m.cfg;
  const int kvdim = c.n_kv_heads * c.head_dim, qdim = c.n_heads * c.head_dim, dim = c.dim;
  const int half = c.head_dim / 2;
  if (seqs.empty()) return;
  // Validate everything before any cache is touched.
  int64_t R = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const BatchSeq& s = seqs[i];
    if (!s.cache) fail("{}: batch sequence {} has no KV cache", m.file.path, i);
    const KVCache& kc = *s.cache;
    if (kc.kv_dim != kvdim || kc.k.size() != (size_t)c.n_layers * kc.n_ctx * kvdim || kc.v.size() != kc.k.size())
      fail("{}: KV cache of batch sequence {} does not fit this model (make it with make_cache)", m.file.path, i);
    if (s.n <= 0 || !s.tokens) fail("{}: batch sequence {} has no tokens", m.file.path, i);
    if (s.share_id != 0 && (s.share_len < 0 || s.share_len > kc.n_past))
      fail("{}: batch sequence {} shares {} positions but has {} cached", m.file.path, i, s.share_len, kc.n_past);
    if (kc.n_past < 0 || kc.n_past + s.n > kc.n_ctx)
      fail("{}: KV cache overflow in batch sequence {}: {} cached + {} new positions exceed its {} slots",
           m.file.path, i, kc.n_past, s.n, kc.n_ctx);
    for (size_t j = 0; j < i; ++j)
      if (seqs[j].cache == s.cache) fail("{}: batch sequences {} and {} share one KV cache", m.file.path, j, i);
    for (int t = 0; t < s.n; ++t)
      if (s.tokens[t] < 0 || s.tokens[t] >= c.n_vocab)
        fail("{}: token id {} at position {} of batch sequence {} is out of range [0, {})", m.file.path,
             s.tokens[t], t, i, c.n_vocab);
    R += s.n;
  }

  float* x = ForwardState::fit(b.x, R * dim);
  float* xb = ForwardState::fit(b.xb, R * std::max(dim, qdim));
  float* q = ForwardState::fit(b.q, R * qdim);
  float* kb = ForwardState::fit(b.k, R * kvdim);
  float* vb = ForwardState::fit(b.v, R * kvdim);
  float* att = ForwardState::fit(b.att, R * std::max(dim, qdim));
  float* gate = ForwardState::fit(b.gate, R * c.hidden_dim);
  float* up = ForwardState::fit(b.up, R * c.hidden_dim);
  float* cos_t = ForwardState::fit(b.cos_t, R * half);
  float* sin_t = ForwardState::fit(b.sin_t, R * half);
  const bool local_rope = has_local_rope(c);
  float* cos_l = local_rope ? ForwardState::fit(b.cos_l, R * half) : nullptr;
  float* sin_l = local_rope ? ForwardState::fit(b.sin_l, R * half) : nullptr;

  // Embeddings, and RoPE tables: row r of the batch gets the angles of its own position in its own sequence.
  {
    int64_t r0 = 0;
    for (const BatchSeq& s : seqs) {
      embed_tokens(m, s.tokens, s.n, x + r0 * dim);
      rope_tables(s.cache->n_past, s.n, c.head_dim, c.rope_theta, c.rope_freq_scale, cos_t + r0 * half,
                  sin_t + r0 * half);
      if (local_rope)
        rope_tables(s.cache->n_past, s.n, c.head_dim, c.rope_theta_swa, c.rope_freq_scale_swa, cos_l + r0 * half,
                    sin_l + r0 * half);
      r0 += s.n;
    }
  }
  auto lin = [&](const Linear& L, const float* in, float* out) { batch_linear(L, in, out, seqs, R); };
  // The new keys/values of all rows in kb/vb (attend copies them to the caches), the projections in xb.
  const BlockBuffers bufs{.xb = xb, .q = q, .k = kb, .v = vb, .att = att, .proj = xb, .gate = gate, .up = up,
                          .cos_t = cos_t, .sin_t = sin_t, .cos_l = cos_l, .sin_l = sin_l};

  std::vector<int64_t> row0(seqs.size());
  std::vector<char> grouped(seqs.size());
  std::vector<DecodeRow> group, solo;
  for (int l = 0; l < c.n_layers; ++l) {
    // Each sequence: its new keys/values into its cache, then attention over that cache.
    // Decode rows of sequences that share a prefix (same share_id and share_len) attend together.
    auto attend = [&](const AttentionShape& shape, const float* queries, float* out) {
      int64_t r0 = 0;
      for (size_t i = 0; i < seqs.size(); ++i) {
        const BatchSeq& s = seqs[i];
        KVCache& cache = *s.cache;
        const int pos0 = cache.n_past;
        float* kc = cache.k.data() + (int64_t)l * cache.n_ctx * kvdim;
        float* vc = cache.v.data() + (int64_t)l * cache.n_ctx * kvdim;
        std::memcpy(kc + (int64_t)pos0 * kvdim, kb + r0 * kvdim, sizeof(float) * s.n * kvdim);
        std::memcpy(vc + (int64_t)pos0 * kvdim, vb + r0 * kvdim, sizeof(float) * s.n * kvdim);
        row0[i] = r0;
        grouped[i] = 0;
        r0 += s.n;
      }
      for (size_t i = 0; i < seqs.size(); ++i) {
        if (grouped[i]) continue;
        const BatchSeq& s = seqs[i];
        KVCache& cache = *s.cache;
        const float* kc = cache.k.data() + (int64_t)l * cache.n_ctx * kvdim;
        const float* vc = cache.v.data() + (int64_t)l * cache.n_ctx * kvdim;
        const int64_t r = row0[i];
        if (s.n == 1 && s.share_id != 0 && s.share_len > 0) {
          group.clear();
          for (size_t j = i; j < seqs.size(); ++j) {
            const BatchSeq& t = seqs[j];
            if (grouped[j] || t.n != 1 || t.share_id != s.share_id || t.share_len != s.share_len) continue;
            KVCache& tc = *t.cache;
            group.push_back({queries + row0[j] * qdim, tc.k.data() + (int64_t)l * tc.n_ctx * kvdim,
                             tc.v.data() + (int64_t)l * tc.n_ctx * kvdim, tc.n_past, out + row0[j] * qdim});
            grouped[j] = 1;
          }
          attention_decode_shared(shape, group.data(), (int)group.size(), kvdim, s.share_len);
          continue;
        }
        if (s.n == 1) {  // the other decode rows: together below
          solo.push_back({queries + r * qdim, kc, vc, cache.n_past, out + r * qdim});
          continue;
        }
        attention(shape, queries + r * qdim, kc, vc, kvdim, cache.n_past, s.n, out + r * qdim);
      }
      if (!solo.empty()) attention_decode_rows(shape, solo.data(), (int)solo.size(), kvdim);
      solo.clear();
    };
    transformer_block(m, l, x, (int)R, bufs, lin, attend);
  }
  for (const BatchSeq& s : seqs) s.cache->n_past += s.n;

  if (!logits) return;
  // Gather the rows whose logits were asked for, then one output projection.
  int64_t out_rows = 0, r0 = 0;
  for (const BatchSeq& s : seqs) {
    if (s.all_logits) {
      std::memcpy(att + out_rows * dim, x + r0 * dim, sizeof(float) * s.n * dim);
      out_rows += s.n;
    } else {
      std::memcpy(att + out_rows * dim, x + (r0 + s.n - 1) * dim, sizeof(float) * dim);
      out_rows += 1;
    }
    r0 += s.n;
  }
  rmsnorm(att, m.output_norm, xb, (int)out_rows, dim, c.norm_eps);
  if (m.output.mode == LinearMode::Int8Outlier) {
    for (int64_t r = 0; r < out_rows; ++r)
      linear(m.output, xb + r * dim, logits + r * c.n_vocab, 1);
  } else {
    linear(m.output, xb, logits, (int)out_rows);
  }
  finish_logits(c, logits, out_rows);
}

BatchStats& BatchStats::operator+=(const BatchStats& o) {
  sequences += o.sequences;
  prompt_tokens += o.prompt_tokens;
  prefill_tokens += o.prefill_tokens;
  saved_by_samples += o.saved_by_samples;
  saved_by_prefixes += o.saved_by_prefixes;
  shared_prefixes += o.shared_prefixes;
  peak_prefix_caches = std::max(peak_prefix_caches, o.peak_prefix_caches);
  generated_tokens += o.generated_tokens;
  steps += o.steps;
  prefill_steps += o.prefill_steps;
  slot_steps += o.slot_steps;
  prefill_seconds += o.prefill_seconds;
  decode_seconds += o.decode_seconds;
  sample_seconds += o.sample_seconds;
  callback_seconds += o.callback_seconds;
  return *this;
}

namespace {

struct Seq {
  size_t r = 0;
  int j = 0;
  KVCache cache;
  std::mt19937_64 rng;
  std::vector<int32_t> out;
  std::string text;
  std::vector<int32_t> feed;    // tokens to run next
  std::vector<float> logits;    // logits of the last position (ready when feed is empty)
  bool prefix_source = false;   // its prompt logits/cache are kept for the request's other samples
  int64_t share_id = 0;         // BatchSeq::share_id / share_len: the prefix its cache was copied from
  int share_len = 0;
};

struct Prefix {
  KVCache cache;
  std::vector<float> logits;
  int remaining = 0;  // samples still to start from it
};

// A prompt prefix shared by several requests: tokens [0, len) of the prompt of request `rep` (and of every
// request under it). Its cache is built from its parent's (the longest shared prefix it extends) when the first
// request needing it starts, and freed when the last one has started.
struct PrefixNode {
  int parent = -1;
  int len = 0;
  size_t rep = 0;
  int users = 0;        // requests under it that have not started yet
  bool ready = false;
  KVCache cache;
};

// The prefix tree of the requests `ids` (those that generate): the prompts sorted, lcp[i] = common prefix of
// neighbours i and i+1, capped so that each prompt keeps at least one token of its own (its last position's
// logits come from its own forward pass). A run of neighbours [a, b) shares min(lcp[a..b-1)) = L tokens; it gets
// a node when L exceeds its parent's length by at least min_len, and splits at the neighbours sharing only L
// into runs that share more (the lcp-interval tree). node_of[r] = the deepest node of request r, or -1.
struct PrefixTree {
  std::vector<PrefixNode> nodes;
  std::vector<int> node_of;
  std::vector<size_t> rank;  // position of each request among the sorted prompts
};

PrefixTree build_prefix_tree(const std::vector<GenRequest>& reqs, std::vector<size_t> ids, int min_len) {
  PrefixTree t;
  t.node_of.assign(reqs.size(), -1);
  t.rank.assign(reqs.size(), 0);
  if (min_len <= 0 || ids.size() < 2) return t;
  std::stable_sort(ids.begin(), ids.end(), [&](size_t a, size_t b) { return reqs[a].prompt < reqs[b].prompt; });
  for (size_t i = 0; i < ids.size(); ++i) t.rank[ids[i]] = i;
  std::vector<int> lcp(ids.size() - 1);
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const auto& p = reqs[ids[i]].prompt;
    const auto& q = reqs[ids[i + 1]].prompt;
    const size_t cap = std::min(p.size(), q.size()) - 1;
    size_t k = 0;
    while (k < cap && p[k] == q[k]) ++k;
    lcp[i] = (int)k;
  }
  // Explicit stack instead of recursion: (a, b, parent node, parent length).
  struct Run {
    size_t a, b;
    int parent, base;
  };
  std::vector<Run> stack = {{0, ids.size(), -1, 0}};
  while (!stack.empty()) {
    const Run run = stack.back();
    stack.pop_back();
    if (run.b - run.a == 1) {
      t.node_of[ids[run.a]] = run.parent;
      continue;
    }
    int L = lcp[run.a];
    for (size_t i = run.a; i + 1 < run.b; ++i) L = std::min(L, lcp[i]);
    int node = run.parent, base = run.base;
    if (L - run.base >= min_len) {
      PrefixNode n;
      n.parent = run.parent;
      n.len = L;
      n.rep = ids[run.a];
      n.users = (int)(run.b - run.a);
      t.nodes.push_back(std::move(n));
      node = (int)t.nodes.size() - 1;
      base = L;
    }
    size_t a = run.a;
    for (size_t i = run.a; i < run.b; ++i)
      if (i + 1 == run.b || lcp[i] == L) {
        stack.push_back({a, i + 1, node, base});
        a = i + 1;
      }
  }
  return t;
}

}  // namespace

std::vector<std::vector<std::vector<int32_t>>> generate_batch(const Model& m, const std::vector<GenRequest>& reqs,
                                                              const BatchOptions& bopt) {
  if (bopt.max_batch < 1) fail("generate_batch: batch size {} must be at least 1", bopt.max_batch);
  if (bopt.min_shared_prefix < 0)
    fail("generate_batch: minimum shared prefix {} must not be negative", bopt.min_shared_prefix);
  const int V = m.cfg.n_vocab;
  std::vector<std::vector<std::vector<int32_t>>> result(reqs.size());
  std::vector<std::pair<size_t, int>> queue;
  std::vector<size_t> longest_stop(reqs.size(), 0);
  std::vector<int> n_ctx(reqs.size(), 0);
  std::vector<size_t> generating;  // requests with at least one sequence to run
  BatchStats st;
  ForwardState fs;  // the activations of every forward pass of this call
  for (size_t r = 0; r < reqs.size(); ++r) {
    const GenRequest& q = reqs[r];
    if (q.prompt.empty()) fail("{}: generate needs a non-empty prompt (at least BOS)", m.file.path);
    if ((int)q.prompt.size() >= m.cfg.n_ctx)
      fail("{}: prompt of {} tokens leaves no room in the {}-token context", m.file.path, q.prompt.size(),
           m.cfg.n_ctx);
    for (int32_t t : q.prompt)
      if (t < 0 || t >= V) fail("{}: prompt token id {} is out of range [0, {})", m.file.path, t, V);
    if (q.samples < 1) fail("generate_batch: request {} asks for {} samples", r, q.samples);
  }
  for (size_t r = 0; r < reqs.size(); ++r) {
    const GenRequest& q = reqs[r];
    result[r].assign(q.samples, {});
    longest_stop[r] = longest_stop_string(q.opt.stop_strings);
    n_ctx[r] = (int)std::min<int64_t>(m.cfg.n_ctx, (int64_t)q.prompt.size() + std::max(0, q.opt.max_tokens));
    if (q.opt.max_tokens > 0) {
      generating.push_back(r);
      st.sequences += q.samples;
      st.prompt_tokens += (int64_t)q.samples * (int64_t)q.prompt.size();
      st.saved_by_samples += (int64_t)(q.samples - 1) * (int64_t)q.prompt.size();
    }
    for (int j = 0; j < q.samples; ++j) {
      if (q.opt.max_tokens <= 0) {
        if (bopt.on_done) bopt.on_done(r, j, result[r][j]);
        continue;
      }
      queue.push_back({r, j});
    }
  }
  PrefixTree tree = build_prefix_tree(reqs, generating, bopt.min_shared_prefix);
  st.shared_prefixes = (int64_t)tree.nodes.size();
  // With shared prefixes, requests start in the order of their sorted prompts: the users of a prefix node are
  // then consecutive, so only the nodes on one path of the tree hold a cache at any time (in request order,
  // every node between its first and last user would). A request's samples stay together.
  if (!tree.nodes.empty())
    std::stable_sort(queue.begin(), queue.end(),
                     [&](const auto& a, const auto& b) { return tree.rank[a.first] < tree.rank[b.first]; });

  int64_t live = 0;  // prefix caches held
  // Builds node k's cache (and its parents' first): a copy of the parent's, then the node's own tokens.
  auto prepare = [&](int k) {
    std::vector<int> chain;
    for (int x = k; x >= 0 && !tree.nodes[x].ready; x = tree.nodes[x].parent) chain.push_back(x);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      PrefixNode& n = tree.nodes[*it];
      n.cache = make_cache(m, n.len);
      int base = 0;
      if (n.parent >= 0) {
        copy_cache(tree.nodes[n.parent].cache, n.cache);
        base = tree.nodes[n.parent].len;
      }
      const BatchSeq one{&n.cache, reqs[n.rep].prompt.data() + base, n.len - base, false};
      forward_batch(m, fs, std::span<const BatchSeq>(&one, 1), nullptr);
      st.prefill_tokens += n.len - base;
      n.ready = true;
      st.peak_prefix_caches = std::max(st.peak_prefix_caches, ++live);
    }
  };
  // Request r starts: its prefix nodes lose a user; a node nobody needs any more frees its cache.
  auto release = [&](int k) {
    for (int x = k; x >= 0; x = tree.nodes[x].parent)
      if (--tree.nodes[x].users == 0) {
        tree.nodes[x].cache = KVCache{};
        --live;
      }
  };

  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  std::map<size_t, Prefix> prefixes;
  std::vector<std::unique_ptr<Seq>> active;
  std::vector<BatchSeq> bs;
  std::vector<float> logits;
  size_t next = 0;
  while (next < queue.size() || !active.empty()) {
    // Admit new sequences into free slots.
    Clock::time_point t0 = Clock::now();
    double prefix_s = 0;
    std::vector<size_t> prefilling;
    while ((int)active.size() < bopt.max_batch && next < queue.size()) {
      const auto [r, j] = queue[next];
      const GenRequest& q = reqs[r];
      auto it = prefixes.find(r);
      if (it == prefixes.end() && std::find(prefilling.begin(), prefilling.end(), r) != prefilling.end())
        break;  // its prompt is being run in this step: start from the copy next step
      auto s = std::make_unique<Seq>();
      s->r = r;
      s->j = j;
      s->rng.seed(q.opt.seed + (uint64_t)j);
      s->cache = make_cache(m, n_ctx[r]);
      // Sharing ids: prefix node k -> k + 1, request r's prompt -> nodes + 1 + r (unique within this call).
      if (it != prefixes.end()) {
        copy_cache(it->second.cache, s->cache);
        s->share_id = (int64_t)tree.nodes.size() + 1 + (int64_t)r;
        s->share_len = it->second.cache.n_past;
        s->logits = it->second.logits;
        if (--it->second.remaining <= 0) prefixes.erase(it);
      } else {
        const int k = tree.node_of[r];
        int shared = 0;
        if (k >= 0) {
          const Clock::time_point tp = Clock::now();
          prepare(k);
          prefix_s += seconds_since(tp);
          copy_cache(tree.nodes[k].cache, s->cache);
          shared = tree.nodes[k].len;
          s->share_id = k + 1;
          s->share_len = shared;
          release(k);
        }
        s->feed.assign(q.prompt.begin() + shared, q.prompt.end());
        st.prefill_tokens += (int64_t)s->feed.size();
        s->prefix_source = j + 1 < q.samples;
        prefilling.push_back(r);
      }
      active.push_back(std::move(s));
      ++next;
    }
    st.sample_seconds += seconds_since(t0) - prefix_s;
    st.prefill_seconds += prefix_s;
    // One forward pass over every sequence that has tokens to run.
    bs.clear();
    bool prompt_rows = false;
    for (auto& s : active)
      if (!s->feed.empty()) {
        bs.push_back({&s->cache, s->feed.data(), (int)s->feed.size(), false, s->share_id, s->share_len});
        prompt_rows = prompt_rows || s->out.empty();
      }
    if (!bs.empty()) {
      logits.resize((size_t)bs.size() * V);
      t0 = Clock::now();
      forward_batch(m, fs, bs, logits.data());
      (prompt_rows ? st.prefill_seconds : st.decode_seconds) += seconds_since(t0);
      ++st.steps;
      st.prefill_steps += prompt_rows;
      st.slot_steps += (int64_t)active.size();
      size_t row = 0;
      for (auto& s : active) {
        if (s->feed.empty()) continue;
        s->logits.assign(logits.begin() + (int64_t)row * V, logits.begin() + (int64_t)(row + 1) * V);
        ++row;
        s->feed.clear();
        if (s->prefix_source) {
          const GenRequest& q = reqs[s->r];
          Prefix p;
          p.cache = make_cache(m, s->cache.n_past);
          copy_cache(s->cache, p.cache);
          p.logits = s->logits;
          p.remaining = q.samples - s->j - 1;
          prefixes[s->r] = std::move(p);
          s->prefix_source = false;
          s->share_id = (int64_t)tree.nodes.size() + 1 + (int64_t)s->r;  // its samples' copies hold its prompt
          s->share_len = s->cache.n_past;
        }
      }
    }

    // Pick the next token of every sequence; finished ones leave the batch.
    t0 = Clock::now();
    double callback_s = 0;
    for (auto& sp : active) {
      Seq& s = *sp;
      const GenerateOptions& o = reqs[s.r].opt;
      const int32_t t = sample_token(s.logits.data(), V, o.temperature, o.top_p, s.rng);
      ++st.generated_tokens;
      bool done = false;
      if (o.stop_at_eos && t == m.tok.eos()) {
        done = true;
      } else {
        s.out.push_back(t);
        const size_t ls = longest_stop[s.r];
        if (ls > 0) {
          const std::string p = m.tok.piece(t);
          s.text += p;
          if (new_stop_string(s.text, p.size(), ls, o.stop_strings)) done = true;
        }
        if ((int)s.out.size() >= o.max_tokens || s.cache.n_past >= s.cache.n_ctx) done = true;
      }
      if (done) {
        result[s.r][s.j] = std::move(s.out);
        const Clock::time_point tc = Clock::now();
        if (bopt.on_done) bopt.on_done(s.r, s.j, result[s.r][s.j]);
        callback_s += seconds_since(tc);
        sp.reset();
      } else {
        s.feed.assign(1, t);
      }
    }
    active.erase(std::remove(active.begin(), active.end(), nullptr), active.end());
    st.sample_seconds += seconds_since(t0) - callback_s;
    st.callback_seconds += callback_s;
  }
  st.saved_by_prefixes = st.prompt_tokens - st.prefill_tokens - st.saved_by_samples;
  if (bopt.stats) *bopt.stats = st;
  return result;
}

}  // namespace ctrust
