// Hugging Face export of compressed models: AutoGPTQ and AutoAWQ (GEMM) layouts (io/export_hf.h).
#include "io/export_hf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <optional>

#include "base/error.h"
#include "base/file.h"
#include "io/arch.h"
#include "io/ctrust_types.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace ctrust {

namespace fs = std::filesystem;
using nlohmann::json;
using ojson = nlohmann::ordered_json;

HfQuantFormat hf_quant_format_from_name(const std::string& s) {
  if (s == "gptq") return HfQuantFormat::Gptq;
  if (s == "awq") return HfQuantFormat::Awq;
  fail("unknown export format '{}' (gptq, awq)", s);
}

float IntQuantMatrix::value(int64_t r, int64_t c) const {
  const int64_t g = g_idx[c];
  const int64_t ng = n_groups();
  return (float(q[r * in + c]) - float(zero[r * ng + g])) * ggml_fp16_to_fp32(scale[r * ng + g]);
}

std::vector<float> IntQuantMatrix::dequantize() const {
  std::vector<float> w(size_t(out * in));
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) w[r * in + c] = value(r, c);
  return w;
}

namespace {

uint16_t hfx_rd16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}
uint32_t hfx_get_bits(const uint8_t* b, uint64_t pos, int bits) {
  uint32_t v = 0;
  for (int k = 0; k < bits; ++k, ++pos) v |= uint32_t((b[pos >> 3] >> (pos & 7)) & 1u) << k;
  return v;
}

// Recovers the integer zero point of an affine fp16 group (value q d + m): the compressor wrote
// m = fp16(-z d) (compress/rtn.cpp, fit_grid); anything else (ggml's Q4_1 minimum, --grid minmax) is no zero point.
bool hfx_affine_zero(float d, float m, int maxq, int* z) {
  if (!(d > 0.0f)) return false;
  const float zf = std::nearbyint(-m / d);
  if (!(zf >= 0.0f && zf <= float(maxq))) return false;
  const float back = ggml_fp16_to_fp32(ggml_fp32_to_fp16(-zf * d));
  if (back != m) return false;
  *z = int(zf);
  return true;
}

}  // namespace

