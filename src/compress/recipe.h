// A compression recipe: the method, every option, and what is needed to reproduce the result
// (calibration file + its hash, seed, ctrust version). Stored as JSON in GGUF metadata ("ctrust.recipe").
// validate_recipe() runs before any work, so bad options fail at once with one clear line.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace ctrust {

enum class Method { RTN, GPTQ, AWQ, SmoothQuant, LLMInt8, Magnitude, Wanda, SparseGPT };

const char* method_name(Method m);
Method method_from_name(std::string_view name);  // "rtn", "gptq", ...; Error lists the valid names
bool method_needs_calibration(Method m);         // all but RTN, magnitude and LLM.int8() (decides at inference)
bool method_is_pruning(Method m);
bool grid_from_name(std::string_view name);
bool awq_qkv_loss_from_name(std::string_view name);  // "attention" -> true, "qkv" -> false; Error otherwise
bool awq_feed_from_name(std::string_view name);      // "fp" -> true, "quantized" -> false; Error otherwise      // "gptq" -> false, "minmax" -> true (Recipe::minmax); Error otherwise

inline constexpr const char* kRecipeKey = "ctrust.recipe";

// One rule of a recipe's "rules" array (`compress --recipe FILE.json`; docs/compression.md, "Recipe files").
// Rules are applied in order to every tensor they match, each setting only the fields it names: for every field
// the LAST matching rule that names it wins (a general rule first, its exceptions after it). They apply on top of
// the recipe's global options and of `tensor_types` (--tensor-type / --types-from).
struct TensorRule {
  std::string match;                     // "re:REGEX" (PCRE2, searched in the name, as --tensor-type) or a glob
                                         // (fnmatch over the whole name: "blk.*.attn_?.weight")
  std::optional<bool> skip;              // true: left alone; false: compressed (the only way a rule selects
                                         // token_embd.weight / output.weight)
  std::optional<Method> method;          // rtn | gptq | magnitude | wanda | sparsegpt (per-tensor methods)
  std::optional<int> bits;               // 2..8; on a pruned tensor: quantize the kept weights (joint mode)
  std::optional<int> group;              // 0 = per output channel
  std::optional<bool> sym;
  std::optional<bool> act_order;
  std::optional<bool> minmax;            // JSON "grid": "gptq" | "minmax"
  std::optional<std::string> type;       // llama.cpp output type (q4_k, q8_0, ...) or "none" (the bits/group grid);
                                         // a rule naming bits/group/sym/grid without type also means "none"
  std::optional<double> sparsity;        // unstructured fraction in [0, 1) ...
  std::optional<std::pair<int, int>> nm; // ... or N:M (JSON "sparsity": "2:4")
};

struct Recipe {
  Method method = Method::GPTQ;
  // Quantization (RTN, GPTQ, AWQ).
  int bits = 4;
  bool sym = false;
  int group = 32;            // 0 = per output channel; 32 matches GGUF Q4_0/Q4_1/Q8_0 blocks
  bool fp16_scales = true;   // grids GGUF can store exactly
  bool minmax = false;       // asymmetric grid over each group's [min, max] (ggml Q4_1 style) instead of the
                             // GPTQ reference grid (integer zero point, 0 on the grid); JSON "grid": "minmax"|"gptq"
  bool zero_point = false;   // asymmetric fp16 grids as (q - z) * scale with an integer zero point (CTRUST_QX "zp", the
                             // form GPTQ/AWQ checkpoints store: export-hf reproduces them exactly) instead of ggml's
                             // affine q * d + m; JSON "zero_point" (written only when true)
  // Output type (RTN, GPTQ, AWQ): "" = the grid of bits/sym/group above; a ggml type name stores every selected
  // tensor in that type: q2_k|q3_k|q4_k|q5_k|q6_k (K-quant super-blocks, docs/compression.md "K-quants") or
  // q4_0|q4_1|q5_0|q5_1|q8_0 (bits/sym/group 32 set from the type). JSON "type" (written only when set).
  std::string type;
  // Per-tensor output types, first matching regex wins over `type`: {regex, type name or "none" (left alone)}.
  // `ctrust compress --types-from FILE.gguf` fills it with every quantized tensor of FILE (exact names), so that
  // a llama.cpp mix such as Q4_K_M is reproduced tensor by tensor. A rule naming token_embd/output selects it
  // (stored with ggml's own quantizer: those tensors have no calibration inputs). JSON "tensor_types".
  std::vector<std::pair<std::string, std::string>> tensor_types;
  // K-quant fit: no imatrix = ggml's quantize_row_*_ref (llama-quantize without an imatrix); an imatrix file
  // (compress --imatrix FILE, llama.cpp's GGUF format, compress/imatrix.h) = ggml's quantize_row_*_impl weighted by
  // it (llama-quantize --imatrix). JSON "imatrix", "imatrix_hash" (written only when set).
  std::string imatrix_file;
  std::string imatrix_hash;
  // Legacy output types q4_0|q5_0|q8_0 (from type / tensor_types): false = the GPTQ reference grid packed into
  // the type; true = the scale ggml's own quantizer chooses (imatrix-weighted with imatrix_file), GPTQ/RTN rounding
  // on it. JSON "legacy_fit": "ggml" (written only when true).
  bool legacy_ggml_fit = false;
  // GPTQ / SparseGPT.
  double damp = 0.01;
  int block = 128;
  bool act_order = false;
  bool static_groups = false;
  // AWQ.
  int awq_grid = 20;
  bool awq_clip = true;
  double awq_max_shrink = 0.5;
  bool awq_attn_loss = true;     // q/k/v scales by the attention module's output (llm-awq); false: by the MSE of the
                                 // q, k, v outputs (ctrust before issue 12). JSON "awq_qkv_loss": "attention"|"qkv"
  bool awq_fp_feed = true;       // next block fed the unquantized outputs (llm-awq); false: the quantized ones.
                                 // JSON "awq_feed": "fp"|"quantized"
  int awq_search_tokens = 1024;  // scale-search sample: MLP loss on every n/this-th token, attention loss on
                                 // every N/ceil(this/L)-th sequence (0 = all)
  // SmoothQuant.
  double alpha = 0.5;
  // LLM.int8().
  double threshold = 6.0;
  // Pruning: unstructured sparsity, or N:M (keep N of every M consecutive inputs) when prune_m > 0.
  double sparsity = 0.5;
  int prune_n = 0, prune_m = 0;
  // Joint sparsity + quantization (SparseGPT's reference with wbits < 16): the kept weights are quantized with the
  // bits/sym/group grid (SparseGPT: in the same column sweep that chooses the mask; magnitude/Wanda: RTN after
  // pruning). JSON: a pruning recipe with "bits" (written only when set).
  bool prune_quant = false;
  // Per-tensor rules (see TensorRule). JSON "rules" (written only when set).
  std::vector<TensorRule> rules;
  // Calibration.
  std::string calib_file;  // text file (default: ../shared/data/wikitext-2-tokens/wiki.valid.tokens)
  std::string calib_hash;  // FNV-1a 64 of its bytes, hex (filled by the calibration step)
  bool calib_clean = true; // WikiText clean-up of the text before tokenizing (clean_calibration_text)
  std::string calib_chat;  // chat template the samples were rendered with ("" = plain text windows)
  int n_samples = 32;      // N sequences ...
  int seq_len = 256;       // ... of L tokens
  uint64_t seed = 0;
  // Which tensors: regexes (PCRE2) on GGUF names; lm_head/embeddings are skipped unless `only` names them.
  std::string skip;
  std::string only;
  std::string ctrust_version = CTRUST_VERSION;
};

