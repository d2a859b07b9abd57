// imatrix collection and llama.cpp's GGUF imatrix file format (see imatrix.h).
#include "compress/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <omp.h>

#include "base/error.h"
#include "compress/driver.h"
#include "io/gguf.h"

namespace ctrust {

std::vector<float> imatrix_weights(const ImatrixEntry& e) {
  std::vector<float> w(e.sum2.size(), 1.0f);
  if (e.count > 0.0f)
    for (size_t j = 0; j < w.size(); ++j) w[j] = e.sum2[j] / e.count;
  return w;
}

Imatrix collect_imatrix(const Model& m, const Calibration& calib,
                        const std::function<void(const std::string&)>& progress) {
  const ModelConfig& c = m.cfg;
  if (calib.seqs.empty()) fail("{}: no calibration sequences", calib.file);
  const int N = int(calib.seqs.size()), L = int(calib.seqs[0].size()), dim = c.dim;
  for (const auto& s : calib.seqs)
    for (int32_t id : s)
      if (id < 0 || id >= c.n_vocab) fail("{}: calibration token id {} is out of range", calib.file, id);
  if (!m.tok_embd) fail("{}: the imatrix needs the model loaded in the f32 compute mode", m.file.path);
  std::vector<float> X(size_t(N) * L * dim);
  for (int s = 0; s < N; ++s)
    for (int i = 0; i < L; ++i)
      std::memcpy(&X[(size_t(s) * L + i) * dim], m.tok_embd + size_t(calib.seqs[s][i]) * dim, sizeof(float) * dim);
  Imatrix im;
  im.datasets = {calib.file};
  im.chunk_count = uint32_t(N);
  im.chunk_size = uint32_t(L);
  // Per layer: one forward of every sequence; each sequence's sums go to its own slot, added in sequence order
  // (the result does not depend on the thread count).
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<std::map<std::string, std::vector<double>>> per(N);
#pragma omp parallel for schedule(dynamic, 1) if (N > 1)
    for (int s = 0; s < N; ++s) {
      auto& mine = per[s];
      LinearObserver obs = [&](int, std::string_view name, const float* x, int rows, int cols) {
        auto& v = mine[std::string(name)];
        v.assign(size_t(cols), 0.0);
        for (int r = 0; r < rows; ++r)
          for (int j = 0; j < cols; ++j) v[j] += double(x[size_t(r) * cols + j]) * x[size_t(r) * cols + j];
      };
      block_forward(m, l, &X[size_t(s) * L * dim], L, &obs);
    }
    // Sum in double across sequences, then store f32.
    std::map<std::string, std::vector<double>> tot;
    for (int s = 0; s < N; ++s)
      for (const auto& [name, v] : per[s]) {
        auto& t = tot[name];
        if (t.empty()) t.assign(v.size(), 0.0);
        for (size_t j = 0; j < v.size(); ++j) t[j] += v[j];
      }
    for (const auto& [name, t] : tot) {
      ImatrixEntry& e = im.entries[fmt::format("blk.{}.{}.weight", l, name)];
      e.sum2.assign(t.begin(), t.end());
      e.count = float(int64_t(N) * L);
    }
    if (progress) progress(fmt::format("imatrix: block {} / {}", l + 1, c.n_layers));
  }
  return im;
}

void write_imatrix(const std::string& path, const Imatrix& im) {
  std::vector<GgufKV> kv = {{"general.type", GgufValue::str("imatrix")},
                            {"imatrix.datasets", GgufValue::str_array(im.datasets)},
                            {"imatrix.chunk_count", GgufValue::u32(im.chunk_count)},
                            {"imatrix.chunk_size", GgufValue::u32(im.chunk_size)}};
  std::vector<GgufWriteTensor> ts;
  std::vector<std::string> names;  // std::map iterates sorted: llama-imatrix's order
  for (const auto& [name, e] : im.entries) names.push_back(name);
  std::vector<float> counts(im.entries.size());
  size_t i = 0;
  for (const auto& [name, e] : im.entries) {
    counts[i] = e.count;
    ts.push_back({name + ".in_sum2", {int64_t(e.sum2.size()), 1}, GgmlType::F32, e.sum2.data(), nullptr});
    ts.push_back({name + ".counts", {1, 1}, GgmlType::F32, &counts[i], nullptr});
    ++i;
  }
  write_gguf(path, kv, ts);
}

Imatrix read_imatrix(const std::string& path) {
  GgufFile f;
  try {
    f = read_gguf(path);
  } catch (const Error&) {
    fail("{}: not a GGUF imatrix file (ctrust reads llama.cpp's GGUF imatrix format; convert a legacy .dat file "
         "with llama-imatrix --in-file FILE.dat -o FILE.gguf)", path);
  }
  Imatrix im;
  if (const GgufValue* v = f.find("imatrix.datasets"))
    for (const GgufValue& s : v->arr) im.datasets.push_back(s.s);
  im.chunk_count = uint32_t(f.get_int("imatrix.chunk_count", 0));
  im.chunk_size = uint32_t(f.get_int("imatrix.chunk_size", 0));
  auto strip = [](const std::string& n, const std::string& suf, std::string& base) {
    if (n.size() <= suf.size() || n.compare(n.size() - suf.size(), suf.size(), suf) != 0) return false;
    base = n.substr(0, n.size() - suf.size());
    return true;
  };
  std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> sc;
  for (const GgufTensorInfo& t : f.tensors) {
    std::string base;
    if (strip(t.name, ".in_sum2", base)) sc[base].first = &t;
    else if (strip(t.name, ".counts", base)) sc[base].second = &t;
  }
  if (sc.empty()) fail("{}: no imatrix entries (<name>.in_sum2 / <name>.counts tensors)", path);
  for (const auto& [name, p] : sc) {
    if (!p.first || !p.second) fail("{}: imatrix entry '{}' has no matching sums and counts", path, name);
    if (p.first->type != GgmlType::F32 || p.second->type != GgmlType::F32)
      fail("{}: imatrix entry '{}' is not F32", path, name);
    if (p.second->numel() != 1)
      fail("{}: imatrix entry '{}' has {} counts (mixture-of-experts entries are not supported)", path, name,
           p.second->numel());
    ImatrixEntry e;
    e.sum2.resize(size_t(p.first->numel()));
    std::memcpy(e.sum2.data(), p.first->data, e.sum2.size() * sizeof(float));
    float cnt;
    std::memcpy(&cnt, p.second->data, sizeof(float));
    e.count = float(std::lround(cnt));  // llama.cpp rounds the stored count to an integer
    im.entries[name] = std::move(e);
  }
  return im;
}

}  // namespace ctrust
