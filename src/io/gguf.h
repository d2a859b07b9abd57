// GGUF: reader (versions 1, 2, 3; memory-mapped, bounds-checked), writer (version 3), and the ggml
// tensor types with bit-exact dequantization. Spec: github.com/ggml-org/ggml docs/gguf.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/mmap.h"

namespace ctrust {

// ggml tensor types (the numbers are the on-disk ids).
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, I32 = 26, BF16 = 30,
};

struct GgmlTypeInfo {
  const char* name;    // "f32", "q4_1", "q6_k", ...
  int64_t block_size;  // elements per block
  size_t type_size;    // bytes per block
  bool can_dequantize; // ctrust reads it
  bool can_quantize;   // ctrust writes it
};
// nullptr for ids ctrust does not know.
const GgmlTypeInfo* ggml_type_info(uint32_t type);
const char* ggml_type_name(GgmlType t);
// Parses "f32", "F16", "q8_0", ...; throws Error listing the valid names.
GgmlType ggml_type_from_name(std::string_view name);
// Bytes for n elements; throws Error if n is not a multiple of the block size.
size_t ggml_nbytes(GgmlType t, int64_t n);

// n must be a multiple of the type's block size.
void dequantize(GgmlType t, const void* src, float* dst, int64_t n);
// Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1 (the reference rounding of ggml's quantize_row_*_ref).
void quantize(GgmlType t, const float* src, void* dst, int64_t n);

// Scalar conversions used by ggml: f16/bf16 -> f32 exactly; f32 -> f16/bf16 rounding to nearest even.
float ggml_fp16_to_fp32(uint16_t h);
uint16_t ggml_fp32_to_fp16(float f);
float ggml_bf16_to_fp32(uint16_t h);
uint16_t ggml_fp32_to_bf16(float f);

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

struct GgufValue {
  GgufType type = GgufType::UINT32;
  GgufType elem = GgufType::UINT8;  // element type when type == ARRAY
  uint64_t u = 0;                   // UINT8/16/32/64 and BOOL
  int64_t i = 0;                    // INT8/16/32/64
  double f = 0;                     // FLOAT32/64
  std::string s;                    // STRING
  std::vector<GgufValue> arr;       // ARRAY

  static GgufValue str(std::string v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue str_array(const std::vector<std::string>& v);
  static GgufValue f32_array(const std::vector<float>& v);
  static GgufValue i32_array(const std::vector<int32_t>& v);

  // Typed access; each throws Error if the value is not of a fitting type.
  int64_t as_int() const;   // any integer type or BOOL
  double as_float() const;  // FLOAT32/64 or any integer
  bool as_bool() const;
  const std::string& as_str() const;

  bool operator==(const GgufValue&) const = default;
};

const char* gguf_type_name(GgufType t);  // "uint32", "string", "array", ...

struct GgufKV {
  std::string key;
  GgufValue value;

  bool operator==(const GgufKV&) const = default;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order, ne[0] innermost
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;            // relative to the data section
  const uint8_t* data = nullptr;  // in the mapped file
  size_t nbytes = 0;
  int64_t numel() const;
};

struct GgufFile {
  std::shared_ptr<MappedFile> map;
  std::string path;
  uint32_t version = 0;
  uint32_t alignment = 32;
  std::vector<GgufKV> kv;
  std::vector<GgufTensorInfo> tensors;

  const GgufValue* find(std::string_view key) const;
  std::string get_str(std::string_view key, const std::string& def = "") const;
  int64_t get_int(std::string_view key, int64_t def) const;
  double get_float(std::string_view key, double def) const;
  bool get_bool(std::string_view key, bool def) const;
  const GgufTensorInfo* find_tensor(std::string_view name) const;
};

// Reads and validates the whole header and tensor table; tensor data stays in the map.
// Errors (all ctrust::Error, message starting with the path): wrong magic, unsupported version,
// truncated header, string/array lengths past the end, unknown value or tensor type, shapes that
// overflow, tensor data past the end of the file, misaligned or overlapping offsets, duplicate names.
GgufFile read_gguf(const std::string& path);

struct GgufWriteTensor {
  std::string name;
  std::vector<int64_t> ne;
  GgmlType type = GgmlType::F32;  // type to store
  const float* f32 = nullptr;     // values to quantize into `type` ...
  const uint8_t* raw = nullptr;   // ... or bytes already in `type` (copied as they are)
};

// Writes a version-3 file (to path.tmp, then renamed). Metadata is written in the given order.
void write_gguf(const std::string& path, const std::vector<GgufKV>& kv,
                const std::vector<GgufWriteTensor>& tensors, uint32_t alignment = 32);

}  // namespace ctrust
