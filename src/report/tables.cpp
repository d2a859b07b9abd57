#include "report/tables.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>

#include "base/error.h"
#include "store/store.h"

namespace ctrust {

using nlohmann::json;

std::string recipe_label(const std::string& text) {
  if (text.empty()) return "-";
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("method") || !j["method"].is_string())
    return text.size() > 22 ? text.substr(0, 21) + "…" : text;
  std::string s = j["method"].get<std::string>();
  auto num = [&](const char* k, double d) { return j.contains(k) && j[k].is_number() ? j[k].get<double>() : d; };
  // Pruning: the sparsity first; a pruning recipe with bits also quantizes the kept weights ("sparsegpt 2:4 4-bit").
  if (num("prune_m", 0) > 0) {
    s += fmt::format(" {}:{}", int(num("prune_n", 0)), int(num("prune_m", 0)));
  } else if (j.contains("sparsity")) {  // written for pruning recipes only
    s += fmt::format(" {:.0f}%", 100 * num("sparsity", 0.0));
  }
  if (j.contains("bits")) {
    s += fmt::format(" {}-bit", int(num("bits", 0)));
    if (num("group", 0) > 0) s += fmt::format(" g{}", int(num("group", 0)));
  }
  if (j.contains("rules") && j["rules"].is_array() && !j["rules"].empty())
    s += fmt::format(" +{} rule{}", j["rules"].size(), j["rules"].size() == 1 ? "" : "s");
  return s;
}

void recipe_bits(const std::string& text, std::string& method, double& bits) {
  method.clear();
  bits = -1;
  if (text.empty()) return;
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("method") || !j["method"].is_string()) return;
  method = j["method"].get<std::string>();
  // SmoothQuant (W8A8) and LLM.int8() store 8-bit weights whatever the recipe's unused "bits" field says.
  if (method == "smoothquant" || method == "llm_int8") bits = 8;
  else if ((method == "rtn" || method == "gptq" || method == "awq") && j.contains("bits") && j["bits"].is_number())
    bits = j["bits"].get<double>();
}

Estimate wilson_interval(int64_t k, int64_t n) {
  Estimate e;
  if (n <= 0) return e;
  constexpr double z = 1.959963984540054;
  const double dn = double(n), p = double(k) / dn, z2 = z * z;
  const double denom = 1 + z2 / dn;
  const double center = (p + z2 / (2 * dn)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / dn + z2 / (4 * dn * dn)) / denom;
  e.value = p;
  e.low = std::max(0.0, center - half);
  e.high = std::min(1.0, center + half);
  return e;
}

KlHistogram kl_histogram(const std::vector<double>& kl) {
  KlHistogram h;
  h.edges.push_back(0);
  for (int i = 0; i <= 10; ++i) h.edges.push_back(std::pow(10.0, -5.0 + 0.5 * i));  // 1e-5 ... 1
  h.edges.push_back(std::numeric_limits<double>::infinity());
  h.counts.assign(h.edges.size() - 1, 0);
  h.n = int64_t(kl.size());
  if (kl.empty()) return h;
  std::vector<double> s = kl;
  std::sort(s.begin(), s.end());
  double sum = 0;
  for (double v : s) {
    sum += v;
    // The bin whose [low, high) holds v: the last edge <= v.
    size_t b = size_t(std::upper_bound(h.edges.begin(), h.edges.end(), v) - h.edges.begin());
    b = b == 0 ? 0 : b - 1;
    h.counts[std::min(b, h.counts.size() - 1)]++;
  }
  h.mean = sum / double(s.size());
  h.median = percentile_sorted(s, 0.5);
  h.p95 = percentile_sorted(s, 0.95);
  h.max = s.back();
  return h;
}

namespace {

Estimate est(double v, const std::array<double, 2>& ci) { return {v, ci[0], ci[1]}; }

json est_json(const Estimate& e) { return {{"value", e.value}, {"ci_low", e.low}, {"ci_high", e.high}}; }

// The runs a selector names (see ReportRun).
ReportRun resolve(Store& s, const std::vector<RunInfo>& all, const std::string& sel) {
  ReportRun r;
  r.selector = sel;
  std::optional<RunInfo> by_id;
  if (auto id = run_id_of(sel)) by_id = s.get_run(*id);
  if (by_id) {
    if (by_id->task == "trust") r.trust = by_id;
    else r.eval.push_back(*by_id);
    r.name = by_id->name;
  } else {
    std::map<std::string, RunInfo> newest;  // per task; ids ascend, the last one wins
    for (const RunInfo& ri : all) {
      if (ri.name != sel) continue;
      if (ri.task == "trust") r.trust = ri;
      else newest[ri.task] = ri;
    }
    for (auto& [t, ri] : newest) r.eval.push_back(ri);
    r.name = sel;
    if (r.eval.empty() && !r.trust) {
      std::set<std::string> names;
      for (const RunInfo& ri : all) names.insert(ri.name);
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      fail("report: {}: no run named '{}' (runs: {})", s.path(), sel, known.empty() ? "none" : known);
    }
  }
  // No trust run of that name: the newest trust run of the same model (fingerprint), as trust-report pairs an MMLU
  // run with a trust run (`ctrust eval --name base` and `ctrust trust --name base-trust` of one file).
  if (!r.trust && !r.eval.empty())
    for (const RunInfo& ri : all)
      if (ri.task == "trust" && ri.model_fp == r.eval.front().model_fp) r.trust = ri;
  const RunInfo& first = r.eval.empty() ? *r.trust : r.eval.front();
  r.model_path = first.model_path;
  r.compute = run_compute_mode(first.settings);
  const json& rs = first.settings.contains("recipe") ? first.settings["recipe"] : json();
  r.recipe = rs.is_string() ? rs.get<std::string>() : std::string();
  r.recipe_label = recipe_label(r.recipe);
  recipe_bits(r.recipe, r.method, r.bits);
  return r;
}

}  // namespace

