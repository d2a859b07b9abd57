// The activations of a forward pass, owned by the caller (as gemma.cpp's Activations): every intermediate of
// the rows of one call of forward(), forward_masked(), forward_batch() or the compression driver's
// block_forward() -- embedding rows, normed rows, queries, new keys/values, attention output, FFN gate/up, RoPE
// tables, the rows gathered for the output head.
//
// Whoever runs forward passes in a loop holds one state and passes it to every call (the scorer, the
// generators, the perplexity/KL chunk runner, compression's calibration): its buffers grow to the largest call
// (rows x the model's widths) and are reused, so a loop allocates once; they are freed when the state goes away
// (or by release()). Nothing of a forward pass outlives its state: there is no hidden per-thread pool. A state
// serves one call at a time; threads running forward passes at once each hold their own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "io/model_file.h"

namespace ctrust {

class ForwardState {
 public:
  ForwardState() = default;
  // Sized up front for calls of up to `rows` new tokens (all rows of a batch) of a model with config c.
  ForwardState(const ModelConfig& c, int64_t rows) { reserve(c, rows); }
  ForwardState(ForwardState&&) = default;
  ForwardState& operator=(ForwardState&&) = default;
  ForwardState(const ForwardState&) = delete;
  ForwardState& operator=(const ForwardState&) = delete;

  // Grows the buffers that every forward function uses to `rows` rows of config c (what a call of that many
  // rows would grow them to; forward_batch's and block_forward's extra buffers still grow on first use).
  void reserve(const ModelConfig& c, int64_t rows);
  // Bytes held by the buffers.
  size_t capacity_bytes() const;
  // Frees every buffer (capacity_bytes() == 0 afterwards); the next call grows them again.
  void release();

  // The buffers, for the forward functions (src/model, compression's block_forward). fit(b, n) grows buffer b
  // to at least n floats (new values zero, old ones kept) and returns its data.
  static float* fit(std::vector<float>& b, int64_t n) {
    if ((int64_t)b.size() < n) b.resize((size_t)n);
    return b.data();
  }
  std::vector<float> x, xb, q, k, v, att, proj, gate, up, cos_t, sin_t, cos_l, sin_l, sel;
};

}  // namespace ctrust
