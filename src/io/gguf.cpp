// GGUF reader (versions 1-3, memory-mapped, every read bounds-checked) and writer (version 3).
// Layout: "GGUF", u32 version, tensor count, kv count, kv pairs, tensor infos, padding to the
// alignment, tensor data. Version 1 stores counts, string lengths and dimensions as u32, later
// versions as u64.
#include "io/gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include "base/error.h"
#include "base/file.h"

namespace ctrust {

// ---------------------------------------------------------------- values

GgufValue GgufValue::str(std::string v) {
  GgufValue r;
  r.type = GgufType::STRING;
  r.s = std::move(v);
  return r;
}
GgufValue GgufValue::u32(uint32_t v) {
  GgufValue r;
  r.type = GgufType::UINT32;
  r.u = v;
  return r;
}
GgufValue GgufValue::i32(int32_t v) {
  GgufValue r;
  r.type = GgufType::INT32;
  r.i = v;
  return r;
}
GgufValue GgufValue::u64(uint64_t v) {
  GgufValue r;
  r.type = GgufType::UINT64;
  r.u = v;
  return r;
}
GgufValue GgufValue::f32(float v) {
  GgufValue r;
  r.type = GgufType::FLOAT32;
  r.f = v;
  return r;
}
GgufValue GgufValue::boolean(bool v) {
  GgufValue r;
  r.type = GgufType::BOOL;
  r.u = v ? 1 : 0;
  return r;
}
GgufValue GgufValue::str_array(const std::vector<std::string>& v) {
  GgufValue r;
  r.type = GgufType::ARRAY;
  r.elem = GgufType::STRING;
  r.arr.reserve(v.size());
  for (const auto& s : v) r.arr.push_back(str(s));
  return r;
}
GgufValue GgufValue::f32_array(const std::vector<float>& v) {
  GgufValue r;
  r.type = GgufType::ARRAY;
  r.elem = GgufType::FLOAT32;
  r.arr.reserve(v.size());
  for (float x : v) r.arr.push_back(f32(x));
  return r;
}
GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
  GgufValue r;
  r.type = GgufType::ARRAY;
  r.elem = GgufType::INT32;
  r.arr.reserve(v.size());
  for (int32_t x : v) r.arr.push_back(i32(x));
  return r;
}

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "uint8";
    case GgufType::INT8: return "int8";
    case GgufType::UINT16: return "uint16";
    case GgufType::INT16: return "int16";
    case GgufType::UINT32: return "uint32";
    case GgufType::INT32: return "int32";
    case GgufType::FLOAT32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "uint64";
    case GgufType::INT64: return "int64";
    case GgufType::FLOAT64: return "float64";
  }
  return "unknown";
}

static bool is_unsigned(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::UINT16 || t == GgufType::UINT32 || t == GgufType::UINT64 ||
         t == GgufType::BOOL;
}
static bool is_signed(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}

int64_t GgufValue::as_int() const {
  if (is_signed(type)) return i;
  if (is_unsigned(type)) {
    if (u > (uint64_t)INT64_MAX) fail("value {} does not fit in int64", u);
    return (int64_t)u;
  }
  fail("expected an integer, found a {}", gguf_type_name(type));
}
double GgufValue::as_float() const {
  if (type == GgufType::FLOAT32 || type == GgufType::FLOAT64) return f;
  if (is_signed(type)) return (double)i;
  if (is_unsigned(type) && type != GgufType::BOOL) return (double)u;
  fail("expected a number, found a {}", gguf_type_name(type));
}
bool GgufValue::as_bool() const {
  if (type == GgufType::BOOL) return u != 0;
  fail("expected a bool, found a {}", gguf_type_name(type));
}
const std::string& GgufValue::as_str() const {
  if (type == GgufType::STRING) return s;
  fail("expected a string, found a {}", gguf_type_name(type));
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

// ---------------------------------------------------------------- file lookups

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& e : kv)
    if (e.key == key) return &e.value;
  return nullptr;
}

