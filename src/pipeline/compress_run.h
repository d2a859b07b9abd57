// `ctrust compress` and `ctrust imatrix` as library calls: load the model (f32), read the calibration sample,
// compress (or collect the importance matrix) and write the result. Their reports: report/compress_report.h.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "compress/calib.h"
#include "compress/driver.h"
#include "compress/mixed.h"
#include "compress/recipe.h"
#include "io/export_hf.h"

namespace ctrust {

// Every 2-D tensor of the GGUF file `path` stored in a quantized type gets that type in `r.tensor_types` (an exact
// name rule); tensors the file keeps in F32/F16/BF16 are left alone ("none"). `ctrust compress --types-from`.
void add_types_from(Recipe& r, const std::string& path);

struct CompressRunOptions {
  std::string model, tokenizer, out;
  std::string calib_chat;  // "": plain calibration text; "auto": the model's chat template; else a template name
  std::string imatrix;     // imatrix file weighting the K-quant fits ("": none)
  CompressProgress progress;  // messages of the compression driver
  MixOptions mix;             // target_bpw > 0: KL-guided mixed precision (compress/mixed.h) chooses the block types
};

// Sizes in bytes: the files; the compressed tensors as stored and as f32; the tensor data a load of the written
// file holds in memory (f32 compute mode: everything f32; native: matrices stay packed, except act-order ones
// with a column permutation and the Linears of SmoothQuant / LLM.int8() (their modes need f32); 1-D tensors f32).
struct CompressSizes {
  uint64_t file = 0, input_file = 0, stored = 0, f32 = 0, mem_f32 = 0, mem_native = 0;
};

// --target-bpw: the plan, the written file's tensor size and the mixed model's KL on the sensitivity sample.
struct MixRunResult {
  bool on = false;
  MixPlan plan;
  FixedSize written;  // tensor bytes / elements of the written file
  PairKl check;       // measured KL of the written model against the input on plan.calib (additivity check)
};

struct CompressRunResult {
  CompressReport report;  // report.recipe: the recipe as applied and written into the file
  CompressSizes sizes;
  MixRunResult mix;
  double seconds = 0;     // load + calibration + compression + writing
};

// Compresses o.model with the validated recipe `r` (its calibration fields are filled: calib_chat, calib_hash)
// and writes o.out with the recipe and the Linears' inference modes in its metadata.
CompressRunResult compress_run(Recipe& r, const CompressRunOptions& o);

struct ImatrixRunOptions {
  std::string model, tokenizer, out, calib;  // calib "": default_calibration_file()
  CalibOptions calib_opts;                    // n, len, seed, clean
  CompressProgress progress;
};
struct ImatrixRunResult {
  std::string calib_file, calib_hash;
  size_t entries = 0;
  double seconds = 0;
};
// Collects llama.cpp's importance matrix of o.model on the calibration sample and writes it to o.out.
ImatrixRunResult imatrix_run(const ImatrixRunOptions& o);

// `ctrust convert`: the model written as GGUF with its matrices in `type` ("keep": each tensor's own type). The
// type and the output path are checked before the model is loaded. seconds: the writing.
struct ConvertRunResult {
  std::string input, output, type;
  double seconds = 0;
};
ConvertRunResult convert_run(const std::string& model, const LoadOptions& lo, const std::string& out,
                             const std::string& type);

// `ctrust export-hf`: a compressed GGUF written as a Hugging Face folder in the GPTQ or AWQ layout (io/export_hf.h).
// The format is checked before the model is loaded. seconds: the export.
struct ExportHfRunResult {
  std::string input;
  HfExportResult r;
  double seconds = 0;
};
ExportHfRunResult export_hf_run(const std::string& model, const std::string& out, const HfExportOptions& o);

}  // namespace ctrust
