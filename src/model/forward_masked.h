// A forward pass over a batch of tokens that are not one consecutive run: explicit positions and an
// attention mask among the new tokens. It lets the scorer run all choices of an item (or a context and its
// choices) in one batch: every continuation sees the shared context and only its own earlier tokens, so the
// matrix products get many rows while each sequence computes exactly what it would alone.
#pragma once
#include <cstdint>

#include "model/model.h"

namespace ctrust {

// Runs tokens[0..n) and appends their keys/values to the cache at slots cache.n_past .. cache.n_past+n-1.
//  * pos[i]: the token's position (RoPE angle); the cached slots [0, n_past) hold positions 0 .. n_past-1.
//  * Every new token attends to all n_past cached slots; new token i attends to new token j iff
//    mask[i*n + j] != 0. The mask must be lower-triangular with a set diagonal.
//  * Logits (n_vocab each) are computed only for the rows out_rows[0..n_out), written in that order to logits.
// With pos[i] = n_past + i and the causal mask this is forward(m, cache, tokens, n, ...) restricted to the
// listed rows. Throws Error on cache overflow, token ids out of range, bad rows or a bad mask.
// Exception: with LLM.int8() Linears (LinearMode::Int8Outlier) the outlier columns are chosen from all n rows
// of the call, so the rows of different sequences packed together change each other's results (the scorer
// then runs each item alone, see eval/score.h); the same holds for how forward() is split into calls.
// st: the activations (model/forward_state.h), kept by a caller that runs many batches (ItemScorer); the overload
// without it makes a state for the call.
void forward_masked(const Model& m, ForwardState& st, KVCache& cache, const int32_t* tokens, const int32_t* pos,
                    int n, const unsigned char* mask, const int32_t* out_rows, int n_out, float* logits);
void forward_masked(const Model& m, KVCache& cache, const int32_t* tokens, const int32_t* pos, int n,
                    const unsigned char* mask, const int32_t* out_rows, int n_out, float* logits);

}  // namespace ctrust