std::string GgufFile::get_str(std::string_view key, const std::string& def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (v->type != GgufType::STRING) fail("{}: key '{}' is a {}, expected a string", path, key, gguf_type_name(v->type));
  return v->s;
}
int64_t GgufFile::get_int(std::string_view key, int64_t def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (!is_signed(v->type) && !is_unsigned(v->type))
    fail("{}: key '{}' is a {}, expected an integer", path, key, gguf_type_name(v->type));
  if (is_unsigned(v->type) && v->u > (uint64_t)INT64_MAX) fail("{}: key '{}' value {} is too large", path, key, v->u);
  return v->as_int();
}
double GgufFile::get_float(std::string_view key, double def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (v->type == GgufType::FLOAT32 || v->type == GgufType::FLOAT64) return v->f;
  if (is_signed(v->type)) return (double)v->i;
  if (is_unsigned(v->type) && v->type != GgufType::BOOL) return (double)v->u;
  fail("{}: key '{}' is a {}, expected a number", path, key, gguf_type_name(v->type));
}
bool GgufFile::get_bool(std::string_view key, bool def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (v->type != GgufType::BOOL) fail("{}: key '{}' is a {}, expected a bool", path, key, gguf_type_name(v->type));
  return v->u != 0;
}
const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

// ---------------------------------------------------------------- reader

namespace {

constexpr int kMaxArrayDepth = 8;

struct Reader {
  const uint8_t* p;
  size_t size;
  size_t pos = 0;
  const std::string& path;
  uint32_t version = 3;

  // Memory the decoded metadata may take: every array element becomes a GgufValue (~88 bytes, even for a
  // one-byte uint8), so a file of large arrays would cost ~80x its size. The budget is sized from the file:
  // twice its size, at least 128 MiB (real models: a few MB of metadata; vocabulary-only files < 64 MB).
  uint64_t budget = 0, used = 0;
  void charge(uint64_t bytes, const std::string& what) {
    if (bytes > budget - used)
      fail("{}: {} would take more than {} bytes of memory, the limit for a {}-byte file (2x its size, at least "
           "128 MiB): not a real model's metadata", path, what, budget, size);
    used += bytes;
  }

  size_t left() const { return size - pos; }

