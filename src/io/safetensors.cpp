#include "io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"

namespace ctrust {

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

size_t safetensors_dtype_size(std::string_view d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

SafetensorsFile read_safetensors(const std::string& path) {
  SafetensorsFile f;
  f.path = path;
  f.map = std::make_shared<MappedFile>(path);
  const uint8_t* base = f.map->data();
  const size_t size = f.map->size();
  if (size < 8) fail("{}: truncated safetensors file ({} bytes, the header length alone needs 8)", path, size);
  uint64_t n;
  std::memcpy(&n, base, 8);
  if (n > size - 8)
    fail("{}: safetensors header length {} runs past the end of the file ({} bytes)", path, n, size);
  if (n > (uint64_t)100 << 20) fail("{}: safetensors header length {} is larger than 100 MB", path, n);
  const uint8_t* data = base + 8 + n;
  const uint64_t data_size = size - 8 - n;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(base + 8, base + 8 + n);
  } catch (const std::exception& e) {
    fail("{}: invalid safetensors header JSON: {}", path, e.what());
  }
  if (!j.is_object()) fail("{}: safetensors header is not a JSON object", path);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) fail("{}: __metadata__ is not an object", path);
      for (auto m = e.begin(); m != e.end(); ++m)
        if (m.value().is_string()) f.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets") ||
        !e["dtype"].is_string() || !e["shape"].is_array() || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2)
      fail("{}: tensor '{}' header entry needs dtype, shape and data_offsets [begin, end]", path, name);
    SafetensorsTensor t;
    t.name = name;
    t.dtype = e["dtype"].get<std::string>();
    int64_t numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned()) fail("{}: tensor '{}' has an invalid shape entry {}", path, name, d.dump());
      uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, (int64_t)v, &numel))
        fail("{}: tensor '{}' shape overflows", path, name);
      t.shape.push_back((int64_t)v);
    }
    const auto& o = e["data_offsets"];
    if (!o[0].is_number_unsigned() || !o[1].is_number_unsigned())
      fail("{}: tensor '{}' has invalid data_offsets", path, name);
    uint64_t b = o[0].get<uint64_t>(), end = o[1].get<uint64_t>();
    if (b > end || end > data_size)
      fail("{}: tensor '{}' data_offsets [{}, {}] lie outside the data section ({} bytes)", path, name, b, end,
           data_size);
    t.data = data + b;
    t.nbytes = (size_t)(end - b);
    if (size_t es = safetensors_dtype_size(t.dtype)) {
      uint64_t want;
      if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)es, &want)) fail("{}: tensor '{}' shape overflows", path, name);
      if (want != t.nbytes)
        fail("{}: tensor '{}' has {} bytes but its shape and dtype {} need {}", path, name, t.nbytes, t.dtype, want);
    }
    f.tensors.push_back(std::move(t));
  }
  std::sort(f.tensors.begin(), f.tensors.end(), [](const auto& a, const auto& b) { return a.data < b.data; });
  for (size_t i = 1; i < f.tensors.size(); ++i)
    if (f.tensors[i - 1].data + f.tensors[i - 1].nbytes > f.tensors[i].data)
      fail("{}: tensors '{}' and '{}' overlap", path, f.tensors[i - 1].name, f.tensors[i].name);
  return f;
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  std::vector<size_t> sizes;
  for (const auto& t : tensors) {
    size_t es = safetensors_dtype_size(t.dtype);
    if (!es) fail("{}: tensor '{}': unknown dtype {}", path, t.name, t.dtype);
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    sizes.push_back((size_t)n * es);
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + sizes.back()}}};
    off += sizes.back();
  }
  std::string js = h.dump();
  js.append((8 - js.size() % 8) % 8, ' ');
  AtomicFile out(path);
  std::FILE* fp = out.fp();
  uint64_t n = js.size();
  bool ok = std::fwrite(&n, 8, 1, fp) == 1 && std::fwrite(js.data(), 1, js.size(), fp) == js.size();
  for (size_t i = 0; ok && i < tensors.size(); ++i)
    ok = sizes[i] == 0 || std::fwrite(tensors[i].data, 1, sizes[i], fp) == sizes[i];
  if (!ok) fail("{}: write failed: {}", path, std::strerror(errno));
  out.commit();
}

}  // namespace ctrust
