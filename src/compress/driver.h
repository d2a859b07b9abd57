// Model-level compression: calibration data, the sequential block-by-block driver, inference modes.
// The driver follows the GPTQ/SparseGPT reference code: the calibration sequences are embedded, then for each
// block i the inputs of its Linears are captured (their Hessians / statistics) from the outputs of the already
// compressed blocks 0..i-1, the block's selected Linears are compressed, and the block is re-run with the
// compressed weights to give the inputs of block i+1. Only one block's activations are held at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "compress/calib.h"
#include "compress/recipe.h"
#include "io/gguf.h"
#include "model/model.h"

namespace ctrust {

struct TensorReport {
  std::string name;
  int out = 0, in = 0;
  double error = -1;      // ||W X^T - W' X^T||^2 on the block's calibration inputs (-1: no calibration)
  double rel_error = -1;  // error / ||W X^T||^2
  double rtn_error = -1;  // the same for RTN with the recipe's grid on the same inputs (quantization methods)
  double sparsity = 0;    // fraction of exact zeros after compression
  GgmlType stored = GgmlType::F32;  // GGUF type the tensor is saved as (exact packing: ggml or ctrust type) or F32
  double awq_alpha = -1;  // AWQ: the scale exponent chosen for the tensor's input group (-1: not AWQ)
};

struct CompressReport {
  Recipe recipe;
  std::vector<TensorReport> tensors;
  double seconds = 0;
};

struct Imatrix;  // compress/imatrix.h

using CompressProgress = std::function<void(const std::string& message)>;

// Validates everything first (recipe, every selected tensor, calibration size), then compresses m in place:
// tensor data replaced (weights, and the norms/rows that absorb AWQ/SmoothQuant scales), rebind_weights()
// called and inference modes set (apply_inference_modes). Compressed tensors carry their packed bytes (a ggml
// type or ctrust's CTRUST_QX / CTRUST_SPARSE, compress/pack.cpp; Tensor::raw, src_type, perm), so
// save_gguf(m.file, path, {.extra_meta = recipe_metadata(report.recipe)}) writes them losslessly. calib may be
// null only for methods that need none (RTN, magnitude, LLM.int8()).
// imatrix (with Recipe::imatrix_file): the K-quant fits are weighted by its entries (llama-quantize --imatrix);
// a selected tensor without an entry uses ggml's unweighted fit, as llama-quantize does.
CompressReport compress_model(Model& m, const Recipe& recipe, const Calibration* calib,
                              const CompressProgress& progress = {}, const Imatrix* imatrix = nullptr);

// SmoothQuant -> LinearMode::W8A8 on the compressed Linears; LLM.int8() -> Int8Outlier with the threshold.
// To be called again after re-loading a saved compressed model (the mode is not a tensor property).
void apply_inference_modes(Model& m, const Recipe& r);

// {"ctrust.recipe": JSON}
std::vector<GgufKV> recipe_metadata(const Recipe& r);

// One transformer block on one sequence at positions 0..n-1 (x [n][dim] in place), the same computation as
// forward(); obs sees the Linear inputs. Exposed for tests.
void block_forward(const Model& m, int layer, float* x, int n, const LinearObserver* obs = nullptr);
// The same with the activations in st (model/forward_state.h), kept across calls by a calibration loop.
void block_forward(const Model& m, ForwardState& st, int layer, float* x, int n, const LinearObserver* obs = nullptr);

}  // namespace ctrust