  void need(size_t n, const std::string& what) {
    if (n > left())
      fail("{}: truncated header: {} at offset {} needs {} bytes but the file has {} bytes", path, what, pos, n,
           size);
  }
  template <typename T>
  T rd(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  // Counts and lengths: u32 in version 1, u64 later.
  uint64_t count(const std::string& what) {
    if (version == 1) return rd<uint32_t>(what);
    return rd<uint64_t>(what);
  }
  size_t len_size() const { return version == 1 ? 4 : 8; }

  std::string str(const std::string& what) {
    uint64_t n = count(what + " length");
    if (n > left())
      fail("{}: {} has length {} at offset {}, past the end of the file ({} bytes): truncated or corrupt", path,
           what, n, pos, size);
    if (n > 15) charge(n, what);  // shorter strings live inside std::string
    std::string s(reinterpret_cast<const char*>(p + pos), (size_t)n);
    pos += (size_t)n;
    return s;
  }

  static size_t scalar_size(GgufType t) {
    switch (t) {
      case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
      case GgufType::UINT16: case GgufType::INT16: return 2;
      case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
      case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
      default: return 0;
    }
  }

  GgufType value_type(const std::string& what) {
    uint32_t t = rd<uint32_t>(what + " type");
    if (t > (uint32_t)GgufType::FLOAT64) fail("{}: {} has unknown value type {}", path, what, t);
    return static_cast<GgufType>(t);
  }

  // Smallest encoded size of one value of type t (bounds arrays before reserving memory).
  size_t min_size(GgufType t) const {
    if (t == GgufType::STRING) return len_size();
    if (t == GgufType::ARRAY) return 4 + len_size();
    return scalar_size(t);
  }

  void value(GgufType t, GgufValue& v, const std::string& what, int depth) {
    v.type = t;
    switch (t) {
      case GgufType::UINT8: v.u = rd<uint8_t>(what); break;
      case GgufType::INT8: v.i = rd<int8_t>(what); break;
      case GgufType::UINT16: v.u = rd<uint16_t>(what); break;
      case GgufType::INT16: v.i = rd<int16_t>(what); break;
      case GgufType::UINT32: v.u = rd<uint32_t>(what); break;
      case GgufType::INT32: v.i = rd<int32_t>(what); break;
      case GgufType::UINT64: v.u = rd<uint64_t>(what); break;
      case GgufType::INT64: v.i = rd<int64_t>(what); break;
      case GgufType::FLOAT32: v.f = rd<float>(what); break;
      case GgufType::FLOAT64: v.f = rd<double>(what); break;
      case GgufType::BOOL: {
        uint8_t b = rd<uint8_t>(what);
        if (b > 1) fail("{}: {} is a bool with invalid value {}", path, what, b);
        v.u = b;
        break;
      }
      case GgufType::STRING: v.s = str(what); break;
      case GgufType::ARRAY: {
        if (depth >= kMaxArrayDepth) fail("{}: {} nests arrays deeper than {}", path, what, kMaxArrayDepth);
        v.elem = value_type(what + " element");
        uint64_t n = count(what + " array length");
        size_t m = min_size(v.elem);
        if (n > left() / m)
          fail("{}: {} has array length {} at offset {}, past the end of the file ({} bytes): truncated or corrupt",
               path, what, n, pos, size);
        charge(n * sizeof(GgufValue), what + " array");
        v.arr.resize((size_t)n);
        for (auto& e : v.arr) value(v.elem, e, what, depth + 1);
        break;
      }
    }
  }
};

}  // namespace

GgufFile read_gguf(const std::string& path) {
  GgufFile f;
  f.path = path;
  f.map = std::make_shared<MappedFile>(path);
  const uint8_t* base = f.map->data();
  const size_t size = f.map->size();
  if (size == 0) fail("{}: empty file (0 bytes), not a GGUF file", path);
  if (size < 4 || std::memcmp(base, "GGUF", 4) != 0) {
    std::string got;
    for (size_t i = 0; i < std::min<size_t>(4, size); ++i)
      got += (base[i] >= 32 && base[i] < 127) ? (char)base[i] : '?';
    fail("{}: bad magic '{}', not a GGUF file (expected 'GGUF')", path, got);
  }
  Reader r{base, size, 4, path};
  r.budget = std::max<uint64_t>(uint64_t(128) << 20, 2 * uint64_t(size));
  f.version = r.rd<uint32_t>("version");
  if (f.version < 1 || f.version > 3) fail("{}: unsupported GGUF version {} (supported: 1, 2, 3)", path, f.version);
  r.version = f.version;
  const uint64_t n_tensors = r.count("tensor count");
  const uint64_t n_kv = r.count("metadata count");
  // Each kv needs at least a key length and a type; each tensor info at least name length, n_dims, type, offset.
  if (n_kv > r.left() / (r.len_size() + 4))
    fail("{}: truncated header: metadata count {} needs at least {} bytes but only {} remain", path, n_kv,
         n_kv > UINT64_MAX / 16 ? UINT64_MAX : n_kv * (r.len_size() + 4), r.left());
  if (n_tensors > r.left() / (r.len_size() + 4 + 4 + 8))
    fail("{}: truncated header: tensor count {} needs at least {} bytes but only {} remain", path, n_tensors,
         n_tensors > UINT64_MAX / 32 ? UINT64_MAX : n_tensors * (r.len_size() + 16), r.left());

  r.charge(n_kv * sizeof(GgufKV), "the metadata table");
  r.charge(n_tensors * (sizeof(GgufTensorInfo) + 4 * sizeof(int64_t)), "the tensor table");
  f.kv.resize((size_t)n_kv);
  std::unordered_set<std::string> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    GgufKV& e = f.kv[(size_t)i];
    e.key = r.str(fmt::format("metadata key #{}", i));
    if (!keys.insert(e.key).second) fail("{}: duplicate metadata key '{}'", path, e.key);
    const std::string what = fmt::format("key '{}'", e.key);
    GgufType t = r.value_type(what);
    r.value(t, e.value, what, 0);
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    if (a->type != GgufType::UINT32) fail("{}: key 'general.alignment' must be a uint32", path);
    if (a->u == 0 || (a->u & (a->u - 1)) != 0)
      fail("{}: general.alignment {} is not a power of two", path, a->u);
    f.alignment = (uint32_t)a->u;
  }

