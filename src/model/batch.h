// Batched inference: many sequences advance together, each on its own KV cache.
//
// forward_batch() is the primitive: every sequence appends n_i >= 1 tokens to its own cache; the rows of all
// sequences go through each weight matrix as one GEMM (ops::linear), attention runs per sequence over its own
// cache, and the logits of the positions asked for are returned. generate_batch() builds batched decoding on
// it: per-sequence stop conditions, greedy or seeded sampling, and k samples per prompt sharing one prefill.
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
};

// Runs every sequence and appends to its cache. `logits` (if not null) receives the requested rows of all
// sequences, in sequence order: n rows for an all_logits sequence, 1 row otherwise (n_vocab floats per row).
// Each sequence's values equal what forward() on that sequence alone computes, up to BLAS rounding (GEMM over
// the batch rows instead of GEMV for one row). Linears in the LLM.int8() outlier mode pick their outlier
// columns from the rows of the call, so for them each sequence is multiplied separately (batch-independent).
// Throws Error on a cache that does not fit the model, overflow, an empty sequence or a bad token id;
// nothing is appended to any cache then.
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

struct BatchOptions {
  int max_batch = 8;             // sequences decoded at once (>= 1)
  // Called when a sequence finishes: request index, sample index, generated tokens (EOS excluded).
  std::function<void(size_t request, int sample, const std::vector<int32_t>& tokens)> on_done;
};

// Generates for every request; result[r][j] = tokens of sample j of request r. Sample j of a request equals
// generate(m, prompt, opt with seed = opt.seed + j) token for token (up to BLAS rounding, see forward_batch),
// whatever the batch size: each sequence has its own std::mt19937_64 and its own stop conditions (EOS,
// stop strings, max_tokens, full context). The prompt of a request is run once; its other samples start
// from a copy of that KV cache and of the prompt's last logits.
std::vector<std::vector<std::vector<int32_t>>> generate_batch(const Model& m, const std::vector<GenRequest>& reqs,
                                                              const BatchOptions& bopt = {});

}  // namespace ctrust
