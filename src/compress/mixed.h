// KL-guided mixed precision (issue 12, point 4): per-block output types chosen to minimize the model's predicted
// KL to the unquantized model under a size budget (`ctrust compress --target-bpw B --objective kl|flips`).
//
//  1. Sensitivity (measure_sensitivity): for every unit (one transformer block: its seven Linears, or with
//     --mix-unit tensor one block Linear alone, so that e.g. ffn_down can take a finer grid than its block) and every
//     candidate level (a K-quant or legacy type name), only that unit is quantized (RTN in the level's grid:
//     ggml's fit, imatrix-weighted when the recipe has one -- llama-quantize's quantization), the rest of the
//     model stays as it is, and the token KL(P_model || P_quantized) and the top-1 flip rate are measured on the
//     calibration sequences (every position, full vocabulary, f32). The unit's stored bytes at that level are
//     exact (the packed tensors' sizes).
//  2. Choice (mix_frontier / choose_mix): the predicted KL of a mix is the sum of its units' KLs (additivity is an
//     assumption, checked afterwards by measuring the mixed model on the same tokens); the exact Pareto frontier
//     of (bytes, predicted cost) over all per-unit choices is built unit by unit (a multiple-choice knapsack,
//     dominated states dropped), and the cheapest point within the budget is taken.
//  3. The recipe gets one exact-name tensor_types rule per block Linear (its unit's level); compress_model writes the model with
//     the chosen method (RTN or GPTQ) on those types.
// A level whose K-quant super-block (256) does not divide a tensor's inputs falls back as llama-quantize does
// (mixed_tensor_type). docs/compression.md, "KL-guided mixed precision".
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/calib.h"
#include "compress/recipe.h"
#include "model/model.h"