  f.tensors.resize((size_t)n_tensors);
  std::unordered_set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo& t = f.tensors[(size_t)i];
    t.name = r.str(fmt::format("tensor name #{}", i));
    if (!names.insert(t.name).second) fail("{}: duplicate tensor name '{}'", path, t.name);
    const std::string what = fmt::format("tensor '{}'", t.name);
    uint32_t n_dims = r.rd<uint32_t>(what + " n_dims");
    if (n_dims < 1 || n_dims > 4) fail("{}: {} has {} dimensions (must be 1 to 4)", path, what, n_dims);
    t.ne.resize(n_dims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = r.version == 1 ? r.rd<uint32_t>(what + " shape") : r.rd<uint64_t>(what + " shape");
      if (ne > (uint64_t)INT64_MAX) fail("{}: {} has dimension {} = {}, too large", path, what, d, ne);
      t.ne[d] = (int64_t)ne;
      if (__builtin_mul_overflow(numel, (int64_t)ne, &numel))
        fail("{}: {} shape overflows: the element count does not fit in 64 bits", path, what);
    }
    uint32_t type = r.rd<uint32_t>(what + " type");
    const GgmlTypeInfo* info = ggml_type_info(type);
    if (!info) fail("{}: {} has unknown ggml type id {}", path, what, type);
    t.type = static_cast<GgmlType>(type);
    if (t.ne[0] % info->block_size != 0)
      fail("{}: {} row length {} is not a multiple of the {} block size {}", path, what, t.ne[0], info->name,
           info->block_size);
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)(numel / info->block_size), (uint64_t)info->type_size, &nbytes))
      fail("{}: {} shape overflows: its byte size does not fit in 64 bits", path, what);
    t.nbytes = (size_t)nbytes;
    t.offset = r.rd<uint64_t>(what + " offset");
  }

  // Data section: after the tensor infos, padded to the alignment.
  const uint64_t al = f.alignment;
  const uint64_t data_start = (r.pos + al - 1) / al * al;
  if (n_tensors > 0 && data_start > size)
    fail("{}: truncated: the tensor data section would start at {} but the file has {} bytes", path, data_start,
         size);
  const uint64_t data_size = size - std::min<uint64_t>(data_start, size);
  std::vector<const GgufTensorInfo*> order;
  order.reserve(f.tensors.size());
  for (auto& t : f.tensors) {
    if (t.offset % al != 0)
      fail("{}: tensor '{}' offset {} is not a multiple of the alignment {}", path, t.name, t.offset, al);
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail("{}: tensor '{}' data ({} bytes at data offset {}) runs past the end of the file ({} bytes)", path,
           t.name, t.nbytes, t.offset, size);
    t.data = base + data_start + t.offset;
    order.push_back(&t);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
      fail("{}: tensors '{}' and '{}' overlap in the data section", path, order[i - 1]->name, order[i]->name);
  }
  return f;
}

// ---------------------------------------------------------------- writer

namespace {

struct Writer {
  std::FILE* fp;
  const std::string& path;
  uint64_t pos = 0;

