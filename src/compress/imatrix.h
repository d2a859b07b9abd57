// Importance matrices (imatrix) in llama.cpp's format: for every Linear weight, the sum of x_j^2 over the
// calibration tokens of each input column j and the token count. llama-quantize --imatrix reads them (its
// quantizers weight each column by sum / count) and ctrust compress --imatrix uses them for the K-quant fit.
// File: GGUF with general.type = "imatrix", imatrix.datasets (string array), imatrix.chunk_count and
// imatrix.chunk_size (u32), and per weight "<name>.in_sum2" (F32, ne {in, 1}) and "<name>.counts" (F32, ne {1, 1}),
// names sorted: what llama-imatrix of llama.cpp 0c1e570 writes (tools/imatrix/imatrix.cpp, save_imatrix) and
// common/imatrix-loader.cpp reads. docs/compression.md, "imatrix".
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "compress/calib.h"
#include "model/model.h"

namespace ctrust {

struct ImatrixEntry {
  std::vector<float> sum2;  // [in] sum of x^2 over the tokens (accumulated in double, stored as f32)
  float count = 0;          // tokens
};
struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;  // by weight name, e.g. "blk.0.attn_q.weight"
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0, chunk_size = 0;
};
// The importance llama-quantize gives each input column: sum2[j] / count in f32 (1 where count is 0).
std::vector<float> imatrix_weights(const ImatrixEntry& e);

// Runs the unquantized model over the calibration sequences (each from position 0, no BOS added: the
// calibration's own tokens) and sums x^2 for the input of every block Linear.
Imatrix collect_imatrix(const Model& m, const Calibration& calib,
                        const std::function<void(const std::string&)>& progress = {});

void write_imatrix(const std::string& path, const Imatrix& im);
// Reads the GGUF format (ctrust's or llama-imatrix's). Errors name the file; the legacy .dat format is an error
// that says so.
Imatrix read_imatrix(const std::string& path);

}  // namespace ctrust
