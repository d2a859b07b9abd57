// Exporting a compressed GGUF model as a Hugging Face folder that GPU stacks load: config.json with a
// quantization_config, model.safetensors with the quantized Linears in AutoGPTQ's layout (qweight / qzeros /
// scales / g_idx) or AutoAWQ's GEMM layout (qweight / qzeros / scales), the other tensors in F32, and the
// tokenizer files where they can be written faithfully (docs/compression.md, "Export to Hugging Face").
//
// Only what is exactly an integer grid (q - z) * s with an fp16 scale s and an integer zero point z is
// exported: ctrust's CTRUST_QX (sym, zp with f16 scales, and the affine fp16 form whose minimum is
// fp16(-z s): the default GPTQ/AWQ grid), and ggml's Q4_0 / Q8_0 / Q4_1 blocks when they are such grids. Anything
// else (K-quants, f32 scales, a ggml Q4_1 minimum that is no zero point, bit widths the format does not
// have) is an Error saying why.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/model_file.h"

namespace ctrust {

enum class HfQuantFormat { Gptq, Awq };
HfQuantFormat hf_quant_format_from_name(const std::string& s);  // "gptq" | "awq"; Error otherwise

// A quantized matrix in integer form, in the matrix's own (original) column order:
// value(r, c) = (q[r][c] - zero[r][g]) * scale[r][g] with g = g_idx[c], computed in f32 (the product of an fp16
// scale and an integer up to 255 is exact in f32).
struct IntQuantMatrix {
  int64_t out = 0, in = 0;
  int bits = 4;
  int group = 0;               // inputs per group (per channel: in)
  bool sym = false;            // every zero point is 2^(bits-1)
  bool act_order = false;      // g_idx is not c / group
  std::vector<uint8_t> q;      // [out][in]
  std::vector<uint16_t> scale; // [out][n_groups] fp16 bits
  std::vector<uint16_t> zero;  // [out][n_groups] (AutoGPTQ can load 1..2^bits)
  std::vector<int32_t> g_idx;  // [in]
  int64_t n_groups() const { return group > 0 ? in / group : 0; }
  float value(int64_t r, int64_t c) const;
  std::vector<float> dequantize() const;  // [out][in]
};

// The integer form of a GGUF weight matrix as ctrust loaded it (t.raw in t.src_type, t.perm). dev receives the
// largest |(q - z) s - the loader's value| (0 unless the source is the affine form q s + m; then at most half
// an fp16 unit of m). Throws Error("<what>: ...") when the tensor is not on such a grid.
IntQuantMatrix int_quant_from_tensor(const Tensor& t, const std::string& what, double* dev = nullptr);

// Rows of a matrix stored with llama.cpp's interleaved RoPE pairs (GGUF llama q/k) put back in Hugging Face's
// NeoX order: HF row h*d + j*(d/2) + i is GGUF row h*d + 2i + j (d = rows / heads).
std::vector<int64_t> interleaved_to_neox_rows(int64_t rows, int heads);
void permute_rows(IntQuantMatrix& m, const std::vector<int64_t>& src_row);  // new row r = old row src_row[r]

// AutoGPTQ's layout (auto-gptq 0.7.1, qlinear_cuda / cuda_old / exllama; "gptq" checkpoint format):
//   qweight int32 [in * bits / 32][out]: the levels of one output column packed along the inputs as one
//     little-endian bit stream, 32 bits per word (2/4/8 bits: 32/bits levels per word; 3 bits: 32 levels per 3 words)
//   qzeros int32 [n_groups][out * bits / 32]: zero - 1 packed the same way along the outputs (the loader adds 1)
//   scales fp16 [n_groups][out], g_idx int32 [in]
// Requires bits 2/3/4/8, in % 32 == 0, out % 32 == 0 and every zero point >= 1 (AutoGPTQ cannot store zero 0).
struct GptqTensors {
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;
};
GptqTensors pack_gptq(const IntQuantMatrix& m, const std::string& what);
IntQuantMatrix unpack_gptq(const GptqTensors& t, int64_t out, int64_t in, int bits, int group);

// AutoAWQ's GEMM layout (autoawq 0.2.9, WQLinear_GEMM; 4 bits only):
//   qweight int32 [in][out / 8]: for input row i, output columns 8k..8k+7 in the order {0, 2, 4, 6, 1, 3, 5, 7},
//     nibble j of word k holding column 8k + order[j]
//   qzeros int32 [n_groups][out / 8]: the zero points (not minus 1), packed the same way
//   scales fp16 [n_groups][out]
// Requires 4 bits, no act-order, out % 8 == 0.
struct AwqTensors {
  std::vector<int32_t> qweight, qzeros;
  std::vector<uint16_t> scales;
};
AwqTensors pack_awq(const IntQuantMatrix& m, const std::string& what);
IntQuantMatrix unpack_awq(const AwqTensors& t, int64_t out, int64_t in, int bits, int group);

struct HfExportOptions {
  HfQuantFormat format = HfQuantFormat::Gptq;
  std::string tokenizer_from;  // a Hugging Face folder whose tokenizer files are copied (else written from the GGUF)
};

struct HfExportResult {
  std::string dir, format, hf_class;
  int bits = 0, group = 0;        // group -1 = per channel (as quantization_config writes it)
  bool sym = false, desc_act = false;
  int n_quantized = 0, n_plain = 0;
  double max_dev = 0;             // largest |exported value - ctrust's value| over the quantized tensors
  uint64_t safetensors_bytes = 0;
  std::vector<std::string> files;          // written, relative to dir
  std::string tokenizer_note;              // how the tokenizer was supplied, or what is missing
  nlohmann::json to_json() const;
};

// Writes dir (created; existing files of the same names are replaced). Throws Error naming the first tensor
// that cannot be exported and why, or the architecture if it has no Hugging Face export.
HfExportResult export_hf(const LoadedModel& m, const std::string& dir, const HfExportOptions& o = {});

}  // namespace ctrust