  void bytes(const void* d, size_t n) {
    if (n == 0) return;
    if (std::fwrite(d, 1, n, fp) != n) fail("{}: write failed: {}", path, std::strerror(errno));
    pos += n;
  }
  template <typename T>
  void put(T v) {
    bytes(&v, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad(uint64_t al) {
    static const uint8_t zeros[256] = {};
    uint64_t n = (al - pos % al) % al;
    while (n > 0) {
      uint64_t k = std::min<uint64_t>(n, sizeof(zeros));
      bytes(zeros, (size_t)k);
      n -= k;
    }
  }
  void payload(const GgufValue& v, const std::string& key) {
    switch (v.type) {
      case GgufType::UINT8: put<uint8_t>((uint8_t)v.u); break;
      case GgufType::INT8: put<int8_t>((int8_t)v.i); break;
      case GgufType::UINT16: put<uint16_t>((uint16_t)v.u); break;
      case GgufType::INT16: put<int16_t>((int16_t)v.i); break;
      case GgufType::UINT32: put<uint32_t>((uint32_t)v.u); break;
      case GgufType::INT32: put<int32_t>((int32_t)v.i); break;
      case GgufType::UINT64: put<uint64_t>(v.u); break;
      case GgufType::INT64: put<int64_t>(v.i); break;
      case GgufType::FLOAT32: put<float>((float)v.f); break;
      case GgufType::FLOAT64: put<double>(v.f); break;
      case GgufType::BOOL: put<uint8_t>(v.u ? 1 : 0); break;
      case GgufType::STRING: str(v.s); break;
      case GgufType::ARRAY:
        put<uint32_t>((uint32_t)v.elem);
        put<uint64_t>(v.arr.size());
        for (const auto& e : v.arr) {
          if (e.type != v.elem)
            fail("{}: key '{}': array of {} holds a {}", path, key, gguf_type_name(v.elem), gguf_type_name(e.type));
          payload(e, key);
        }
        break;
    }
  }
};

}  // namespace

void write_gguf(const std::string& path, const std::vector<GgufKV>& kv_in,
                const std::vector<GgufWriteTensor>& tensors, uint32_t alignment) {
  std::vector<GgufKV> kv = kv_in;
  uint32_t al = alignment;
  bool has_al = false;
  for (const auto& e : kv) {
    if (e.key == "general.alignment") {
      if (e.value.type != GgufType::UINT32 || e.value.u == 0 || (e.value.u & (e.value.u - 1)))
        fail("{}: general.alignment must be a uint32 power of two", path);
      al = (uint32_t)e.value.u;
      has_al = true;
    }
  }
  if (al == 0 || (al & (al - 1))) fail("{}: alignment {} is not a power of two", path, al);
  if (!has_al && al != 32) kv.push_back({"general.alignment", GgufValue::u32(al)});
  {
    std::unordered_set<std::string> keys;
    for (const auto& e : kv)
      if (!keys.insert(e.key).second) fail("{}: duplicate metadata key '{}'", path, e.key);
  }

  // Validate tensors and lay out their offsets.
  std::vector<uint64_t> offsets(tensors.size());
  std::vector<size_t> sizes(tensors.size());
  uint64_t off = 0;
  std::unordered_set<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (!names.insert(t.name).second) fail("{}: duplicate tensor name '{}'", path, t.name);
    if (t.ne.empty() || t.ne.size() > 4) fail("{}: tensor '{}' has {} dimensions (1 to 4)", path, t.name, t.ne.size());
    const GgmlTypeInfo* info = ggml_type_info((uint32_t)t.type);
    if (!info) fail("{}: tensor '{}' has unknown type id {}", path, t.name, (uint32_t)t.type);
    if ((t.f32 == nullptr) == (t.raw == nullptr))
      fail("{}: tensor '{}' needs exactly one of f32 values or raw bytes", path, t.name);
    if (t.f32 && !info->can_quantize) fail("{}: tensor '{}': cannot quantize to {}", path, t.name, info->name);
    int64_t n = 1;
    for (int64_t d : t.ne) {
      if (d < 0 || __builtin_mul_overflow(n, d, &n)) fail("{}: tensor '{}' has an invalid shape", path, t.name);
    }
    if (t.ne[0] % info->block_size != 0)
      fail("{}: tensor '{}' row length {} is not a multiple of the {} block size {}", path, t.name, t.ne[0],
           info->name, info->block_size);
    sizes[i] = ggml_nbytes(t.type, n);
    offsets[i] = off;
    off += (sizes[i] + al - 1) / al * al;
  }

  AtomicFile out(path);  // unnamed until commit: a killed process leaves no partial file
  Writer w{out.fp(), path};
  w.bytes("GGUF", 4);
  w.put<uint32_t>(3);
  w.put<uint64_t>(tensors.size());
  w.put<uint64_t>(kv.size());
  for (const auto& e : kv) {
    w.str(e.key);
    w.put<uint32_t>((uint32_t)e.value.type);
    w.payload(e.value, e.key);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    w.str(t.name);
    w.put<uint32_t>((uint32_t)t.ne.size());
    for (int64_t d : t.ne) w.put<uint64_t>((uint64_t)d);
    w.put<uint32_t>((uint32_t)t.type);
    w.put<uint64_t>(offsets[i]);
  }
  w.pad(al);
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.raw) {
      w.bytes(t.raw, sizes[i]);
    } else {
      int64_t n = 1;
      for (int64_t d : t.ne) n *= d;
      buf.resize(sizes[i]);
      quantize(t.type, t.f32, buf.data(), n);
      w.bytes(buf.data(), buf.size());
    }
    w.pad(al);
  }
  out.commit();
}

}  // namespace ctrust