IntQuantMatrix int_quant_from_tensor(const Tensor& t, const std::string& what, double* dev) {
  if (t.ne.size() != 2) fail("{}: not a matrix", what);
  if (!t.raw) fail("{}: no stored bytes (only GGUF files are exported)", what);
  IntQuantMatrix m;
  m.in = t.ne[0];
  m.out = t.ne[1];
  const GgmlType ty = t.src_type;
  std::vector<int32_t> stored_g;  // group of each stored column (stored order)
  bool affine = false;
  std::vector<float> mins;        // affine: m of each group, [out][n_groups]
  const auto qp = qx_params(ty);
  if (ty == GgmlType::Q4_0 || ty == GgmlType::Q4_1 || ty == GgmlType::Q8_0) {
    m.bits = ty == GgmlType::Q8_0 ? 8 : 4;
    m.group = 32;
    affine = ty == GgmlType::Q4_1;
  } else if (qp) {
    m.bits = qp->bits;
    m.group = qp->group;
    affine = qp->form == QxForm::Affine;
    if (!qp->f16)
      fail("{}: {} has f32 scales; the GPTQ/AWQ formats store fp16 scales (compress with fp16 scales, the default)",
           what, ggml_type_name(ty));
  } else {
    const std::string name = ggml_type_name(ty);
    if (ty == GgmlType::Q5_0 || ty == GgmlType::Q5_1)
      fail("{}: {} is a 5-bit grid; AutoGPTQ stores 2, 3, 4 or 8 bits and AutoAWQ 4 bits", what, name);
    if (is_ctrust_type(ty))
      fail("{}: {} is a pruned (sparse) tensor; only uniform grids (q - z) * s are exported", what, name);
    fail("{}: {} is not an integer grid (q - z) * s with one fp16 scale per group (K-quants have sub-block scales, "
         "F32/F16 tensors are not quantized); quantize with ctrust compress --method gptq|awq|rtn --bits B "
         "--group-size G",
         what, name);
  }
  if (m.in % m.group != 0) fail("{}: group {} does not divide the row length {}", what, m.group, m.in);
  const int64_t ng = m.n_groups();
  const int maxq = (1 << m.bits) - 1;
  m.q.resize(size_t(m.out * m.in));
  m.scale.resize(size_t(m.out * ng));
  m.zero.resize(size_t(m.out * ng));
  if (affine) mins.resize(size_t(m.out * ng));
  const size_t row_bytes = t.row_bytes();
  if (t.raw_bytes < row_bytes * size_t(m.out)) fail("{}: stored bytes too short", what);
  std::vector<uint8_t> qrow(size_t(m.in));  // levels of a row in stored order
  bool all_sym = true;
  for (int64_t r = 0; r < m.out; ++r) {
    const uint8_t* src = t.raw + row_bytes * size_t(r);
    for (int64_t g = 0; g < ng; ++g) {
      uint16_t dh = 0;
      int z = 0;
      float mn = 0.0f;
      uint8_t* qg = qrow.data() + g * m.group;
      if (ty == GgmlType::Q4_0 || ty == GgmlType::Q4_1) {
        const uint8_t* b = src + g * (ty == GgmlType::Q4_0 ? 18 : 20);
        dh = hfx_rd16(b);
        const uint8_t* qs = b + (ty == GgmlType::Q4_0 ? 2 : 4);
        if (ty == GgmlType::Q4_1) mn = ggml_fp16_to_fp32(hfx_rd16(b + 2));
        for (int j = 0; j < 16; ++j) {
          qg[j] = qs[j] & 15;
          qg[j + 16] = qs[j] >> 4;
        }
        z = 8;
      } else if (ty == GgmlType::Q8_0) {
        const uint8_t* b = src + g * 34;
        dh = hfx_rd16(b);
        for (int j = 0; j < 32; ++j) qg[j] = uint8_t(int(int8_t(b[2 + j])) + 128);
        z = 128;
      } else {
        const size_t bb = qx_block_bytes(*qp);
        const uint8_t* b = src + size_t(g) * bb;
        dh = hfx_rd16(b);
        const uint8_t* lv = b + 2;
        if (qp->form == QxForm::Zero) z = *lv++;
        else if (qp->form == QxForm::Affine) {
          mn = ggml_fp16_to_fp32(hfx_rd16(lv));
          lv += 2;
        } else {
          z = 1 << (m.bits - 1);
        }
        for (int j = 0; j < m.group; ++j) qg[j] = uint8_t(hfx_get_bits(lv, uint64_t(j) * m.bits, m.bits));
      }
      const float d = ggml_fp16_to_fp32(dh);
      if (affine) {
        if (!hfx_affine_zero(d, mn, maxq, &z))
          fail("{}: row {} group {}: the grid q * {} + {} has no integer zero point (the minimum is not fp16(-z * "
               "scale): a ggml Q4_1 or --grid minmax grid); GPTQ/AWQ store (q - z) * scale",
               what, r, g, d, mn);
        mins[r * ng + g] = mn;
      }
      if (z != (1 << (m.bits - 1))) all_sym = false;
      m.scale[r * ng + g] = dh;
      m.zero[r * ng + g] = uint16_t(z);
    }
    // Stored order -> matrix order.
    if (t.perm.empty()) {
      std::copy(qrow.begin(), qrow.end(), m.q.begin() + r * m.in);
    } else {
      for (int64_t k = 0; k < m.in; ++k) m.q[r * m.in + t.perm[k]] = qrow[k];
    }
  }
  m.sym = all_sym;
  m.g_idx.resize(size_t(m.in));
  for (int64_t k = 0; k < m.in; ++k) {
    const int64_t c = t.perm.empty() ? k : t.perm[k];
    m.g_idx[c] = int32_t(k / m.group);
  }
  m.act_order = !t.perm.empty();
  // Check against the loader's values (t.data: the f32 compute mode's weights).
  std::vector<float> ref(size_t(m.in));
  double worst = 0.0;
  for (int64_t r = 0; r < m.out; ++r) {
    tensor_rows_f32(t, r, 1, ref.data());
    for (int64_t c = 0; c < m.in; ++c) {
      const float v = m.value(r, c);
      const double e = std::fabs(double(v) - double(ref[c]));
      if (!affine && e != 0.0)
        fail("{}: internal error: row {} column {} decodes to {} but the loader has {}", what, r, c, v, ref[c]);
      worst = std::max(worst, e);
    }
  }
  if (dev) *dev = worst;
  return m;
}