nlohmann::json recipe_to_json(const Recipe& r);
// Unknown keys and wrong types are Errors ("recipe: ..."); missing keys keep their defaults.
Recipe recipe_from_json(const nlohmann::json& j);
std::string recipe_to_string(const Recipe& r);  // compact JSON
Recipe recipe_from_string(std::string_view s);
// A recipe file (JSON object with the keys of recipe_to_json, "rules" included). Error on unreadable/invalid files.
Recipe recipe_from_file(const std::string& path);
// A recipe written by a user (a recipe file's JSON, or the Python module's dict): as recipe_from_json, but missing
// keys take today's defaults, not those of a stored recipe written before the key existed.
Recipe recipe_from_user_json(nlohmann::json j);
// "0.5" (unstructured fraction) or "N:M" into r.sparsity / r.prune_n, r.prune_m. Error otherwise.
void set_sparsity(Recipe& r, std::string_view spec);

// The recipe that applies to tensor `name`: the global options, `tensor_types` resolved into `type`, then every
// matching rule in order. The result has no rules and no tensor_types (its `type` is the tensor's output type).
Recipe recipe_for_tensor(const Recipe& r, const std::string& name);
// Whether the method or any rule's method needs calibration inputs.
bool recipe_needs_calibration(const Recipe& r);

// Option checks independent of the model: bits outside 2..8, negative group, sparsity outside [0, 1),
// N > M, damp < 0, alpha outside [0, 1], threshold <= 0, N or L < 1, invalid regexes.
void validate_recipe(const Recipe& r);
// Checks against one weight tensor: group size / M dividing the input dimension, and whether the method
// applies to this tensor (1-D tensors never; calibration methods only to the Linears of the blocks).
void validate_tensor(const Recipe& r, const std::string& name, int64_t out, int64_t in, int n_dims);
// The calibration text must hold at least N x L tokens.
void validate_calibration_size(const Recipe& r, int64_t n_tokens, const std::string& file);

// Whether the recipe compresses the 2-D tensor `name`: `only` (if set) must match and `skip` must not;
// token_embd.weight and output.weight are skipped unless `only` (or a type rule) matches them explicitly; then the
// matching rules' "skip" fields in order (the last one wins).
bool tensor_selected(const Recipe& r, const std::string& name);
// The output type name for tensor `name` (rules, else tensor_types, else type); "" = the bits/group grid.
std::string tensor_type(const Recipe& r, const std::string& name);
// Output type names a quantizer can write: K-quants and q4_0/q4_1/q5_0/q5_1/q8_0. Error for any other name.
void check_output_type(const std::string& type, const char* what);

// FNV-1a 64 of a file's bytes, as 16 hex digits. Throws Error if it cannot be read.
std::string file_hash(const std::string& path);

}  // namespace ctrust
