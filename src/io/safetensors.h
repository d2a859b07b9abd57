// safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} (plus an
// optional "__metadata__" of strings), then the tensor bytes. Reader is memory-mapped and bounds-checked.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/mmap.h"

namespace ctrust {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16", "I32", ... as in the file
  std::vector<int64_t> shape;  // as in the file: outermost first (PyTorch order)
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
};

struct SafetensorsFile {
  std::shared_ptr<MappedFile> map;
  std::string path;
  std::vector<SafetensorsTensor> tensors;     // in data-offset order
  std::map<std::string, std::string> metadata;  // "__metadata__"
  const SafetensorsTensor* find(std::string_view name) const;
};

// Bytes per element of a safetensors dtype; 0 if unknown.
size_t safetensors_dtype_size(std::string_view dtype);

// Errors (ctrust::Error "<path>: ..."): file shorter than 8 bytes, header length past the end, invalid JSON,
// entries without dtype/shape/data_offsets, offsets outside the data section or overlapping, byte counts
// that disagree with shape x dtype, shapes that overflow.
SafetensorsFile read_safetensors(const std::string& path);

struct SafetensorsWriteTensor {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;  // outermost first
  const void* data = nullptr;  // numel * dtype size bytes
};

// Writes path.tmp, then renames it to path. The header is padded with spaces to a multiple of 8 bytes.
void write_safetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace ctrust
