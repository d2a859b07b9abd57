// Batched inference: many sequences advance together, each on its own KV cache.
//
// forward_batch() is the primitive: every sequence appends n_i >= 1 tokens to its own cache; the rows of all
// sequences go through each weight matrix as one GEMM (ops::linear), attention runs per sequence over its own
// cache, and the logits of the positions asked for are returned. generate_batch() builds batched decoding on
// it: per-sequence stop conditions, greedy or seeded sampling, k samples per prompt sharing one prefill, and
// prompts that begin with the same tokens (chat template, system prompt, task description, demonstrations)
// sharing the KV cache of that common prefix.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/model.h"

namespace ctrust {

// One sequence of a batched forward pass: tokens[0..n) go to positions cache->n_past .. n_past+n-1.
struct BatchSeq {
  KVCache* cache = nullptr;
  const int32_t* tokens = nullptr;
  int n = 0;                  // >= 1
  bool all_logits = false;    // true: logits of all n positions; false: of the last one only
  // Positions [0, share_len) of this cache hold the same keys and values as those of every other sequence of the
  // call with the same share_id (copies of one prompt prefix; 0 = none, share_len <= cache->n_past). Decode rows
  // (n == 1) of such sequences attend together (attention_decode_shared: the prefix read once for all of them);
  // the results are the same floats either way.
  int64_t share_id = 0;
  int share_len = 0;
};

// Runs every sequence and appends to its cache. `logits` (if not null) receives the requested rows of all
// sequences, in sequence order: n rows for an all_logits sequence, 1 row otherwise (n_vocab floats per row).
// Each sequence's values equal what forward() on that sequence alone computes, up to BLAS rounding (GEMM over
// the batch rows instead of GEMV for one row). Linears in the LLM.int8() outlier mode pick their outlier
// columns from the rows of the call, so for them each sequence is multiplied separately (batch-independent).
// Throws Error on a cache that does not fit the model, overflow, an empty sequence or a bad token id;
// nothing is appended to any cache then.
// st: the activations of the call (model/forward_state.h), kept across calls by the caller (generate_batch holds
// one for its whole loop); the overload without it makes a state for the call.
void forward_batch(const Model& m, ForwardState& st, std::span<const BatchSeq> seqs, float* logits);
void forward_batch(const Model& m, std::span<const BatchSeq> seqs, float* logits);

// Rows forward_batch writes for these sequences.
int64_t batch_logit_rows(std::span<const BatchSeq> seqs);

// Copies the filled positions [0, n_past) of src into dst (same model; dst.n_ctx >= src.n_past).
void copy_cache(const KVCache& src, KVCache& dst);

struct GenRequest {
  std::vector<int32_t> prompt;   // non-empty, shorter than the model's context (as for generate())
  GenerateOptions opt;
  int samples = 1;               // k generations of this prompt; sample j uses the seed opt.seed + j
};

// What generate_batch ran and what sharing saved. prompt_tokens is what prefilling every sample's prompt on its
// own would cost; prefill_tokens what was run: prompt_tokens = prefill_tokens + saved_by_samples +
// saved_by_prefixes.
struct BatchStats {
  int64_t sequences = 0;          // samples generated (requests x samples, max_tokens > 0)
  int64_t prompt_tokens = 0;      // sum over samples of the prompt length
  int64_t prefill_tokens = 0;     // prompt tokens actually run (shared prefixes once, then each suffix)
  int64_t saved_by_samples = 0;   // samples 2..k of a request start from the first one's prompt cache
  int64_t saved_by_prefixes = 0;  // requests start from a shared prefix's cache
  int64_t shared_prefixes = 0;    // prefix caches built (nodes of the prefix tree)
  int64_t peak_prefix_caches = 0; // most prefix caches held at once (the depth of the tree, not its size)
  int64_t generated_tokens = 0;   // tokens sampled (including an EOS that ended a sequence)
  // Where the time went (wall clock, steady_clock). A step is one forward_batch over the active sequences;
  // slot_steps sums the sequences in the batch over the steps (mean occupancy = slot_steps / steps, of max_batch).
  int64_t steps = 0;              // forward passes of the generation loop
  int64_t prefill_steps = 0;      // of them, passes with prompt rows (new sequences' prompts beside decode rows)
  int64_t slot_steps = 0;
  double prefill_seconds = 0;     // passes with prompt rows, and building the shared prefixes' caches
  double decode_seconds = 0;      // passes of decode rows only
  double sample_seconds = 0;      // sampling, stop checks, starting sequences (KV cache copies)
  double callback_seconds = 0;    // on_done (a trust run decodes, parses and stores the record there)
  BatchStats& operator+=(const BatchStats& o);
};

struct BatchOptions {
  int max_batch = 8;             // sequences decoded at once (>= 1)
  // Prompts sharing a prefix of at least this many tokens (capped so that every prompt keeps >= 1 own token)
  // run that prefix once; 0 turns prefix sharing off. Nested prefixes (a system prompt shared by all, a set of
  // demonstrations shared by some) each get their own cache when they add at least this many tokens.
  int min_shared_prefix = 16;
  BatchStats* stats = nullptr;   // if set, receives the counts of this call (overwritten)
  // Called when a sequence finishes: request index, sample index, generated tokens (EOS excluded).
  std::function<void(size_t request, int sample, const std::vector<int32_t>& tokens)> on_done;
};

// Generates for every request; result[r][j] = tokens of sample j of request r. Sample j of a request equals
// generate(m, prompt, opt with seed = opt.seed + j) token for token (up to BLAS rounding, see forward_batch),
// whatever the batch size: each sequence has its own std::mt19937_64 and its own stop conditions (EOS,
// stop strings, max_tokens, full context). The prompt of a request is run once; its other samples start
// from a copy of that KV cache and of the prompt's last logits. Requests whose prompts share a prefix
// (BatchOptions::min_shared_prefix; found on the prompts sorted, from the longest common prefixes of
// neighbours) start from a copy of that prefix's KV cache, built once, and run only the rest of their prompt;
// they then start in the order of their sorted prompts (so that only one path of prefix caches is held at a
// time), and on_done reports completions in that order.
// Splitting a prompt's prefill into prefix and suffix changes only how rows are grouped into matrix products
// (as batching does), so the tokens are those of generate() in the same sense as above.
std::vector<std::vector<std::vector<int32_t>>> generate_batch(const Model& m, const std::vector<GenRequest>& reqs,
                                                              const BatchOptions& bopt = {});

}  // namespace ctrust
