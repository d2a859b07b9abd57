// KL-guided mixed precision: per-unit sensitivity on calibration text, the exact (bytes, cost) Pareto frontier,
// and the recipe rules of a chosen mix. See mixed.h.
#include "compress/mixed.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include <omp.h>

#include "base/error.h"
#include "compress/driver.h"
#include "compress/imatrix.h"
#include "compress/kquant.h"
#include "io/gguf.h"
#include "model/block.h"
#include "ops/linear.h"
#include "ops/ops.h"

namespace ctrust {

std::string mixed_tensor_type(const std::string& level, int64_t cols) {
  const GgmlType g = ggml_type_from_name(level);
  if (!is_kquant(g) || cols % kQK_K == 0) return level;
  switch (g) {
    case GgmlType::Q2_K:
    case GgmlType::Q3_K: return "q4_0";
    case GgmlType::Q4_K: return "q5_0";
    case GgmlType::Q5_K: return "q5_1";
    default: return "q8_0";  // Q6_K
  }
}

namespace {

std::string linear_name(int l, const char* lin) { return fmt::format("blk.{}.{}.weight", l, lin); }

bool known_unit(const std::string& kind) { return kind == "block" || kind == "tensor"; }

std::string exact(const std::string& name) {
  std::string re = "^";
  for (char ch : name) {
    if (ch == '.') re += '\\';
    re += ch;
  }
  return re + "$";
}

// Log-probabilities of rows of final hidden states x [n][dim] (x is overwritten by the normed rows).
void head_logprobs(const Model& m, float* x, int n, float* out) {
  const ModelConfig& c = m.cfg;
  rmsnorm(x, m.output_norm, x, n, c.dim, c.norm_eps);
  linear(m.output, x, out, n);
  finish_logits(c, out, n);
  for (int i = 0; i < n; ++i) log_softmax(out + size_t(i) * c.n_vocab, c.n_vocab);
}

int argmax(const float* v, int n) { return int(std::max_element(v, v + n) - v); }

// KL(a || b) of one token's log-probability rows.
double token_kl(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(double(a[i])) * (double(a[i]) - double(b[i]));
  return s;
}

struct KlSums {
  std::vector<double> kl;  // per token, in sequence order
  int64_t flips = 0;
  PairKl finish() const {
    PairKl p;
    p.tokens = int64_t(kl.size());
    if (kl.empty()) return p;
    double s = 0, s2 = 0;
    for (double v : kl) s += v;
    p.kl = s / double(kl.size());
    for (double v : kl) s2 += (v - p.kl) * (v - p.kl);
    p.kl_se = kl.size() > 1 ? std::sqrt(s2 / double(kl.size() - 1) / double(kl.size())) : 0.0;
    p.flips = double(flips) / double(kl.size());
    return p;
  }
};

// Runs layers [l0, n_layers) of m on the hidden states h (N sequences of L rows, copied) and compares the
// head's log-probabilities with base_lp (N*L rows of n_vocab). Sequences run in parallel (one per thread).
KlSums run_from(const Model& m, int l0, const std::vector<float>& h, int N, int L, const std::vector<float>& base_lp) {
  const int dim = m.cfg.dim, V = m.cfg.n_vocab;
  std::vector<std::vector<double>> kl(N, std::vector<double>(L));
  std::vector<int64_t> flips(N, 0);
  const int T = std::max(1, std::min(N, omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
  for (int s = 0; s < N; ++s) {
    std::vector<float> x(h.begin() + size_t(s) * L * dim, h.begin() + size_t(s + 1) * L * dim);
    for (int l = l0; l < m.cfg.n_layers; ++l) block_forward(m, l, x.data(), L, nullptr);
    std::vector<float> lp(size_t(L) * V);
    head_logprobs(m, x.data(), L, lp.data());
    for (int i = 0; i < L; ++i) {
      const float* a = &base_lp[(size_t(s) * L + i) * V];
      const float* b = &lp[size_t(i) * V];
      kl[s][i] = token_kl(a, b, V);
      flips[s] += argmax(a, V) != argmax(b, V);
    }
  }
  KlSums out;
  for (int s = 0; s < N; ++s) {
    out.kl.insert(out.kl.end(), kl[s].begin(), kl[s].end());
    out.flips += flips[s];
  }
  return out;
}

// Hidden states at the input of every layer (index n_layers: the final ones) for the calibration sequences.
std::vector<std::vector<float>> hidden_states(const Model& m, const Calibration& calib) {
  const int N = int(calib.seqs.size()), L = int(calib.seqs[0].size()), dim = m.cfg.dim;
  std::vector<std::vector<float>> hid(m.cfg.n_layers + 1);
  hid[0].resize(size_t(N) * L * dim);
  for (int s = 0; s < N; ++s) embed_tokens(m, calib.seqs[s].data(), L, &hid[0][size_t(s) * L * dim]);
  for (int l = 0; l < m.cfg.n_layers; ++l) {
    hid[l + 1] = hid[l];
#pragma omp parallel for schedule(dynamic, 1) if (N > 1)
    for (int s = 0; s < N; ++s) block_forward(m, l, &hid[l + 1][size_t(s) * L * dim], L, nullptr);
  }
  return hid;
}

std::vector<float> all_logprobs(const Model& m, std::vector<float> x, int rows) {
  std::vector<float> lp(size_t(rows) * m.cfg.n_vocab);
  const int chunk = 64;
#pragma omp parallel for schedule(dynamic, 1)
  for (int r0 = 0; r0 < rows; r0 += chunk)
    head_logprobs(m, &x[size_t(r0) * m.cfg.dim], std::min(chunk, rows - r0), &lp[size_t(r0) * m.cfg.n_vocab]);
  return lp;
}

void check_calibration(const Model& m, const Calibration& calib) {
  if (calib.seqs.empty() || calib.seqs[0].empty()) fail("{}: no calibration sequences", calib.file);
  for (const auto& s : calib.seqs) {
    if (s.size() != calib.seqs[0].size()) fail("{}: calibration sequences of different lengths", calib.file);
    for (int32_t id : s)
      if (id < 0 || id >= m.cfg.n_vocab) fail("{}: calibration token id {} is out of range", calib.file, id);
  }
}

}  // namespace

std::vector<MixUnit> mix_units(const Model& m, const std::string& kind) {
  if (!known_unit(kind)) fail("--mix-unit '{}': expected block or tensor", kind);
  std::vector<MixUnit> out;
  for (int l = 0; l < m.cfg.n_layers; ++l) {
    if (kind == "block") out.push_back(MixUnit{fmt::format("blk.{}", l), l, {}});
    for (const BlockLinear& b : kBlockLinears) {
      if (kind == "tensor") out.push_back(MixUnit{fmt::format("blk.{}.{}", l, b.name), l, {}});
      out.back().tensors.push_back(linear_name(l, b.name));
    }
  }
  return out;
}

nlohmann::json SensitivityTable::to_json() const {
  return {{"model", model},           {"unit", unit},            {"units", units},          {"levels", levels},
          {"kl", kl},                 {"kl_se", kl_se},          {"flips", flips},
          {"bytes", bytes},           {"tokens", tokens},        {"calib_file", calib_file},
          {"calib_hash", calib_hash}, {"n_samples", n_samples},  {"seq_len", seq_len},
          {"seed", seed},             {"imatrix_hash", imatrix_hash}, {"legacy_fit", legacy_ggml_fit ? "ggml" : "gptq"}};
}

SensitivityTable sensitivity_from_json(const nlohmann::json& j, const std::string& what) {
  SensitivityTable t;
  try {
    t.model = j.at("model").get<std::string>();
    t.unit = j.value("unit", std::string("block"));  // tables written before per-tensor units have none
    t.units = j.at("units").get<std::vector<std::string>>();
    t.levels = j.at("levels").get<std::vector<std::string>>();
    t.kl = j.at("kl").get<std::vector<std::vector<double>>>();
    t.kl_se = j.at("kl_se").get<std::vector<std::vector<double>>>();
    t.flips = j.at("flips").get<std::vector<std::vector<double>>>();
    t.bytes = j.at("bytes").get<std::vector<std::vector<uint64_t>>>();
    t.tokens = j.at("tokens").get<int64_t>();
    t.calib_file = j.at("calib_file").get<std::string>();
    t.calib_hash = j.at("calib_hash").get<std::string>();
    t.n_samples = j.at("n_samples").get<int>();
    t.seq_len = j.at("seq_len").get<int>();
    t.seed = j.at("seed").get<uint64_t>();
    t.imatrix_hash = j.at("imatrix_hash").get<std::string>();
    t.legacy_ggml_fit = j.at("legacy_fit").get<std::string>() == "ggml";
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not a sensitivity table ({})", what, e.what());
  }
  const size_t U = t.units.size(), K = t.levels.size();
  auto shaped = [&](const auto& v) {
    if (v.size() != U) return false;
    for (const auto& row : v)
      if (row.size() != K) return false;
    return true;
  };
  if (U == 0 || K == 0 || !shaped(t.kl) || !shaped(t.kl_se) || !shaped(t.flips) || !shaped(t.bytes))
    fail("{}: sensitivity table: every row needs one value per level ({} units x {} levels)", what, U, K);
  for (const std::string& lv : t.levels) check_output_type(lv, fmt::format("{}: level", what).c_str());
  if (!known_unit(t.unit)) fail("{}: sensitivity table: unit '{}' (expected block or tensor)", what, t.unit);
  return t;
}

SensitivityTable measure_sensitivity(Model& m, const Calibration& calib, const std::vector<std::string>& levels,
                                     const std::string& unit, const Recipe& recipe, const Imatrix* imatrix,
                                     const std::function<void(int, int)>& progress) {
  const ModelConfig& c = m.cfg;
  if (compute_mode(m) != ComputeMode::F32)
    fail("{}: mixed precision needs the model loaded in the f32 compute mode", m.file.path);
  if (levels.empty()) fail("mixed precision: no candidate levels");
  for (const std::string& lv : levels) check_output_type(lv, "mixed precision level");
  if (!recipe.imatrix_file.empty() && !imatrix) fail("mixed precision: the recipe names an imatrix but none was given");
  check_calibration(m, calib);
  const int N = int(calib.seqs.size()), L = int(calib.seqs[0].size()), dim = c.dim;

  SensitivityTable t;
  t.model = m.file.path;
  t.levels = levels;
  t.calib_file = calib.file;
  t.calib_hash = calib.hash;
  t.n_samples = N;
  t.seq_len = L;
  t.imatrix_hash = recipe.imatrix_hash;
  t.legacy_ggml_fit = recipe.legacy_ggml_fit;
  t.tokens = int64_t(N) * L;

  const std::vector<std::vector<float>> hid = hidden_states(m, calib);
  const std::vector<float> base_lp = all_logprobs(m, hid[c.n_layers], N * L);

  const std::vector<MixUnit> units = mix_units(m, unit);
  t.unit = unit;
  const int total = int(units.size() * levels.size());
  int done = 0;
  for (const MixUnit& un : units) {
    const int l = un.layer;
    t.units.push_back(un.name);
    t.kl.emplace_back();
    t.kl_se.emplace_back();
    t.flips.emplace_back();
    t.bytes.emplace_back();
    // The unit's tensors as loaded, restored after each level.
    std::vector<std::pair<Tensor*, Tensor>> saved;
    for (const std::string& name : un.tensors) {
      auto it = m.file.tensors.find(name);
      if (it == m.file.tensors.end()) fail("{}: no tensor {}", m.file.path, name);
      saved.emplace_back(&it->second, it->second);
    }
    for (const std::string& lv : levels) {
      Recipe r = recipe;
      r.method = Method::RTN;
      r.type.clear();
      r.skip.clear();
      r.tensor_types.clear();
      std::string only;
      for (auto& [tp, orig] : saved) {
        r.tensor_types.emplace_back(exact(tp->name), mixed_tensor_type(lv, tp->cols()));
        only += (only.empty() ? "" : "|") + exact(tp->name);
      }
      r.only = only;
      compress_model(m, r, nullptr, {}, imatrix);
      uint64_t bytes = 0;
      for (auto& [tp, orig] : saved) bytes += tp->raw ? tp->raw_bytes : uint64_t(tp->numel()) * 4;
      const PairKl p = run_from(m, l, hid[l], N, L, base_lp).finish();
      t.kl.back().push_back(p.kl);
      t.kl_se.back().push_back(p.kl_se);
      t.flips.back().push_back(p.flips);
      t.bytes.back().push_back(bytes);
      for (auto& [tp, orig] : saved) {
        const bool own = !orig.owned.empty() && orig.data == orig.owned.data();
        *tp = orig;
        if (own) tp->data = tp->owned.data();
      }
      rebind_weights(m);
      if (progress) progress(++done, total);
    }
  }
  (void)dim;
  return t;
}

std::vector<MixChoice> mix_frontier(const std::vector<std::vector<uint64_t>>& bytes,
                                    const std::vector<std::vector<double>>& cost) {
  const size_t U = bytes.size();
  if (U == 0 || cost.size() != U) fail("mixed precision: empty or mismatched size/cost table");
  const size_t K = bytes[0].size();
  for (size_t u = 0; u < U; ++u) {
    if (K == 0 || bytes[u].size() != K || cost[u].size() != K)
      fail("mixed precision: unit {} has {} sizes and {} costs (expected {} each)", u, bytes[u].size(),
           cost[u].size(), K);
    for (double v : cost[u])
      if (!std::isfinite(v)) fail("mixed precision: unit {} has a non-finite cost", u);
  }
  struct State {
    uint64_t bytes;
    double cost;
    int prev, opt;
  };
  std::vector<std::vector<State>> stages;
  std::vector<State> cur{State{0, 0.0, -1, -1}};
  for (size_t u = 0; u < U; ++u) {
    std::vector<State> cand;
    cand.reserve(cur.size() * K);
    for (size_t i = 0; i < cur.size(); ++i)
      for (size_t k = 0; k < K; ++k)
        cand.push_back(State{cur[i].bytes + bytes[u][k], cur[i].cost + cost[u][k], int(i), int(k)});
    std::sort(cand.begin(), cand.end(), [](const State& a, const State& b) {
      return a.bytes != b.bytes ? a.bytes < b.bytes : a.cost < b.cost;
    });
    std::vector<State> next;
    for (const State& s : cand)
      if (next.empty() || s.cost < next.back().cost) {
        if (!next.empty() && next.back().bytes == s.bytes) continue;  // same size, not cheaper (sorted by cost)
        next.push_back(s);
      }
    stages.push_back(std::move(cur));
    cur = std::move(next);
  }
  std::vector<MixChoice> out;
  out.reserve(cur.size());
  for (const State& s : cur) {
    MixChoice mc;
    mc.bytes = s.bytes;
    mc.cost = s.cost;
    mc.pick.assign(U, 0);
    State st = s;
    for (size_t u = U; u-- > 0;) {
      mc.pick[u] = st.opt;
      if (u > 0) st = stages[u][st.prev];
    }
    out.push_back(std::move(mc));
  }
  return out;
}

MixChoice choose_mix(const std::vector<MixChoice>& frontier, uint64_t budget) {
  if (frontier.empty()) fail("mixed precision: empty frontier");
  const MixChoice* best = nullptr;
  for (const MixChoice& c : frontier)
    if (c.bytes <= budget) best = &c;  // by increasing bytes and decreasing cost: the last that fits
  if (!best)
    fail("mixed precision: the budget of {} bytes is below the smallest mix ({} bytes)", budget, frontier[0].bytes);
  return *best;
}

FixedSize mixed_fixed_size(const Model& m, const Recipe& r) {
  FixedSize f;
  for (const auto& [name, t] : m.file.tensors) {
    f.elements += t.numel();
    bool unit = false;
    for (int l = 0; l < m.cfg.n_layers && !unit; ++l)
      for (const BlockLinear& b : kBlockLinears) unit = unit || name == linear_name(l, b.name);
    if (unit) continue;
    const bool matrix = t.ne.size() >= 2;
    GgmlType type = GgmlType::F32;
    const std::string rule = matrix && tensor_selected(r, name) ? tensor_type(r, name) : std::string();
    if (!rule.empty() && rule != "none") {
      type = ggml_type_from_name(rule);
    } else if (matrix && t.raw) {
      type = t.src_type;
      if (t.cols() % ggml_type_info(uint32_t(type))->block_size != 0) type = GgmlType::F32;
    }
    f.bytes += ggml_nbytes(type, t.numel());
  }
  return f;
}

void apply_mix(Recipe& r, const Model& m, const SensitivityTable& t, const std::vector<int>& pick) {
  const std::vector<MixUnit> units = mix_units(m, t.unit);
  if (units.size() != t.units.size() || pick.size() != t.units.size())
    fail("mixed precision: the table has {} units, the model {} ({} units)", t.units.size(), units.size(), t.unit);
  std::vector<std::pair<std::string, std::string>> rules;
  for (size_t u = 0; u < units.size(); ++u) {
    if (units[u].name != t.units[u])
      fail("mixed precision: the table's unit {} is {}, the model's {}", u, t.units[u], units[u].name);
    if (pick[u] < 0 || pick[u] >= int(t.levels.size())) fail("mixed precision: bad level index for {}", units[u].name);
    for (const std::string& name : units[u].tensors)
      rules.emplace_back(exact(name), mixed_tensor_type(t.levels[pick[u]], m.file.get(name).cols()));
  }
  rules.insert(rules.end(), r.tensor_types.begin(), r.tensor_types.end());
  r.tensor_types = std::move(rules);
}

FixedSize gguf_tensor_size(const std::string& path) {
  const GgufFile f = read_gguf(path);
  FixedSize s;
  for (const GgufTensorInfo& t : f.tensors) {
    s.bytes += ggml_nbytes(t.type, t.numel());
    s.elements += t.numel();
  }
  return s;
}

PairKl calibration_kl(const Model& a, const Model& b, const Calibration& calib) {
  check_calibration(a, calib);
  if (a.cfg.n_vocab != b.cfg.n_vocab || a.cfg.dim != b.cfg.dim || a.cfg.n_layers != b.cfg.n_layers)
    fail("calibration KL: the models differ in shape");
  const int N = int(calib.seqs.size()), L = int(calib.seqs[0].size());
  const std::vector<std::vector<float>> ha = hidden_states(a, calib);
  const std::vector<float> base_lp = all_logprobs(a, ha[a.cfg.n_layers], N * L);
  std::vector<float> h0(size_t(N) * L * b.cfg.dim);
  for (int s = 0; s < N; ++s) embed_tokens(b, calib.seqs[s].data(), L, &h0[size_t(s) * L * b.cfg.dim]);
  return run_from(b, 0, h0, N, L, base_lp).finish();
}

}  // namespace ctrust

namespace ctrust {

MixPlan plan_mixed_precision(Model& m, Recipe& r, const Imatrix* imatrix, const MixOptions& o) {
  if (!(o.target_bpw > 0) || o.target_bpw > 32) fail("--target-bpw {}: expected a value in (0, 32]", o.target_bpw);
  if (o.objective != "kl" && o.objective != "flips") fail("--objective '{}': expected kl or flips", o.objective);
  const size_t n_units = mix_units(m, o.unit).size();  // (checks the kind)
  if (o.n_samples < 1 || o.seq_len < 2) fail("mixed precision: --sens-nsamples must be >= 1 and --sens-seqlen >= 2");
  if (r.method != Method::RTN && r.method != Method::GPTQ)
    fail("--target-bpw: the mix is written with rtn or gptq (got {})", method_name(r.method));
  if (!r.type.empty()) fail("--target-bpw chooses the block types; drop --type");
  for (const std::string& lv : o.levels) check_output_type(lv, "--mix-levels");
  MixPlan p;
  CalibOptions co;
  co.n = o.n_samples;
  co.len = o.seq_len;
  co.seed = o.seed;
  co.clean = o.calib_clean;
  p.calib = load_calibration(m.tok, o.calib_file.empty() ? default_calibration_file() : o.calib_file, co);
  bool have = false;
  if (!o.table_path.empty()) {
    std::ifstream in(o.table_path);
    if (in) {
      nlohmann::json j;
      try {
        in >> j;
      } catch (const nlohmann::json::exception& e) {
        fail("{}: not JSON ({})", o.table_path, e.what());
      }
      SensitivityTable& t = p.table;
      t = sensitivity_from_json(j, o.table_path);
      // The requested levels must all be in the table (a subset, e.g. one level for a uniform file, is taken from it).
      std::vector<size_t> col;
      for (const std::string& lv : o.levels) {
        const auto it = std::find(t.levels.begin(), t.levels.end(), lv);
        if (it != t.levels.end()) col.push_back(size_t(it - t.levels.begin()));
      }
      if (t.calib_hash != p.calib.hash || t.n_samples != o.n_samples || t.seq_len != o.seq_len || t.seed != o.seed ||
          col.size() != o.levels.size() || t.unit != o.unit || t.units.size() != n_units ||
          t.imatrix_hash != r.imatrix_hash || t.legacy_ggml_fit != r.legacy_ggml_fit)
        fail("{}: the sensitivity table was measured with other options (calibration, levels, unit, imatrix or "
             "legacy fit); delete it to measure again", o.table_path);
      auto project = [&](auto& rows) {
        for (auto& row : rows) {
          std::remove_reference_t<decltype(row)> sub;
          for (size_t c : col) sub.push_back(row[c]);
          row = std::move(sub);
        }
      };
      project(t.kl);
      project(t.kl_se);
      project(t.flips);
      project(t.bytes);
      t.levels = o.levels;
      have = p.table_reused = true;
    }
  }
  if (!have) {
    p.table = measure_sensitivity(m, p.calib, o.levels, o.unit, r, imatrix, o.progress);
    p.table.seed = o.seed;
    if (!o.table_path.empty()) {
      std::ofstream out(o.table_path);
      out << p.table.to_json().dump(1) << "\n";
      if (!out) fail("{}: cannot write the sensitivity table", o.table_path);
    }
  }
  p.fixed = mixed_fixed_size(m, r);
  p.budget = uint64_t(std::floor(o.target_bpw * double(p.fixed.elements) / 8.0));
  if (p.budget <= p.fixed.bytes)
    fail("--target-bpw {}: the tensors outside the blocks alone take {:.3f} bits per weight", o.target_bpw,
         8.0 * double(p.fixed.bytes) / double(p.fixed.elements));
  const auto& cost = o.objective == "kl" ? p.table.kl : p.table.flips;
  p.frontier = mix_frontier(p.table.bytes, cost);
  try {
    p.choice = choose_mix(p.frontier, p.budget - p.fixed.bytes);
  } catch (const Error&) {
    fail("--target-bpw {}: the smallest mix of these levels takes {:.4f} bits per weight", o.target_bpw,
         8.0 * double(p.fixed.bytes + p.frontier[0].bytes) / double(p.fixed.elements));
  }
  for (size_t u = 0; u < p.choice.pick.size(); ++u) {
    p.predicted_kl += p.table.kl[u][p.choice.pick[u]];
    p.predicted_flips += p.table.flips[u][p.choice.pick[u]];
  }
  apply_mix(r, m, p.table, p.choice.pick);
  return p;
}

}  // namespace ctrust