std::vector<int64_t> interleaved_to_neox_rows(int64_t rows, int heads) {
  if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0)
    fail("q/k rows {} are not {} heads of an even size", rows, heads);
  const int64_t d = rows / heads;
  std::vector<int64_t> src(static_cast<size_t>(rows));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t j = 0; j < 2; ++j) src[h * d + j * (d / 2) + i] = h * d + 2 * i + j;
  return src;
}

void permute_rows(IntQuantMatrix& m, const std::vector<int64_t>& src_row) {
  const int64_t ng = m.n_groups();
  IntQuantMatrix o = m;
  for (int64_t r = 0; r < m.out; ++r) {
    const int64_t s = src_row[r];
    std::copy_n(m.q.begin() + s * m.in, m.in, o.q.begin() + r * m.in);
    std::copy_n(m.scale.begin() + s * ng, ng, o.scale.begin() + r * ng);
    std::copy_n(m.zero.begin() + s * ng, ng, o.zero.begin() + r * ng);
  }
  m = std::move(o);
}

namespace {

// Packs count values of `bits` bits (LSB first) into 32-bit words starting at bit 0 of word 0.
void hfx_put_stream(uint32_t* words, int64_t idx, int bits, uint32_t v) {
  const uint64_t pos = uint64_t(idx) * bits;
  const uint64_t w = pos >> 5, sh = pos & 31;
  words[w] |= v << sh;
  if (sh + bits > 32) words[w + 1] |= v >> (32 - sh);
}
uint32_t hfx_get_stream(const uint32_t* words, int64_t idx, int bits) {
  const uint64_t pos = uint64_t(idx) * bits;
  const uint64_t w = pos >> 5, sh = pos & 31;
  uint64_t v = words[w] >> sh;
  if (sh + bits > 32) v |= uint64_t(words[w + 1]) << (32 - sh);
  return uint32_t(v) & ((1u << bits) - 1u);
}

constexpr int hfx_kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

}  // namespace

GptqTensors pack_gptq(const IntQuantMatrix& m, const std::string& what) {
  if (m.bits != 2 && m.bits != 3 && m.bits != 4 && m.bits != 8)
    fail("{}: {} bits; AutoGPTQ packs 2, 3, 4 or 8 bits", what, m.bits);
  if (m.in % 32 != 0 || m.out % 32 != 0)
    fail("{}: AutoGPTQ packs 32 levels per {} words: the shape {} x {} needs both sizes divisible by 32", what, m.bits,
         m.out, m.in);
  const int64_t ng = m.n_groups();
  for (int64_t i = 0; i < m.out * ng; ++i)
    if (m.zero[i] == 0)
      fail("{}: row {} group {} has zero point 0; AutoGPTQ's format stores zero - 1 and its loader adds 1, so 0 "
           "cannot be stored (compress with --sym, or export --format awq)",
           what, i / ng, i % ng);
  GptqTensors t;
  const int64_t wrows = m.in * m.bits / 32;
  std::vector<uint32_t> qw(size_t(wrows * m.out), 0);
  std::vector<uint32_t> col(static_cast<size_t>(wrows));
  for (int64_t o = 0; o < m.out; ++o) {
    std::fill(col.begin(), col.end(), 0u);
    for (int64_t i = 0; i < m.in; ++i) hfx_put_stream(col.data(), i, m.bits, m.q[o * m.in + i]);
    for (int64_t w = 0; w < wrows; ++w) qw[w * m.out + o] = col[w];
  }
  const int64_t zcols = m.out * m.bits / 32;
  std::vector<uint32_t> qz(size_t(ng * zcols), 0);
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t o = 0; o < m.out; ++o)
      hfx_put_stream(qz.data() + g * zcols, o, m.bits, uint32_t(m.zero[o * ng + g] - 1) & ((1u << m.bits) - 1u));
  t.qweight.assign(qw.begin(), qw.end());
  t.qzeros.assign(qz.begin(), qz.end());
  t.scales.resize(size_t(ng * m.out));
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t o = 0; o < m.out; ++o) t.scales[g * m.out + o] = m.scale[o * ng + g];
  t.g_idx = m.g_idx;
  return t;
}