namespace ctrust {

struct Imatrix;

// The default candidate levels.
inline const std::vector<std::string> kMixLevels = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_0"};

// The type a tensor with `cols` inputs gets at `level`: the level itself, or for a K-quant when cols is not a
// multiple of 256 llama-quantize's fallback (q2_k, q3_k -> q4_0; q4_k -> q5_0; q5_k -> q5_1; q6_k -> q8_0), as the
// llama.cpp built here (llama-quant.cpp of llama-cpp-python 0.3.36's vendor tree) does; upstream llama.cpp takes IQ4_NL
// for q2_k/q3_k, of the same size (4.5 bits), which ctrust does not write.
std::string mixed_tensor_type(const std::string& level, int64_t cols);

// The units of a mix: "block" (blk.L: its seven Linears) or "tensor" (blk.L.attn_q, ...: one Linear each), in
// the forward pass's order. Throws Error on another kind.
struct MixUnit {
  std::string name;                  // "blk.3" or "blk.3.ffn_down"
  int layer = 0;
  std::vector<std::string> tensors;  // GGUF names of its Linears ("blk.3.ffn_down.weight")
};
std::vector<MixUnit> mix_units(const Model& m, const std::string& kind);

struct SensitivityTable {
  std::string model;                 // what was measured (file name, for the record)
  std::string unit = "block";        // block | tensor (mix_units)
  std::vector<std::string> units;    // "blk.0", "blk.1", ... or "blk.0.attn_q", ...
  std::vector<std::string> levels;   // candidate level names
  // [unit][level]: mean token KL (nats) when only this unit is quantized at the level, its standard error over
  // tokens, the fraction of tokens whose top-1 token changed, and the unit's stored bytes.
  std::vector<std::vector<double>> kl, kl_se, flips;
  std::vector<std::vector<uint64_t>> bytes;
  int64_t tokens = 0;                // calibration tokens scored
  std::string calib_file, calib_hash;
  int n_samples = 0, seq_len = 0;
  uint64_t seed = 0;
  std::string imatrix_hash;          // the fits' imatrix ("" = unweighted)
  bool legacy_ggml_fit = false;
  nlohmann::json to_json() const;
};
// Throws Error("<what>: ...") on a malformed table.
SensitivityTable sensitivity_from_json(const nlohmann::json& j, const std::string& what);

// Measures the table on m (f32 compute mode; left unchanged). recipe supplies imatrix_file/legacy_ggml_fit for the
// fits; imatrix must be given when recipe.imatrix_file is set. progress(done, total) after each (unit, level).
SensitivityTable measure_sensitivity(Model& m, const Calibration& calib, const std::vector<std::string>& levels,
                                     const std::string& unit, const Recipe& recipe, const Imatrix* imatrix,
                                     const std::function<void(int done, int total)>& progress = {});

// One point of the frontier: the level index per unit, its total bytes and total predicted cost.
struct MixChoice {
  std::vector<int> pick;
  uint64_t bytes = 0;
  double cost = 0;
};
// The exact Pareto frontier of (sum of bytes[u][pick[u]], sum of cost[u][pick[u]]) over all choices, by
// increasing bytes and strictly decreasing cost (ties in cost keep the smaller size). Every unit must have the
// same number (>= 1) of options. Throws Error on an empty or ragged table or a non-finite cost.
std::vector<MixChoice> mix_frontier(const std::vector<std::vector<uint64_t>>& bytes,
                                    const std::vector<std::vector<double>>& cost);
// The frontier point of least cost with bytes <= budget. Throws Error (with the smallest possible size) if none.
MixChoice choose_mix(const std::vector<MixChoice>& frontier, uint64_t budget);

// Sizes of m's tensors as compress + save_gguf would write them with recipe r, for the tensors outside the
// units (every tensor but the block Linears): a tensor_types rule's type for token_embd/output, else the
// stored type (1-D: F32). Also the total element count of all tensors (for bits per weight).
struct FixedSize {
  uint64_t bytes = 0;
  int64_t elements = 0;
};
FixedSize mixed_fixed_size(const Model& m, const Recipe& r);

// Adds one exact-name rule per block Linear (`^blk\.L\.NAME\.weight$` = its unit's level's type) in front of r's
// rules. Throws Error when the table's units are not the model's (mix_units of the table's kind).
void apply_mix(Recipe& r, const Model& m, const SensitivityTable& t, const std::vector<int>& pick);

// Tensor data bytes and elements of a GGUF file (what llama.cpp's "model size" and "BPW" count).
FixedSize gguf_tensor_size(const std::string& path);

// Mean token KL(P_a || P_b) and top-1 flip rate of two models on the calibration sequences (every position,
// full vocabulary): the measured counterpart of a mix's predicted sum (additivity check).
struct PairKl {
  double kl = 0, kl_se = 0, flips = 0;
  int64_t tokens = 0;
};
PairKl calibration_kl(const Model& a, const Model& b, const Calibration& calib);

// The whole planning step of `compress --target-bpw`.
struct MixOptions {
  double target_bpw = 0;          // bits per weight over every tensor of the written file (llama.cpp's BPW)
  std::string objective = "kl";   // kl | flips
  std::string unit = "block";     // block | tensor: what one choice covers (mix_units)
  std::vector<std::string> levels = kMixLevels;
  std::string calib_file;         // sensitivity text ("" = default_calibration_file())
  bool calib_clean = true;
  int n_samples = 4, seq_len = 256;
  uint64_t seed = 0;
  std::string table_path;         // reuse this table if it exists (must match), else measure and write it
  std::function<void(int done, int total)> progress;
};
struct MixPlan {
  SensitivityTable table;
  bool table_reused = false;
  Calibration calib;              // the sensitivity sample (for the additivity check)
  FixedSize fixed;                // tensors outside the units; elements = all tensors
  uint64_t budget = 0;            // total tensor bytes allowed: floor(target_bpw * elements / 8)
  std::vector<MixChoice> frontier;
  MixChoice choice;
  double predicted_kl = 0, predicted_flips = 0;  // sums of the chosen units' table entries
  uint64_t total_bytes() const { return fixed.bytes + choice.bytes; }
};
// Validates the options, measures (or reuses) the table, chooses the mix and adds its rules to r (apply_mix).
MixPlan plan_mixed_precision(Model& m, Recipe& r, const Imatrix* imatrix, const MixOptions& o);

}  // namespace ctrust
