// The transformer (Llama family, config-driven), its KV cache, and the primitives every later stage uses:
// logits/log-probabilities of every position of a token sequence, and generation.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/model_file.h"
#include "io/tokenizer.h"
#include "model/forward_state.h"
#include "ops/linear.h"

namespace ctrust {

struct LayerWeights {
  const float* attn_norm = nullptr;  // [dim]
  Linear wq, wk, wv, wo;             // q: dim -> n_heads*head_dim, k/v: dim -> n_kv_heads*head_dim, o: back to dim
  const float* ffn_norm = nullptr;   // [dim]
  Linear w_gate, w_up, w_down;       // gated FFN: down(act(gate(x)) * up(x)), act = cfg.act (SiLU, GELU)
  // Only when the config asks for them (cfg.qk_norm, cfg.post_norms), else null:
  const float* q_norm = nullptr;     // [head_dim] attn_q_norm, RMSNorm of each query head before RoPE
  const float* k_norm = nullptr;     // [head_dim] attn_k_norm
  const float* attn_post_norm = nullptr;  // [dim] post_attention_norm, on the attention output before the add
  const float* ffn_post_norm = nullptr;   // [dim] post_ffw_norm, on the FFN output before the add
};

// The seven Linears of a block in the order the forward pass runs them, with their GGUF tensor names
// ("blk.N.<name>.weight"). The one list every stage iterates (modes, calibration, compression).
struct BlockLinear {
  const char* name;
  Linear LayerWeights::*member;
};
inline constexpr BlockLinear kBlockLinears[] = {
    {"attn_q", &LayerWeights::wq},          {"attn_k", &LayerWeights::wk},      {"attn_v", &LayerWeights::wv},
    {"attn_output", &LayerWeights::wo},     {"ffn_gate", &LayerWeights::w_gate}, {"ffn_up", &LayerWeights::w_up},
    {"ffn_down", &LayerWeights::w_down}};

struct Model {
  LoadedModel file;  // owns the tensors the pointers below refer to
  ModelConfig cfg;
  Tokenizer tok;
  const float* tok_embd = nullptr;  // [n_vocab][dim]; null in the native mode when the embedding is quantized
  const Tensor* tok_embd_t = nullptr;  // the embedding tensor (rows dequantized on demand when tok_embd is null)
  std::vector<LayerWeights> layers;
  const float* output_norm = nullptr;
  Linear output;                    // dim -> n_vocab (tied: token_embd)
};

// Validates shapes against the config (vocab vs embedding rows, head counts, ...) and builds the model.
// Throws Error("<path>: ...") on any disagreement.
std::unique_ptr<Model> make_model(LoadedModel lm);
// load_model + make_model.
std::unique_ptr<Model> open_model(const std::string& path, const LoadOptions& opts = {});
// Re-points the layer/Linear pointers at model.file.tensors (after a stage replaced tensor data).
void rebind_weights(Model& m);

// Inference modes are part of a compressed model (SmoothQuant's W8A8, LLM.int8()'s outlier split): they are
// saved as GGUF metadata "ctrust.linear_modes" = ["blk.0.attn_q.weight=w8a8", "blk.0.ffn_up.weight=llm_int8:6", ...]
// and make_model applies them when it loads the file.
std::vector<GgufKV> linear_mode_metadata(const Model& m);
void apply_linear_mode_metadata(Model& m);  // throws Error on an unknown tensor or mode
// Inference modes (W8A8, LLM.int8()) need f32 weights: dequantizes the weights of such Linears that are held in
// their storage type (native compute mode) and rebinds. make_model calls it; so must code that sets modes.
void materialize_mode_weights(Model& m);
// The compute mode the model was loaded in (m.file.compute).
inline ComputeMode compute_mode(const Model& m) { return m.file.compute; }

// Key/value cache of one sequence: positions [0, n_past) are filled.
struct KVCache {
  int n_ctx = 0;
  int n_past = 0;
  int kv_dim = 0;
  std::vector<float> k, v;  // [n_layers][n_ctx][kv_dim]
  void truncate(int n) { if (n < n_past) n_past = n; }  // forget positions >= n (prefix reuse)
};
KVCache make_cache(const Model& m, int n_ctx);

// Observes the input of every Linear during a forward pass (calibration for compression):
// layer index, tensor name without the "blk.N." prefix ("attn_q", "ffn_down", ...), rows x cols activations.
using LinearObserver = std::function<void(int layer, std::string_view name, const float* x, int rows, int cols)>;

struct ForwardOptions {
  bool all_logits = true;            // false: only the last position's logits
  const LinearObserver* observer = nullptr;
};

// Runs tokens[0..n) at positions cache.n_past .. cache.n_past+n-1, appending to the cache.
// logits (if not null) receives n x n_vocab values (all_logits) or n_vocab values (last only).
// Throws Error if the cache would overflow or a token id is out of range.
// st holds the activations (model/forward_state.h): a caller that runs forward passes in a loop keeps one state
// for all of them. The overload without a state makes one for the call (its buffers are freed on return):
// for one-off calls only.
void forward(const Model& m, ForwardState& st, KVCache& cache, const int32_t* tokens, int n, float* logits,
             const ForwardOptions& opt = {});
void forward(const Model& m, KVCache& cache, const int32_t* tokens, int n, float* logits,
             const ForwardOptions& opt = {});

// log p(tokens[i] | tokens[0..i)) for i = 1..n-1 (n-1 values), in chunks that fit the cache.
std::vector<float> token_logprobs(const Model& m, std::span<const int32_t> tokens);

// In-place log-softmax of one row of logits: row_i - (max + float(log(sum_j e^(row_j - max)))), the sum in double.
// log_softmax_ref is the plain loop; log_softmax gives the same floats bit for bit (the sum vectorized, with a
// proven error bound, and the plain loop wherever the bound cannot decide the rounding; ModelTest.LogSoftmax*).
void log_softmax(float* row, int n);
void log_softmax_ref(float* row, int n);
// log_softmax(row, n), then the index std::max_element would give on the result (the first of the largest).
int log_softmax_argmax(float* row, int n);

struct GenerateOptions {
  int max_tokens = 128;
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool stop_at_eos = true;
  std::vector<std::string> stop_strings;
};
// Stop strings, written once for generate(), generate_batch(), the trust runs and `ctrust generate`:
// the longest one (how much text a check looks back), whether the text ends in a stop string that ends inside its
// last `piece` bytes (only such a match is new), and the text cut at the stop strings (at each in turn, in order).
size_t longest_stop_string(const std::vector<std::string>& stops);
bool new_stop_string(const std::string& text, size_t piece, size_t longest, const std::vector<std::string>& stops);
std::string cut_at_stop_strings(std::string text, const std::vector<std::string>& stops);
// Generated text shown as it comes: push() appends a piece and returns the text now safe to show (all but the
// last longest-stop bytes, which might begin a stop string, and nothing from a stop string on); finish() returns
// the rest, cut at the stop strings.
class StopStringStream {
 public:
  explicit StopStringStream(std::vector<std::string> stops);
  std::string push(const std::string& piece);
  std::string finish();
  const std::string& text() const { return text_; }  // every piece pushed (cut after finish())

 private:
  std::vector<std::string> stops_;
  size_t hold_ = 0, shown_ = 0;
  std::string text_;
};

// Picks the next token from one row of logits (modified in place). temperature <= 0: argmax (lowest id on ties).
// Otherwise: p = softmax(logits / temperature); if top_p < 1, keep the smallest set of most probable tokens
// (sorted by p descending, ties by lower id) whose cumulative p reaches top_p; draw u = (rng() >> 11) * 2^-53
// (uniform in [0,1)) and return the first kept token (in that order) whose cumulative p exceeds u * kept mass.
int32_t sample_token(float* logits, int n_vocab, float temperature, float top_p, std::mt19937_64& rng);

// Generates after the prompt (which should already carry BOS if the model wants it).
// on_token (optional) is called with each new token id; returning false stops.
std::vector<int32_t> generate(const Model& m, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                              const std::function<bool(int32_t)>& on_token = {});

}  // namespace ctrust