IntQuantMatrix unpack_gptq(const GptqTensors& t, int64_t out, int64_t in, int bits, int group) {
  IntQuantMatrix m;
  m.out = out;
  m.in = in;
  m.bits = bits;
  m.group = group;
  const int64_t ng = m.n_groups();
  const int64_t wrows = in * bits / 32, zcols = out * bits / 32;
  if (int64_t(t.qweight.size()) != wrows * out || int64_t(t.qzeros.size()) != ng * zcols ||
      int64_t(t.scales.size()) != ng * out || int64_t(t.g_idx.size()) != in)
    fail("unpack_gptq: tensor sizes do not match {} x {}, {} bits, group {}", out, in, bits, group);
  m.q.resize(size_t(out * in));
  m.scale.resize(size_t(out * ng));
  m.zero.resize(size_t(out * ng));
  std::vector<uint32_t> col(static_cast<size_t>(wrows));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t w = 0; w < wrows; ++w) col[w] = uint32_t(t.qweight[w * out + o]);
    for (int64_t i = 0; i < in; ++i) m.q[o * in + i] = uint8_t(hfx_get_stream(col.data(), i, bits));
  }
  const uint32_t* qz = reinterpret_cast<const uint32_t*>(t.qzeros.data());
  bool sym = true;
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t o = 0; o < out; ++o) {
      m.zero[o * ng + g] = uint16_t(hfx_get_stream(qz + g * zcols, o, bits) + 1);  // as auto-gptq 0.7.1 loads it
      m.scale[o * ng + g] = t.scales[g * out + o];
      if (m.zero[o * ng + g] != (1 << (bits - 1))) sym = false;
    }
  m.sym = sym;
  m.g_idx = t.g_idx;
  for (int64_t i = 0; i < in; ++i) {
    if (m.g_idx[i] < 0 || m.g_idx[i] >= ng) fail("unpack_gptq: g_idx[{}] = {} outside 0..{}", i, m.g_idx[i], ng - 1);
    if (m.g_idx[i] != i / group) m.act_order = true;
  }
  return m;
}

AwqTensors pack_awq(const IntQuantMatrix& m, const std::string& what) {
  if (m.bits != 4) fail("{}: {} bits; AutoAWQ's GEMM layout is 4-bit only", what, m.bits);
  if (m.act_order) fail("{}: act-order (g_idx) has no AWQ layout; export it with --format gptq", what);
  if (m.out % 8 != 0) fail("{}: {} outputs; AWQ packs 8 output columns per word", what, m.out);
  const int64_t ng = m.n_groups(), wc = m.out / 8;
  AwqTensors t;
  std::vector<uint32_t> qw(size_t(m.in * wc), 0), qz(size_t(ng * wc), 0);
  for (int64_t i = 0; i < m.in; ++i)
    for (int64_t k = 0; k < wc; ++k)
      for (int j = 0; j < 8; ++j) qw[i * wc + k] |= uint32_t(m.q[(8 * k + hfx_kAwqOrder[j]) * m.in + i]) << (4 * j);
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t k = 0; k < wc; ++k)
      for (int j = 0; j < 8; ++j) qz[g * wc + k] |= uint32_t(m.zero[(8 * k + hfx_kAwqOrder[j]) * ng + g]) << (4 * j);
  t.qweight.assign(qw.begin(), qw.end());
  t.qzeros.assign(qz.begin(), qz.end());
  t.scales.resize(size_t(ng * m.out));
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t o = 0; o < m.out; ++o) t.scales[g * m.out + o] = m.scale[o * ng + g];
  return t;
}

IntQuantMatrix unpack_awq(const AwqTensors& t, int64_t out, int64_t in, int bits, int group) {
  if (bits != 4) fail("unpack_awq: {} bits (4 only)", bits);
  IntQuantMatrix m;
  m.out = out;
  m.in = in;
  m.bits = bits;
  m.group = group;
  const int64_t ng = m.n_groups(), wc = out / 8;
  if (int64_t(t.qweight.size()) != in * wc || int64_t(t.qzeros.size()) != ng * wc || int64_t(t.scales.size()) != ng * out)
    fail("unpack_awq: tensor sizes do not match {} x {}, group {}", out, in, group);
  m.q.resize(size_t(out * in));
  m.scale.resize(size_t(out * ng));
  m.zero.resize(size_t(out * ng));
  for (int64_t i = 0; i < in; ++i)
    for (int64_t k = 0; k < wc; ++k)
      for (int j = 0; j < 8; ++j)
        m.q[(8 * k + hfx_kAwqOrder[j]) * in + i] = uint8_t((uint32_t(t.qweight[i * wc + k]) >> (4 * j)) & 15u);
  bool sym = true;
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t k = 0; k < wc; ++k)
      for (int j = 0; j < 8; ++j) {
        const int64_t o = 8 * k + hfx_kAwqOrder[j];
        m.zero[o * ng + g] = uint16_t((uint32_t(t.qzeros[g * wc + k]) >> (4 * j)) & 15u);
        if (m.zero[o * ng + g] != 8) sym = false;
      }
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t o = 0; o < out; ++o) m.scale[o * ng + g] = t.scales[g * out + o];
  m.sym = sym;
  m.g_idx.resize(size_t(in));
  for (int64_t i = 0; i < in; ++i) m.g_idx[i] = int32_t(i / group);
  return m;
}

