// The two pretrained offline toxicity classifiers of ../shared/data/toxicity/ (README.md there has the scoring
// rules): alt-profanity-check (TF-IDF + 5 calibrated linear SVMs) and tox-block (BiLSTM). Tested against the
// numpy reference scripts/ref/toxicity_ref.py (tests/golden/toxicity_classifiers.json).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "io/safetensors.h"
#include "trust/toxicity.h"
#include "trust/unicode_tables.h"

namespace ctrust {

// ------------------------------------------------------------------ Unicode (Python's str.lower and re \w)
namespace {

// Decodes UTF-8; an invalid byte becomes U+FFFD (Python would have failed to decode; texts here are valid).
std::vector<uint32_t> utf8_decode(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    bool ok = n > 0 && i + n <= s.size();
    for (int k = 1; ok && k < n; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) ok = false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += n;
  }
  return out;
}

void utf8_append(std::string& o, uint32_t cp) {
  if (cp < 0x80) {
    o += static_cast<char>(cp);
  } else if (cp < 0x800) {
    o += static_cast<char>(0xC0 | (cp >> 6));
    o += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    o += static_cast<char>(0xE0 | (cp >> 12));
    o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    o += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    o += static_cast<char>(0xF0 | (cp >> 18));
    o += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    o += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Python's str.lower() as code points (U+0130 -> "i\u0307", the one two-code-point case).
std::vector<uint32_t> py_lower(std::string_view s) {
  std::vector<uint32_t> out;
  for (uint32_t cp : utf8_decode(s)) {
    if (cp < 0x80) {
      out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    } else if (cp == 0x130) {
      out.push_back('i');
      out.push_back(0x307);
    } else {
      const auto* b = std::begin(unicode::kLowerMap);
      const auto* e = std::end(unicode::kLowerMap);
      const auto* it = std::lower_bound(b, e, cp, [](const uint32_t(&p)[2], uint32_t v) { return p[0] < v; });
      out.push_back(it != e && (*it)[0] == cp ? (*it)[1] : cp);
    }
  }
  return out;
}

bool py_word(uint32_t cp) {  // re's \w in Unicode mode
  if (cp < 0x80) return std::isalnum(static_cast<int>(cp)) || cp == '_';
  const auto* b = std::begin(unicode::kWordRanges);
  const auto* e = std::end(unicode::kWordRanges);
  const auto* it = std::upper_bound(b, e, cp, [](uint32_t v, const uint32_t(&r)[2]) { return v < r[0]; });
  return it != b && cp <= (*(it - 1))[1];
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open", path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(std::move(l));
  }
  return lines;
}

nlohmann::json read_json(const std::string& path) {
  const std::string text = read_regular_file(path, "toxicity classifier JSON", kMaxJsonBytes);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

double parse_double(const std::string& s, const std::string& where) {
  try {
    size_t n = 0;
    double v = std::stod(s, &n);
    if (n != s.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (const std::exception&) {
    fail("{}: '{}' is not a number", where, s);
  }
}

}  // namespace

// ------------------------------------------------------------------ alt-profanity-check
AltProfanity load_alt_profanity(const std::string& dir) {
  AltProfanity m;
  nlohmann::json j = read_json(dir + "/model.json");
  try {
    const auto& c = j.at("classifier");
    for (int k = 0; k < 5; ++k) {
      m.b[k] = c.at("intercepts").at(k).get<double>();
      m.a[k] = c.at("sigmoid_a").at(k).get<double>();
      m.c[k] = c.at("sigmoid_b").at(k).get<double>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}/model.json: no classifier intercepts/sigmoid_a/sigmoid_b for 5 SVMs: {}", dir, e.what());
  }
  const std::string path = dir + "/vocab_idf_weights.tsv";
  auto lines = read_lines(path);
  if (lines.empty() || lines[0].rfind("token\tindex\tidf", 0) != 0) fail("{}: missing header line", path);
  for (size_t r = 1; r < lines.size(); ++r) {
    if (lines[r].empty()) continue;
    std::vector<std::string> f;
    std::stringstream ss(lines[r]);
    for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
    std::string where = fmt::format("{}:{}", path, r + 1);
    if (f.size() != 8) fail("{}: {} fields (want token, index, idf, w0..w4)", where, f.size());
    if (static_cast<size_t>(parse_double(f[1], where)) != m.idf.size()) fail("{}: index out of order", where);
    m.vocab.emplace(f[0], static_cast<int>(m.idf.size()));
    m.idf.push_back(parse_double(f[2], where));
    for (int k = 0; k < 5; ++k) m.w.push_back(parse_double(f[3 + k], where));
  }
  if (m.idf.empty()) fail("{}: empty vocabulary", path);
  return m;
}

std::vector<std::pair<int, double>> alt_tfidf(const AltProfanity& m, std::string_view text) {
  // tokens: maximal runs of 2+ \w code points of the lower-cased text ((?u)\b\w\w+\b)
  std::vector<uint32_t> cps = py_lower(text);
  std::vector<std::pair<int, double>> x;  // (vocab index, count)
  std::string tok;
  for (size_t i = 0; i <= cps.size(); ++i) {
    if (i < cps.size() && py_word(cps[i])) {
      size_t j = i;
      tok.clear();
      while (j < cps.size() && py_word(cps[j])) utf8_append(tok, cps[j++]);
      if (j - i >= 2)
        if (auto it = m.vocab.find(tok); it != m.vocab.end()) x.push_back({it->second, 1.0});
      i = j - 1;
    }
  }
  std::sort(x.begin(), x.end());
  std::vector<std::pair<int, double>> u;
  for (auto& p : x)
    if (!u.empty() && u.back().first == p.first) u.back().second += 1;
    else u.push_back(p);
  double norm = 0;
  for (auto& [j, v] : u) {
    v *= m.idf[j];
    norm += v * v;
  }
  norm = std::sqrt(norm);
  for (auto& [j, v] : u) v /= norm;
  return u;
}

std::array<double, 5> alt_margins(const AltProfanity& m, std::string_view text) {
  std::array<double, 5> f = m.b;
  for (auto& [j, v] : alt_tfidf(m, text))
    for (int k = 0; k < 5; ++k) f[k] += m.w[static_cast<size_t>(j) * 5 + k] * v;
  return f;
}

double alt_probability(const AltProfanity& m, const std::array<double, 5>& f) {
  double p = 0;
  for (int k = 0; k < 5; ++k) p += 1 / (1 + std::exp(m.a[k] * f[k] + m.c[k]));
  return p / 5;
}

// ------------------------------------------------------------------ tox-block
namespace {
constexpr int kH = 50, kE = 50, kT = 100, kVocab = 20000;

std::vector<float> tensor_f32(const SafetensorsFile& f, const std::string& name, std::vector<int64_t> shape) {
  const SafetensorsTensor* t = f.find(name);
  if (!t) fail("{}: no tensor '{}'", f.path, name);
  if (t->dtype != "F32" || t->shape != shape) fail("{}: tensor '{}' is not F32 of the expected shape", f.path, name);
  std::vector<float> v(static_cast<size_t>(t->numel()));
  std::memcpy(v.data(), t->data, v.size() * sizeof(float));
  return v;
}

inline double hard_sigmoid(double z) { return std::clamp(0.2 * z + 0.5, 0.0, 1.0); }

// One LSTM step: z = x·K + h·R + b (x·K + b precomputed in xk), gates i, f, g, o.
void lstm_step(const ToxBlock::Lstm& l, const double* xk, double* h, double* c) {
  double z[4 * kH];
  std::copy(xk, xk + 4 * kH, z);
  for (int r = 0; r < kH; ++r) {
    const double hr = h[r];
    const float* row = &l.R[static_cast<size_t>(r) * 4 * kH];
    for (int q = 0; q < 4 * kH; ++q) z[q] += hr * row[q];
  }
  for (int q = 0; q < kH; ++q) {
    c[q] = hard_sigmoid(z[kH + q]) * c[q] + hard_sigmoid(z[q]) * std::tanh(z[2 * kH + q]);
    h[q] = hard_sigmoid(z[3 * kH + q]) * std::tanh(c[q]);
  }
}

void input_proj(const ToxBlock::Lstm& l, const float* x, double* out) {
  for (int q = 0; q < 4 * kH; ++q) out[q] = l.b[q];
  for (int e = 0; e < kE; ++e) {
    const double xe = x[e];
    const float* row = &l.K[static_cast<size_t>(e) * 4 * kH];
    for (int q = 0; q < 4 * kH; ++q) out[q] += xe * row[q];
  }
}
}  // namespace

ToxBlock load_tox_block(const std::string& dir) {
  ToxBlock m;
  SafetensorsFile f = read_safetensors(dir + "/weights.safetensors");
  m.emb = tensor_f32(f, "embedding.embeddings", {kVocab, kE});
  for (auto [l, pre] : {std::pair{&m.fw, "bidirectional.forward_lstm.lstm_cell."},
                        std::pair{&m.bw, "bidirectional.backward_lstm.lstm_cell."}}) {
    l->K = tensor_f32(f, std::string(pre) + "kernel", {kE, 4 * kH});
    l->R = tensor_f32(f, std::string(pre) + "recurrent_kernel", {kH, 4 * kH});
    l->b = tensor_f32(f, std::string(pre) + "bias", {4 * kH});
  }
  m.dense_w = tensor_f32(f, "dense.kernel", {2 * kH, 50});
  m.dense_b = tensor_f32(f, "dense.bias", {50});
  m.out_w = tensor_f32(f, "dense_1.kernel", {50, 6});
  m.out_b = tensor_f32(f, "dense_1.bias", {6});
  const std::string vpath = dir + "/vocab.tsv";
  auto lines = read_lines(vpath);
  for (size_t r = 0; r < lines.size(); ++r) {
    if (lines[r].empty()) continue;
    size_t tab = lines[r].rfind('\t');
    if (tab == std::string::npos) fail("{}:{}: want word<TAB>id", vpath, r + 1);
    double id = parse_double(lines[r].substr(tab + 1), fmt::format("{}:{}", vpath, r + 1));
    if (id >= 1 && id < kVocab) m.vocab.emplace(lines[r].substr(0, tab), static_cast<int>(id));
  }
  if (m.vocab.empty()) fail("{}: empty vocabulary", vpath);
  // The forward LSTM first runs over the left padding (id 0), the same for every text: its state and running
  // maximum after n pad steps are computed once.
  std::vector<double> xk(4 * kH);
  input_proj(m.fw, &m.emb[0], xk.data());
  std::vector<double> h(kH, 0.0), c(kH, 0.0), mx(kH, -INFINITY);
  m.pad_h.assign(h.begin(), h.end());
  m.pad_c.assign(c.begin(), c.end());
  m.pad_max.assign(mx.begin(), mx.end());
  for (int n = 1; n <= kT; ++n) {
    lstm_step(m.fw, xk.data(), h.data(), c.data());
    for (int q = 0; q < kH; ++q) mx[q] = std::max(mx[q], h[q]);
    m.pad_h.insert(m.pad_h.end(), h.begin(), h.end());
    m.pad_c.insert(m.pad_c.end(), c.begin(), c.end());
    m.pad_max.insert(m.pad_max.end(), mx.begin(), mx.end());
  }
  return m;
}

std::vector<int> tox_block_ids(const ToxBlock& m, std::string_view text) {
  static const std::string kFilters = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n";
  std::string low;
  for (uint32_t cp : py_lower(text)) {
    if (cp < 0x80 && kFilters.find(static_cast<char>(cp)) != std::string::npos) cp = ' ';
    utf8_append(low, cp);
  }
  std::vector<int> ids;
  size_t i = 0;
  while (i <= low.size()) {
    size_t j = low.find(' ', i);
    if (j == std::string::npos) j = low.size();
    if (j > i)
      if (auto it = m.vocab.find(low.substr(i, j - i)); it != m.vocab.end()) ids.push_back(it->second);
    i = j + 1;
  }
  if (ids.size() > static_cast<size_t>(kT)) ids.erase(ids.begin(), ids.end() - kT);
  return ids;  // the last <= 100 known ids, without the left padding
}

namespace {
// tox-block's 6 output logits (before the sigmoid) for the known ids of a text (at most 100, without padding).
std::array<double, 6> tox_block_logits(const ToxBlock& m, const std::vector<int>& ids, std::array<double, 100>* pool) {
  const int n = static_cast<int>(ids.size()), pad = kT - n;
  std::vector<double> xk_f(static_cast<size_t>(n) * 4 * kH), xk_b(static_cast<size_t>(n + 1) * 4 * kH);
  for (int t = 0; t < n; ++t) {
    input_proj(m.fw, &m.emb[static_cast<size_t>(ids[t]) * kE], &xk_f[static_cast<size_t>(t) * 4 * kH]);
    input_proj(m.bw, &m.emb[static_cast<size_t>(ids[t]) * kE], &xk_b[static_cast<size_t>(t) * 4 * kH]);
  }
  input_proj(m.bw, &m.emb[0], &xk_b[static_cast<size_t>(n) * 4 * kH]);  // the pad id
  double pooled[2 * kH];
  // forward: cached state after `pad` pad steps, then the ids
  double h[kH], c[kH];
  std::copy_n(&m.pad_h[static_cast<size_t>(pad) * kH], kH, h);
  std::copy_n(&m.pad_c[static_cast<size_t>(pad) * kH], kH, c);
  std::copy_n(&m.pad_max[static_cast<size_t>(pad) * kH], kH, pooled);
  for (int t = 0; t < n; ++t) {
    lstm_step(m.fw, &xk_f[static_cast<size_t>(t) * 4 * kH], h, c);
    for (int q = 0; q < kH; ++q) pooled[q] = std::max(pooled[q], h[q]);
  }
  // backward: the ids from last to first, then the pads
  std::fill_n(h, kH, 0.0);
  std::fill_n(c, kH, 0.0);
  std::fill_n(pooled + kH, kH, -INFINITY);
  for (int s = 0; s < kT; ++s) {
    const double* xk = s < n ? &xk_b[static_cast<size_t>(n - 1 - s) * 4 * kH] : &xk_b[static_cast<size_t>(n) * 4 * kH];
    lstm_step(m.bw, xk, h, c);
    for (int q = 0; q < kH; ++q) pooled[kH + q] = std::max(pooled[kH + q], h[q]);
  }
  if (pool) std::copy_n(pooled, 2 * kH, pool->begin());
  double d[50];
  for (int o = 0; o < 50; ++o) d[o] = m.dense_b[o];
  for (int r = 0; r < 2 * kH; ++r)
    for (int o = 0; o < 50; ++o) d[o] += pooled[r] * m.dense_w[static_cast<size_t>(r) * 50 + o];
  std::array<double, 6> out;
  for (int k = 0; k < 6; ++k) {
    double z = m.out_b[k];
    for (int o = 0; o < 50; ++o) z += std::max(d[o], 0.0) * m.out_w[static_cast<size_t>(o) * 6 + k];
    out[k] = z;
  }
  return out;
}
}  // namespace

std::array<double, 6> tox_block_outputs(const ToxBlock& m, std::string_view text, std::array<double, 100>* pool) {
  std::array<double, 6> out = tox_block_logits(m, tox_block_ids(m, text), pool);
  for (double& z : out) z = 1 / (1 + std::exp(-z));
  return out;
}

std::array<double, 6> tox_block_word_logits(const ToxBlock& m, int id) {
  if (id < 1 || id >= kVocab) fail("tox-block: word id {} outside 1..{}", id, kVocab - 1);
  return tox_block_logits(m, {id}, nullptr);
}

}  // namespace ctrust
