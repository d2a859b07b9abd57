#include "trust/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"

namespace ctrust {

using json = nlohmann::json;

namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();

void leaves(const json& j, const std::string& path, std::vector<std::pair<std::string, double>>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string key = it.key(), esc;
      for (char ch : key) esc += ch == '~' ? std::string("~0") : ch == '/' ? std::string("~1") : std::string(1, ch);
      leaves(*it, path + "/" + esc, out);
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) leaves(j[i], path + "/" + std::to_string(i), out);
  } else if (j.is_number()) {
    out.push_back({path, j.get<double>()});
  }
}

double leaf_at(const json& j, const std::string& ptr) {
  const json::json_pointer p(ptr);
  if (!j.contains(p)) return kNaN;
  const json& v = j.at(p);
  return v.is_number() ? v.get<double>() : kNaN;
}

double nan_if(double x) { return std::isfinite(x) ? x : kNaN; }

// The items (clusters) of a run: [begin, end) record ranges, one per item. An item's samples are consecutive
// (run_task, stored runs), so a cluster ends where the item index changes.
std::vector<std::pair<size_t, size_t>> clusters_of(const TaskRun& tr) {
  if (tr.item.size() != tr.recs.size())
    fail("trust statistics: setting '{}' has {} records but {} item indices", tr.spec ? tr.spec->name : "?",
         tr.recs.size(), tr.item.size());
  std::vector<std::pair<size_t, size_t>> c;
  for (size_t j = 0; j < tr.recs.size(); ++j) {
    if (j == 0 || tr.item[j] != tr.item[j - 1]) c.push_back({j, j});
    c.back().second = j + 1;
  }
  return c;
}

// Records as the bootstrap copies them: the prompt is dropped (no score reads it; it is the largest field).
std::vector<TaskRun> light(const std::vector<TaskRun>& runs) {
  std::vector<TaskRun> out = runs;
  for (auto& tr : out)
    for (auto& r : tr.recs) std::string().swap(r.prompt);
  return out;
}

// The runs made of the picked clusters (picks[s][i] = cluster index in setting s).
void resample(const std::vector<TaskRun>& runs, const std::vector<std::vector<std::pair<size_t, size_t>>>& cl,
              const std::vector<std::vector<size_t>>& picks, std::vector<TaskRun>& out) {
  out.resize(runs.size());
  for (size_t s = 0; s < runs.size(); ++s) {
    TaskRun& o = out[s];
    o.spec = runs[s].spec;
    o.recs.clear();
    o.item.clear();
    for (size_t c : picks[s]) {
      auto [b, e] = cl[s][c];
      o.recs.insert(o.recs.end(), runs[s].recs.begin() + long(b), runs[s].recs.begin() + long(e));
      o.item.insert(o.item.end(), runs[s].item.begin() + long(b), runs[s].item.begin() + long(e));
    }
  }
}
}  // namespace

std::vector<std::pair<std::string, double>> numeric_leaves(const json& j) {
  std::vector<std::pair<std::string, double>> out;
  leaves(j, "", out);
  return out;
}

void add_confidence_intervals(const ScoreFn& score, const std::vector<TaskRun>& runs, PerspectiveResult& pr,
                              const BootstrapOptions& opt) {
  pr.bootstrap = 0;
  pr.metrics_ci = json::object();
  if (opt.resamples <= 0) return;
  const std::vector<TaskRun> lr = light(runs);
  std::vector<std::vector<std::pair<size_t, size_t>>> cl;
  std::vector<size_t> strata;
  for (const auto& tr : lr) {
    cl.push_back(clusters_of(tr));
    strata.push_back(cl.back().size());
  }
  const auto lv = numeric_leaves(pr.metrics);
  std::vector<TaskRun> rs;
  auto reps = stratified_bootstrap(strata, opt, [&](const std::vector<std::vector<size_t>>& picks) {
    resample(lr, cl, picks, rs);
    PerspectiveResult r = score(rs);
    std::vector<double> v = {nan_if(r.score), nan_if(r.refusal_rate)};
    for (const auto& [ptr, x] : lv) v.push_back(leaf_at(r.metrics, ptr));
    return v;
  });
  auto iv = percentile_intervals(reps, opt.level);
  pr.bootstrap = opt.resamples;
  pr.ci_low = iv[0].low;
  pr.ci_high = iv[0].high;
  pr.se = iv[0].se;
  pr.refusal_ci_low = iv[1].low;
  pr.refusal_ci_high = iv[1].high;
  for (size_t i = 0; i < lv.size(); ++i) {
    const Interval& x = iv[i + 2];
    pr.metrics_ci[json::json_pointer(lv[i].first)] = {{"ci_low", x.low}, {"ci_high", x.high}, {"se", x.se}};
  }
}