Report build_report(const std::vector<std::string>& selectors, const ReportOptions& opt) {
  if (selectors.empty()) fail("report: give at least one run (the first is the base)");
  Report rep;
  rep.db = opt.db;
  rep.bootstrap = opt.bootstrap.resamples;
  {
    Store s(opt.db, StoreMode::ReadOnly);
    const std::vector<RunInfo> all = s.list_runs();
    for (const std::string& sel : selectors) rep.runs.push_back(resolve(s, all, sel));
  }
  const ReportRun& base = rep.runs[0];

  // ---- evaluation: every variant against the base, per task of the base's runs
  std::vector<Comparison> cmps(rep.runs.size());
  std::vector<bool> compared(rep.runs.size(), false);
  for (size_t i = 1; i < rep.runs.size(); ++i) {
    if (base.eval.empty() || rep.runs[i].eval.empty()) continue;
    cmps[i] = compare_runs(opt.db, base.selector, rep.runs[i].selector, opt.bootstrap);
    compared[i] = true;
    for (const std::string& n : cmps[i].notes) rep.notes.push_back(fmt::format("{}: {}", rep.runs[i].name, n));
  }
  if (rep.runs.size() > 1 && base.eval.empty())
    rep.notes.push_back(fmt::format("the base '{}' has no evaluation run: no accuracy/flips/KL table", base.name));
  for (const RunInfo& rb : base.eval) {
    for (size_t i = 1; i < rep.runs.size(); ++i) {
      if (!compared[i]) continue;
      auto it = cmps[i].tasks.find(rb.task);
      if (it == cmps[i].tasks.end()) continue;
      const TaskComparison& t = it->second;
      const PairMetrics& m = t.m;
      EvalRow row;
      row.task = rb.task;
      row.run = i;
      row.n = m.n;
      row.only_base = t.only_a;
      row.only_variant = t.only_b;
      row.acc_base = wilson_interval(std::llround(m.acc_a * double(m.n)), m.n);
      row.acc = wilson_interval(std::llround(m.acc_b * double(m.n)), m.n);
      row.delta_acc = est(m.delta_acc, m.delta_acc_ci);
      row.c2w = m.c2w;
      row.w2c = m.w2c;
      row.flips = est(m.flips, m.flips_ci);
      row.has_kl = t.ppl_a < 0;
      row.kl = est(m.kl_ab, m.kl_ab_ci);
      row.mcnemar_p = m.mcnemar_p;
      row.ppl_base = t.ppl_a;
      row.ppl = t.ppl_b;
      rep.eval.push_back(row);
    }
  }
  for (size_t i = 1; i < rep.runs.size(); ++i)
    if (!rep.runs[i].eval.empty() && !base.eval.empty() &&
        std::none_of(rep.eval.begin(), rep.eval.end(), [&](const EvalRow& r) { return r.run == i; }))
      rep.notes.push_back(fmt::format("{}: no evaluation task in common with the base '{}'", rep.runs[i].name,
                                      base.name));

  // ---- KL distributions: per variant, the per-item KL of its choice tasks (run-level tasks hold every item)
  for (size_t i = 1; i < rep.runs.size(); ++i) {
    if (!compared[i]) continue;
    std::vector<double> kl;
    for (const EvalRow& r : rep.eval)
      if (r.run == i && r.has_kl) {
        const auto& v = cmps[i].tasks.at(r.task).m.kl_item;
        kl.insert(kl.end(), v.begin(), v.end());
      }
    if (kl.empty()) continue;
    KlHistogram h = kl_histogram(kl);
    h.run = i;
    rep.kl_hist.push_back(std::move(h));
  }

  // ---- flips and KL against bits: the variants of one base (same tokenizer) that have a bit width
  if (rep.runs.size() > 1 && !base.eval.empty()) {
    bool one_base = true;
    for (size_t i = 1; i < rep.runs.size(); ++i) {
      if (rep.runs[i].eval.empty()) continue;
      if (rep.runs[i].eval.front().tokenizer_fp != base.eval.front().tokenizer_fp) {
        one_base = false;
        rep.notes.push_back(fmt::format("bits plot: '{}' has another tokenizer than the base: the runs are not "
                                        "variants of one base, no plot", rep.runs[i].name));
      }
    }
    if (one_base) {
      for (size_t i = 1; i < rep.runs.size(); ++i) {
        if (!compared[i]) continue;
        if (rep.runs[i].bits < 0) {
          rep.notes.push_back(fmt::format("bits plot: '{}' ({}) has no weight bit width: not plotted",
                                          rep.runs[i].name, rep.runs[i].recipe_label));
          continue;
        }
        for (const EvalRow& r : rep.eval)
          if (r.run == i)
            rep.bits_points.push_back({i, r.task, rep.runs[i].method, rep.runs[i].bits, r.flips, r.kl, r.has_kl});
      }
      rep.bits_plot = !rep.bits_points.empty();
    }
  }

  // ---- trust: the eight perspectives of the runs that have a trust run, when the base has one
  std::vector<std::string> trust_sel;
  for (size_t i = 0; i < rep.runs.size(); ++i)
    if (rep.runs[i].trust) {
      trust_sel.push_back(std::to_string(rep.runs[i].trust->id));
      rep.trust_rows.push_back(i);
    }
  if (!trust_sel.empty() && !base.trust) {
    rep.notes.push_back(fmt::format("trust: the base '{}' has no trust run: no trust comparison", base.name));
    rep.trust_rows.clear();
  } else if (!trust_sel.empty()) {
    rep.trust = trust_report(opt.db, trust_sel, opt.trust);
    for (const std::string& n : rep.trust->notes) rep.notes.push_back("trust: " + n);
  }
  return rep;
}