json HfExportResult::to_json() const {
  return {{"dir", dir},
          {"format", format},
          {"architecture", hf_class},
          {"bits", bits},
          {"group_size", group},
          {"sym", sym},
          {"desc_act", desc_act},
          {"quantized_linears", n_quantized},
          {"plain_tensors", n_plain},
          {"max_abs_weight_deviation", max_dev},
          {"safetensors_bytes", safetensors_bytes},
          {"files", files},
          {"tokenizer", tokenizer_note}};
}

namespace {

// A float as JSON with its shortest decimal form (1e-05, not 9.99999974737875e-06).
json hfx_short_float(float v) { return json::parse(fmt::format("{}", v)); }

struct hfx_OutTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

template <class T>
hfx_OutTensor hfx_make_tensor(std::string name, std::string dtype, std::vector<int64_t> shape, const std::vector<T>& v) {
  hfx_OutTensor o{std::move(name), std::move(dtype), std::move(shape), {}};
  o.bytes.resize(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(o.bytes.data(), v.data(), o.bytes.size());
  return o;
}

// Hugging Face name of a GGUF tensor name (the reverse of the loader's map, io/arch.h).
std::string hfx_hf_name(const std::string& g, const ArchSpec& spec) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  if (g.rfind("blk.", 0) != 0) return "";
  const size_t dot = g.find('.', 4);
  if (dot == std::string::npos) return "";
  const std::string layer = g.substr(4, dot - 4), rest = g.substr(dot + 1);
  for (const HfTensorName& n : spec.hf_layer_names)
    if (rest == n.gguf) return "model.layers." + layer + "." + n.hf;
  return "";
}

bool hfx_is_block_linear(const std::string& g) {
  for (const char* s : {".attn_q.weight", ".attn_k.weight", ".attn_v.weight", ".attn_output.weight", ".ffn_gate.weight",
                        ".ffn_up.weight", ".ffn_down.weight"})
    if (g.rfind("blk.", 0) == 0 && g.ends_with(s)) return true;
  return false;
}

// tokenizer.json for the byte-level BPE pre-tokenizers whose Hugging Face form is known (the ones
// tokenizer_from_json maps back to the same pre name, io/tokenizer_load.cpp); nullopt otherwise.
std::optional<ojson> hfx_tokenizer_json(const TokenizerData& d, std::string* why) {
  if (d.model != "gpt2") {
    *why = fmt::format("tokenizer model '{}' (only byte-level BPE vocabularies are written)", d.model);
    return std::nullopt;
  }
  ojson pre;
  ojson normalizer = nullptr;
  if (d.pre == "smollm") {
    pre = {{"type", "Sequence"},
           {"pretokenizers",
            ojson::array({{{"type", "Digits"}, {"individual_digits", true}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                           {"use_regex", true}}})}};
  } else if (d.pre == "qwen2") {
    normalizer = {{"type", "NFC"}};
    pre = {{"type", "Sequence"},
           {"pretokenizers",
            ojson::array(
                {{{"type", "Split"},
                  {"pattern",
                   {{"Regex",
                     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                  {"behavior", "Isolated"},
                  {"invert", false}},
                 {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                  {"use_regex", false}}})}};
  } else {
    *why = fmt::format("pre-tokenizer '{}' (written: smollm, qwen2)", d.pre);
    return std::nullopt;
  }
  ojson vocab = ojson::object();
  ojson added = ojson::array();
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    const int type = d.token_types.empty() ? 1 : d.token_types[i];
    if (type == 3 || type == 4)
      added.push_back({{"id", i}, {"content", d.tokens[i]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", type == 4}, {"special", type == 3}});
    vocab[d.tokens[i]] = i;
  }
  ojson merges = ojson::array();
  for (const std::string& mg : d.merges) merges.push_back(mg);
  return ojson{{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", added},
               {"normalizer", normalizer},
               {"pre_tokenizer", pre},
               {"post_processor",
                {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
               {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
                            {"use_regex", true}}},
               {"model",
                {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                 {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}}}};
}

void hfx_write_text(const fs::path& p, const std::string& s) {
  AtomicFile f(p.string());
  if (std::fwrite(s.data(), 1, s.size(), f.fp()) != s.size()) fail("{}: write failed", p.string());
  f.commit();
}

}  // namespace

HfExportResult export_hf(const LoadedModel& m, const std::string& dir, const HfExportOptions& o) {
  if (m.format != "gguf") fail("{}: export-hf reads a GGUF file (got a {} model)", m.path, m.format);
  const ModelConfig& c = m.cfg;
  const ArchSpec& spec = arch_spec(c.arch);
  if (!*spec.hf_model_type)
    fail("{}: architecture {} has no Hugging Face export (supported: llama, mistral, qwen2)", m.path, c.arch);
  if (c.rope_freq_scale != 1.0f)
    fail("{}: linear RoPE scaling is not exported", m.path);
  if (!o.tokenizer_from.empty() && !fs::exists(fs::path(o.tokenizer_from) / "tokenizer.json") &&
      !fs::exists(fs::path(o.tokenizer_from) / "tokenizer_config.json"))
    fail("{}: no tokenizer files (tokenizer.json, tokenizer_config.json, ...)", o.tokenizer_from);
  const bool awq = o.format == HfQuantFormat::Awq;
  HfExportResult res;
  res.dir = dir;
  res.format = awq ? "awq" : "gptq";
  res.hf_class = spec.hf_class;

  // 1. The quantized Linears in integer form (HF row order), checked for one common grid.
  std::map<std::string, IntQuantMatrix> quant;
  std::vector<std::string> plain_linears;
  for (const auto& [name, t] : m.tensors) {
    if (!hfx_is_block_linear(name)) continue;
    if (t.src_type == GgmlType::F32 || t.src_type == GgmlType::F16 || t.src_type == GgmlType::BF16) {
      plain_linears.push_back(name);
      continue;
    }
    double dev = 0.0;
    IntQuantMatrix q = int_quant_from_tensor(t, name, &dev);
    res.max_dev = std::max(res.max_dev, dev);
    const bool permute = c.rope == RopeLayout::Interleaved && spec.export_permute_qk &&
                         (name.ends_with(".attn_q.weight") || name.ends_with(".attn_k.weight"));
    if (permute)
      permute_rows(q, interleaved_to_neox_rows(q.out, name.ends_with(".attn_q.weight") ? c.n_heads : c.n_kv_heads));
    quant.emplace(name, std::move(q));
  }
  if (quant.empty())
    fail("{}: no quantized Linear in the file (all are {}); compress it first (ctrust compress --method gptq ...)",
         m.path, plain_linears.empty() ? "missing" : "F32/F16");
  if (!plain_linears.empty())
    fail("{}: {} is not quantized but {} is; AutoGPTQ/AutoAWQ quantize every Linear of the blocks", m.path,
         plain_linears.front(), quant.begin()->first);
  const IntQuantMatrix& first = quant.begin()->second;
  res.bits = first.bits;
  const bool per_channel = first.group == first.in;
  res.sym = true;
  for (const auto& [name, q] : quant) {
    const bool pc = q.group == q.in;
    if (q.bits != res.bits || pc != per_channel || (!pc && q.group != first.group))
      fail("{}: {} has {} bits, group {} but {} has {} bits, group {}; quantization_config has one bits/group_size",
           m.path, name, q.bits, pc ? "per channel" : std::to_string(q.group), quant.begin()->first, first.bits,
           per_channel ? "per channel" : std::to_string(first.group));
    res.sym = res.sym && q.sym;
    res.desc_act = res.desc_act || q.act_order;
  }
  res.group = per_channel ? -1 : first.group;
  if (per_channel && awq) {
    // AutoAWQ has no per-channel form (q_group_size -1 is not supported by WQLinear_GEMM).
    fail("{}: per-channel grids have no AWQ layout; export with --format gptq", m.path);
  }

  // 2. Tensors.
  std::vector<hfx_OutTensor> out;
  for (const auto& [name, t] : m.tensors) {
    const std::string hn = hfx_hf_name(name, spec);
    if (hn.empty()) fail("{}: tensor {} has no Hugging Face name for {}", m.path, name, spec.hf_class);
    if (auto it = quant.find(name); it != quant.end()) {
      const IntQuantMatrix& q = it->second;
      const std::string base = hn.substr(0, hn.size() - std::string(".weight").size());
      if (awq) {
        AwqTensors a = pack_awq(q, name);
        out.push_back(hfx_make_tensor(base + ".qweight", "I32", {q.in, q.out / 8}, a.qweight));
        out.push_back(hfx_make_tensor(base + ".qzeros", "I32", {q.n_groups(), q.out / 8}, a.qzeros));
        out.push_back(hfx_make_tensor(base + ".scales", "F16", {q.n_groups(), q.out}, a.scales));
      } else {
        GptqTensors g = pack_gptq(q, name);
        out.push_back(hfx_make_tensor(base + ".qweight", "I32", {q.in * q.bits / 32, q.out}, g.qweight));
        out.push_back(hfx_make_tensor(base + ".qzeros", "I32", {q.n_groups(), q.out * q.bits / 32}, g.qzeros));
        out.push_back(hfx_make_tensor(base + ".scales", "F16", {q.n_groups(), q.out}, g.scales));
        out.push_back(hfx_make_tensor(base + ".g_idx", "I32", {q.in}, g.g_idx));
      }
      ++res.n_quantized;
      continue;
    }
    // Plain tensors in F32, q/k rows (and biases) of interleaved files back in NeoX order.
    std::vector<float> v(size_t(t.numel()));
    tensor_rows_f32(t, 0, t.rows(), v.data());
    const bool is_q = name.ends_with(".attn_q.weight") || name.ends_with(".attn_q.bias");
    const bool is_k = name.ends_with(".attn_k.weight") || name.ends_with(".attn_k.bias");
    if (c.rope == RopeLayout::Interleaved && spec.export_permute_qk && (is_q || is_k)) {
      const bool bias = t.ne.size() == 1;
      const int64_t rows = bias ? t.ne[0] : t.rows(), cols = bias ? 1 : t.cols();
      const auto src = interleaved_to_neox_rows(rows, is_q ? c.n_heads : c.n_kv_heads);
      std::vector<float> p(v.size());
      for (int64_t r = 0; r < rows; ++r) std::copy_n(v.begin() + src[r] * cols, cols, p.begin() + r * cols);
      v = std::move(p);
    }
    std::vector<int64_t> shape(t.ne.rbegin(), t.ne.rend());
    out.push_back(hfx_make_tensor(hn, "F32", shape, v));
    ++res.n_plain;
  }
  std::sort(out.begin(), out.end(), [](const hfx_OutTensor& a, const hfx_OutTensor& b) { return a.name < b.name; });

  // 3. config.json.
  ojson qc;
  if (awq) {
    qc = {{"quant_method", "awq"}, {"version", "gemm"}, {"bits", res.bits}, {"group_size", res.group},
          {"zero_point", true}, {"w_bit", res.bits}, {"q_group_size", res.group}, {"modules_to_not_convert", nullptr}};
  } else {
    qc = {{"quant_method", "gptq"}, {"bits", res.bits}, {"group_size", res.group}, {"desc_act", res.desc_act},
          {"sym", res.sym}, {"true_sequential", true}, {"damp_percent", 0.01}, {"static_groups", false},
          {"checkpoint_format", "gptq"}, {"model_file_base_name", "model"}};
  }
  ojson cfg = {{"architectures", ojson::array({spec.hf_class})},
               {"model_type", spec.hf_model_type},
               {"hidden_size", c.dim},
               {"intermediate_size", c.hidden_dim},
               {"num_hidden_layers", c.n_layers},
               {"num_attention_heads", c.n_heads},
               {"num_key_value_heads", c.n_kv_heads},
               {"head_dim", c.head_dim},
               {"max_position_embeddings", c.n_ctx},
               {"rms_norm_eps", hfx_short_float(c.norm_eps)},
               {"rope_theta", hfx_short_float(c.rope_theta)},
               {"rope_scaling", nullptr},
               {"vocab_size", c.n_vocab},
               {"hidden_act", "silu"},
               {"tie_word_embeddings", c.tied_output},
               {"attention_bias", c.qkv_bias},
               {"mlp_bias", false},
               {"initializer_range", 0.02},
               {"use_cache", true},
               {"torch_dtype", "float16"}};
  if (spec.hf_model_type == std::string("qwen2")) {
    cfg["use_sliding_window"] = false;
    cfg["sliding_window"] = nullptr;
    cfg["max_window_layers"] = c.n_layers;
    cfg.erase("attention_bias");
    cfg.erase("mlp_bias");
  }
  if (m.tok.bos_id >= 0) cfg["bos_token_id"] = m.tok.bos_id;
  if (m.tok.eos_id >= 0) cfg["eos_token_id"] = m.tok.eos_id;
  if (m.tok.pad_id >= 0) cfg["pad_token_id"] = m.tok.pad_id;
  cfg["quantization_config"] = qc;

  // 4. Write.
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the folder: {}", dir, ec.message());
  const fs::path d(dir);
  std::vector<SafetensorsWriteTensor> wt;
  for (const hfx_OutTensor& t : out) {
    wt.push_back({t.name, t.dtype, t.shape, t.bytes.data()});
    res.safetensors_bytes += t.bytes.size();
  }
  write_safetensors((d / "model.safetensors").string(), wt, {{"format", "pt"}});
  res.files.push_back("model.safetensors");
  hfx_write_text(d / "config.json", cfg.dump(2) + "\n");
  res.files.push_back("config.json");
  if (awq) {  // AutoAWQ's own file name for the same keys
    hfx_write_text(d / "quant_config.json",
               ojson{{"zero_point", true}, {"q_group_size", res.group}, {"w_bit", res.bits}, {"version", "GEMM"}}
                       .dump(2) + "\n");
    res.files.push_back("quant_config.json");
  } else {  // auto-gptq reads quantize_config.json
    hfx_write_text(d / "quantize_config.json", qc.dump(2) + "\n");
    res.files.push_back("quantize_config.json");
  }
  ojson gen = ojson::object();
  if (m.tok.bos_id >= 0) gen["bos_token_id"] = m.tok.bos_id;
  if (m.tok.eos_id >= 0) gen["eos_token_id"] = m.tok.eos_id;
  hfx_write_text(d / "generation_config.json", gen.dump(2) + "\n");
  res.files.push_back("generation_config.json");

  // 5. Tokenizer.
  if (!o.tokenizer_from.empty()) {
    int copied = 0;
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                          "merges.txt", "tokenizer.model", "added_tokens.json"}) {
      const fs::path src = fs::path(o.tokenizer_from) / f;
      if (!fs::exists(src)) continue;
      fs::copy_file(src, d / f, fs::copy_options::overwrite_existing, ec);
      if (ec) fail("{}: cannot copy: {}", src.string(), ec.message());
      res.files.push_back(f);
      ++copied;
    }
    if (copied == 0) fail("{}: no tokenizer files (tokenizer.json, tokenizer_config.json, ...)", o.tokenizer_from);
    res.tokenizer_note = fmt::format("copied {} files from {}", copied, o.tokenizer_from);
  } else {
    std::string why;
    if (auto tj = hfx_tokenizer_json(m.tok, &why)) {
      hfx_write_text(d / "tokenizer.json", tj->dump() + "\n");
      ojson tc = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                  {"add_bos_token", m.tok.add_bos},
                  {"add_eos_token", m.tok.add_eos},
                  {"clean_up_tokenization_spaces", false},
                  {"model_max_length", c.n_ctx}};
      auto tok_or_null = [&](int32_t id) -> ojson {
        return id >= 0 && id < int32_t(m.tok.tokens.size()) ? ojson(m.tok.tokens[id]) : ojson(nullptr);
      };
      tc["bos_token"] = tok_or_null(m.tok.bos_id);
      tc["eos_token"] = tok_or_null(m.tok.eos_id);
      tc["unk_token"] = tok_or_null(m.tok.unk_id);
      if (m.tok.pad_id >= 0) tc["pad_token"] = tok_or_null(m.tok.pad_id);
      if (!m.tok.chat_template.empty()) tc["chat_template"] = m.tok.chat_template;
      hfx_write_text(d / "tokenizer_config.json", tc.dump(2) + "\n");
      res.files.push_back("tokenizer.json");
      res.files.push_back("tokenizer_config.json");
      res.tokenizer_note = fmt::format("written from the GGUF vocabulary and merges (pre-tokenizer {})", m.tok.pre);
    } else {
      res.tokenizer_note = fmt::format(
          "not written: {}; copy the original model's tokenizer files with --tokenizer-from HFDIR", why);
    }
  }
  return res;
}

}  // namespace ctrust