AlignedRuns align_shared(const std::vector<TaskRun>& a, const std::vector<TaskRun>& b) {
  if (a.size() != b.size()) fail("paired comparison: {} settings vs {} settings", a.size(), b.size());
  AlignedRuns out;
  for (size_t s = 0; s < a.size(); ++s) {
    const std::string na = a[s].spec ? a[s].spec->name : "", nb = b[s].spec ? b[s].spec->name : "";
    if (na != nb) fail("paired comparison: setting {} is '{}' in one run and '{}' in the other", s, na, nb);
    std::map<size_t, std::pair<size_t, size_t>> ca, cb;
    for (auto c : clusters_of(a[s])) ca[a[s].item[c.first]] = c;
    for (auto c : clusters_of(b[s])) cb[b[s].item[c.first]] = c;
    TaskRun ta, tb;
    ta.spec = a[s].spec;
    tb.spec = b[s].spec;
    for (const auto& [item, c] : ca) {
      auto it = cb.find(item);
      if (it == cb.end()) continue;
      for (size_t j = c.first; j < c.second; ++j) ta.recs.push_back(a[s].recs[j]), ta.item.push_back(item);
      for (size_t j = it->second.first; j < it->second.second; ++j)
        tb.recs.push_back(b[s].recs[j]), tb.item.push_back(item);
      ++out.items;
    }
    out.a.push_back(std::move(ta));
    out.b.push_back(std::move(tb));
  }
  return out;
}

PairedDelta paired_bootstrap(const ScoreFn& score_a, const std::vector<TaskRun>& a, const ScoreFn& score_b,
                             const std::vector<TaskRun>& b, const BootstrapOptions& opt) {
  if (a.size() != b.size()) fail("paired bootstrap: {} settings vs {} settings", a.size(), b.size());
  PairedDelta d;
  std::vector<std::vector<std::pair<size_t, size_t>>> cla, clb;
  std::vector<size_t> strata;
  for (size_t s = 0; s < a.size(); ++s) {
    cla.push_back(clusters_of(a[s]));
    clb.push_back(clusters_of(b[s]));
    if (cla[s].size() != clb[s].size())
      fail("paired bootstrap: setting {} has {} items in one run and {} in the other (align_shared first)", s,
           cla[s].size(), clb[s].size());
    for (size_t c = 0; c < cla[s].size(); ++c)
      if (a[s].item[cla[s][c].first] != b[s].item[clb[s][c].first])
        fail("paired bootstrap: setting {}: the runs' items are not aligned (align_shared first)", s);
    strata.push_back(cla[s].size());
    d.items += int(cla[s].size());
    // Flips of the classification records, sample by sample.
    for (size_t c = 0; c < cla[s].size(); ++c) {
      const size_t item = a[s].item[cla[s][c].first];
      if (!a[s].spec || item >= a[s].spec->items.size() || a[s].spec->items[item].label.empty()) continue;
      const size_t k = std::min(cla[s][c].second - cla[s][c].first, clb[s][c].second - clb[s][c].first);
      for (size_t j = 0; j < k; ++j) {
        const TrustRecord& ra = a[s].recs[cla[s][c].first + j];
        const TrustRecord& rb = b[s].recs[clb[s][c].first + j];
        ++d.n;
        d.c2w += ra.correct && !rb.correct;
        d.w2c += !ra.correct && rb.correct;
        d.changed += ra.parsed != rb.parsed;
      }
    }
  }
  d.mcnemar_p = mcnemar_exact_p(d.c2w, d.w2c);
  const PerspectiveResult pa = score_a(a), pb = score_b(b);
  d.score_a = pa.score;
  d.score_b = pb.score;
  d.delta = pb.score - pa.score;
  // Leaves present in both results.
  std::vector<std::pair<std::string, double>> lv;
  for (const auto& [ptr, x] : numeric_leaves(pa.metrics))
    if (!std::isnan(leaf_at(pb.metrics, ptr))) lv.push_back({ptr, x});
  if (opt.resamples > 0) {
    const std::vector<TaskRun> la = light(a), lb = light(b);
    std::vector<TaskRun> ra, rb;
    auto reps = stratified_bootstrap(strata, opt, [&](const std::vector<std::vector<size_t>>& picks) {
      resample(la, cla, picks, ra);
      resample(lb, clb, picks, rb);
      PerspectiveResult x = score_a(ra), y = score_b(rb);
      std::vector<double> v = {nan_if(y.score - x.score)};
      for (const auto& [ptr, _] : lv) v.push_back(leaf_at(y.metrics, ptr) - leaf_at(x.metrics, ptr));
      return v;
    });
    auto iv = percentile_intervals(reps, opt.level);
    d.ci = iv[0];
    d.mdd = kMddFactor * d.ci.se;
    for (size_t i = 0; i < lv.size(); ++i) {
      const double va = lv[i].second, vb = leaf_at(pb.metrics, lv[i].first);
      d.metrics[json::json_pointer(lv[i].first)] = {{"a", va},           {"b", vb},
                                                    {"delta", vb - va},  {"ci_low", iv[i + 1].low},
                                                    {"ci_high", iv[i + 1].high}, {"se", iv[i + 1].se}};
    }
  } else {
    d.ci = {kNaN, kNaN, kNaN};
    d.mdd = kNaN;
  }
  return d;
}

}  // namespace ctrust