json Report::to_json() const {
  json jr = json::array();
  for (const ReportRun& r : runs) {
    json ev = json::array();
    for (const RunInfo& e : r.eval) ev.push_back({{"id", e.id}, {"task", e.task}, {"items", e.n_items}});
    json recipe = r.recipe.empty() ? json(nullptr) : json::parse(r.recipe, nullptr, false);
    if (recipe.is_discarded()) recipe = r.recipe;
    jr.push_back({{"selector", r.selector}, {"name", r.name}, {"model", r.model_path}, {"compute", r.compute},
                  {"eval_runs", ev}, {"trust_run", r.trust ? json(r.trust->id) : json(nullptr)},
                  {"recipe", recipe}, {"recipe_label", r.recipe_label},
                  {"method", r.method.empty() ? json(nullptr) : json(r.method)},
                  {"bits", r.bits >= 0 ? json(r.bits) : json(nullptr)}});
  }
  json je = json::array();
  for (const EvalRow& e : eval) {
    json j = {{"task", e.task},       {"run", e.run},
              {"variant", runs[e.run].name}, {"n", e.n},
              {"only_base", e.only_base}, {"only_variant", e.only_variant},
              {"acc_base", est_json(e.acc_base)}, {"acc", est_json(e.acc)},
              {"delta_acc", est_json(e.delta_acc)}, {"c2w", e.c2w},
              {"w2c", e.w2c},         {"flips", est_json(e.flips)},
              {"kl", e.has_kl ? est_json(e.kl) : json(nullptr)}, {"mcnemar_p", e.mcnemar_p}};
    j["ppl_base"] = e.ppl_base >= 0 ? json(e.ppl_base) : json(nullptr);
    j["ppl"] = e.ppl >= 0 ? json(e.ppl) : json(nullptr);
    je.push_back(j);
  }
  json jp = json::array();
  for (const BitsPoint& p : bits_points)
    jp.push_back({{"run", p.run}, {"variant", runs[p.run].name}, {"task", p.task}, {"method", p.method},
                  {"bits", p.bits}, {"flips", est_json(p.flips)}, {"kl", p.has_kl ? est_json(p.kl) : json(nullptr)}});
  json jh = json::array();
  for (const KlHistogram& h : kl_hist) {
    json edges = json::array();
    for (double e : h.edges) edges.push_back(std::isfinite(e) ? json(e) : json(nullptr));
    jh.push_back({{"run", h.run}, {"variant", runs[h.run].name}, {"edges", edges}, {"counts", h.counts},
                  {"n", h.n}, {"mean", h.mean}, {"median", h.median}, {"p95", h.p95}, {"max", h.max}});
  }
  json jt = nullptr;
  if (trust) {
    jt = trust->to_json();
    jt["report_runs"] = trust_rows;
  }
  return {{"db", db},         {"bootstrap", bootstrap}, {"runs", jr},
          {"eval", je},       {"bits_plot", {{"shown", bits_plot}, {"points", jp}}},
          {"kl_hist", jh},    {"trust", jt},            {"notes", notes}};
}

}  // namespace ctrust
