#include "pipeline/trust_runs.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <filesystem>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

#include "base/error.h"
#include "pipeline/fingerprint.h"
#include "pipeline/worker.h"

namespace ctrust {

using json = nlohmann::json;

std::string shared_data_dir();  // eval/task.h (not included: its TrustTaskSpec is not trust's TrustTaskSpec)

namespace {
constexpr const char* kTrustTask = "trust";

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

double score_of(const json& result, const std::string& p, const char* key = "score") {
  if (!result.contains("perspectives") || !result["perspectives"].contains(p)) return -1;
  const json& x = result["perspectives"][p];
  return x.contains(key) && x[key].is_number() ? x[key].get<double>() : -1;
}
}  // namespace

std::string valid_utf8(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len > 1) {  // no overlong forms, surrogates or code points above U+10FFFF
      uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
      for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
      ok = (len == 2 && cp >= 0x80) || (len == 3 && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) ||
           (len == 4 && cp >= 0x10000 && cp <= 0x10FFFF);
    }
    if (ok) {
      o.append(s, i, len);
      i += len;
    } else {
      o += "\xEF\xBF\xBD";  // U+FFFD for one invalid byte
      ++i;
    }
  }
  return o;
}

StoredItem to_stored(const TrustRecord& r) {
  StoredItem s;
  s.task = r.perspective + "/" + r.task;
  s.item_id = r.item_id;
  s.correct = r.correct;
  // Generated text can end inside a multi-byte character (byte-level BPE): stored as valid UTF-8.
  s.extra = {{"perspective", r.perspective}, {"task", r.task}, {"prompt", valid_utf8(r.prompt)},
             {"output", valid_utf8(r.output)}, {"parsed", valid_utf8(r.parsed)}, {"refused", r.refused},
             {"toxicity", r.toxicity},       {"truncated", r.truncated}};
  return s;
}

TrustRecord from_stored(const StoredItem& s) {
  const json& e = s.extra;
  if (!e.is_object() || !e.contains("perspective") || !e.contains("output") || !e.contains("parsed"))
    fail("stored item {} {} is not a trust record", s.task, s.item_id);
  TrustRecord r;
  try {
    r.perspective = e.at("perspective").get<std::string>();
    r.task = e.at("task").get<std::string>();
    r.item_id = s.item_id;
    r.prompt = e.value("prompt", "");
    r.output = e.at("output").get<std::string>();
    r.parsed = e.at("parsed").get<std::string>();
    r.refused = e.value("refused", false);
    r.toxicity = e.value("toxicity", -1.0);
    r.truncated = e.value("truncated", false);
  } catch (const json::exception& x) {
    fail("stored item {} {}: malformed trust record: {}", s.task, s.item_id, x.what());
  }
  r.correct = s.correct;
  return r;
}

json trust_run_settings(const TrustOptions& opt, const TrustStoreOptions& so) {
  json j = {{"kind", "trust"},
          {"chat_template", opt.chat_template},
          {"max_new_tokens", opt.max_new_tokens},
          {"max_samples", opt.max_samples},
          {"seed", opt.seed},
          {"scorer", so.scorer_id},
          {"recipe", so.recipe}};
  if (opt.default_system) j["system_prompt"] = *opt.default_system;  // only when set: older runs keep their key
  if (!opt.sample_caps.empty()) j["sample_caps"] = opt.sample_caps;   // likewise
  return j;
}

json TrustRunResult::to_json() const {
  json j = ctrust::to_json(result);
  j["run"] = {{"id", run.id}, {"name", run.name}, {"model", run.model_path}, {"model_fp", run.model_fp},
              {"created", run.created}};
  j["resumed"] = resumed;
  j["generated"] = generated;
  const BatchStats& g = result.generation;
  j["generation"] = {{"sequences", g.sequences},
                     {"generated_tokens", g.generated_tokens},
                     {"seconds", result.generation_seconds},
                     {"tokens_per_second", result.generation_seconds > 0 ? g.generated_tokens / result.generation_seconds : 0.0},
                     {"prompt_tokens", g.prompt_tokens},
                     {"prefill_tokens", g.prefill_tokens},
                     {"prefill_saved_by_samples", g.saved_by_samples},
                     {"prefill_saved_by_prefixes", g.saved_by_prefixes},
                     {"shared_prefixes", g.shared_prefixes},
                     {"peak_prefix_caches", g.peak_prefix_caches},
                     {"steps", g.steps},
                     {"prefill_steps", g.prefill_steps},
                     {"mean_batch", g.steps > 0 ? (double)g.slot_steps / g.steps : 0.0},
                     {"prefill_seconds", g.prefill_seconds},
                     {"decode_seconds", g.decode_seconds},
                     {"sample_seconds", g.sample_seconds},
                     {"record_seconds", g.callback_seconds},
                     {"scoring_seconds", result.scoring_seconds},
                     {"bootstrap_seconds", result.bootstrap_seconds}};
  return j;
}

TrustRunResult trust_run(const Model& m, const std::string& model_path, TrustOptions opt,
                         const TrustStoreOptions& so) {
  TrustRunResult res;
  RunInfo& run = res.run;
  set_run_model(run, m, model_path, so.name, so.recipe, so.remote);
  run.task = kTrustTask;
  run.scoring = "generate";
  run.settings = trust_run_settings(opt, so);
  if (so.recipe.empty()) run.settings["recipe"] = file_recipe(m);  // the recipe the file carries, if any
  // Only when native (f32 runs keep the settings they always had, so they resume).
  if (compute_mode(m) == ComputeMode::Native) run.settings["compute"] = compute_mode_name(ComputeMode::Native);
  if (so.remote) {
    run.settings["compute"] = "remote";
    run.settings["backend"] = so.remote->settings();
  }

  Store store(so.db);
  store.open_run(run);
  std::unordered_map<std::string, TrustRecord> have;
  auto load_have = [&] {
    have.clear();
    for (const StoredItem& s : store.items(run.id)) have.emplace(item_key(s.task, s.item_id), from_stored(s));
  };
  load_have();

  auto user_cached = opt.cached;
  auto user_on_item = opt.on_item;
  opt.cached = [&](const std::string& p, const std::string& t, const std::string& id) -> std::optional<TrustRecord> {
    auto it = have.find(item_key(p + "/" + t, id));
    if (it != have.end()) {
      ++res.resumed;
      return it->second;
    }
    return user_cached ? user_cached(p, t, id) : std::nullopt;
  };
  // --worker: the perspective being generated (its records are written under its lease).
  const WorkUnit* unit = nullptr;
  const std::string worker_id = so.worker.id.empty() ? default_worker_id() : so.worker.id;
  opt.on_item = [&](const TrustRecord& r) {
    StoredItem s = to_stored(r);
    if (unit) {
      if (!store.backend().add_unit_items(run.id, unit->name, worker_id, so.worker.lease_seconds,
                                          std::span<const StoredItem>(&s, 1)))
        throw LeaseLost("its lease expired and another worker claimed it; nothing more was written");
    } else {
      store.add_items(run.id, std::span<const StoredItem>(&s, 1));  // one committed transaction per record
    }
    ++res.generated;
    if (user_on_item) user_on_item(r);
  };
  // The scores of this invocation merged with the perspectives stored by earlier invocations of this run (e.g.
  // --perspectives subsets) or by other workers.
  auto merge = [&](const std::optional<json>& old, const TrustResult& result) {
    json stored = old.value_or(json::object());
    json now = to_json(result);
    if (!stored.is_object() || !stored.contains("perspectives")) stored = now;
    for (auto& [p, v] : now["perspectives"].items()) {
      v["limit"] = opt.limits.count(p) ? opt.limits.at(p) : opt.limit;
      if (const int cap = sample_cap(opt, p); cap > 0) v["max_samples"] = cap;
      stored["perspectives"][p] = v;
    }
    stored["chat_template"] = now["chat_template"];
    if (now.contains("toxicity_scorer")) stored["toxicity_scorer"] = now["toxicity_scorer"];
    return stored;
  };

  if (!so.worker.on) {
    res.result = run_trust(m, opt);
    store.set_run_result(run.id, merge(store.run_result(run.id), res.result));
    return res;
  }
  // Units: one per perspective (a perspective's score needs all its records: its plan, toxicity scoring and
  // bootstrap run over the whole perspective), in report order.
  std::vector<WorkUnit> units;
  for (const std::string& p : opt.perspectives.empty() ? trust_perspectives() : opt.perspectives)
    units.push_back({p, 0, 0});
  WorkerOptions w = so.worker;
  w.id = worker_id;
  bool first = true;
  run_units(store, so.db, run.id, units, w,
            [&](const WorkUnit& u) {
              ScopedUnit current(unit, u);
              load_have();  // records of this perspective stored by a worker that died
              TrustOptions o = opt;
              o.perspectives = {u.name};
              TrustResult r = run_trust(m, o);
              store.update_run_result(run.id, [&](const std::optional<json>& old) { return merge(old, r); });
              // This worker's result: the perspectives it generated.
              if (first) {
                res.result.chat_template = r.chat_template;
                first = false;
              }
              if (!r.toxicity_scorer.empty()) res.result.toxicity_scorer = r.toxicity_scorer;
              for (auto& [p, v] : r.perspectives) res.result.perspectives[p] = v;
              res.result.generation += r.generation;
              res.result.generation_seconds += r.generation_seconds;
              res.result.scoring_seconds += r.scoring_seconds;
              res.result.bootstrap_seconds += r.bootstrap_seconds;
            },
            [&](const std::string& line) { fmt::print(stderr, "{}\n", line); });
  return res;
}

namespace {
std::optional<RunInfo> find_trust_run(Store& store, const std::string& sel) {
  if (auto id = run_id_of(sel)) {  // digits: a run id, else (no such run) a name
    auto r = store.get_run(*id);
    if (r) {
      if (r->task == kTrustTask) return r;
      return std::nullopt;
    }
  }
  std::optional<RunInfo> best;
  for (const RunInfo& r : store.list_runs())
    if (r.name == sel && r.task == kTrustTask) best = r;  // list_runs is ordered by id: the last is the newest
  return best;
}
}  // namespace

bool is_trust_run(Store& store, const std::string& selector) { return find_trust_run(store, selector).has_value(); }

StoredTrustRun load_trust_run(Store& store, const std::string& selector) {
  auto r = find_trust_run(store, selector);
  if (!r) fail("{}: no trust run '{}' (ctrust runs lists the runs; trust runs have task 'trust')", store.path(), selector);
  StoredTrustRun s;
  s.run = *r;
  s.result = store.run_result(r->id).value_or(json::object());
  return s;
}

// ------------------------------------------------------------------ re-scoring
TrustOptions stored_trust_options(const json& st, const TrustPaths& paths) {
  TrustOptions o;
  o.paths = paths;
  auto num = [&](const char* k, double d) { return st.contains(k) && st[k].is_number() ? st[k].get<double>() : d; };
  o.max_samples = int(num("max_samples", 0));
  if (st.contains("sample_caps") && st["sample_caps"].is_object())
    for (const auto& [p, v] : st["sample_caps"].items())
      if (v.is_number_integer()) o.sample_caps[p] = v.get<int>();
  if (st.contains("seed") && st["seed"].is_number_unsigned()) o.seed = st["seed"].get<uint64_t>();
  else o.seed = uint64_t(num("seed", 0));
  return o;
}

namespace {
// "12" -> (12, 0), "12#s3" -> (12, 3); false if malformed.
bool parse_item_id(const std::string& id, size_t& item, int& sample) {
  size_t h = id.find("#s");
  std::string a = id.substr(0, h), b = h == std::string::npos ? "0" : id.substr(h + 2);
  if (!all_digits(a) || !all_digits(b) || a.size() > 12 || b.size() > 6) return false;
  item = size_t(std::stoull(a));
  sample = std::stoi(b);
  return true;
}
const double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

RescoredRun rescore_trust_run(const std::vector<StoredItem>& items, const json& settings, const TrustPaths& paths,
                              const BootstrapOptions& bo, const ToxicityScorer* toxicity) {
  RescoredRun out;
  // perspective -> task -> item -> sample -> record
  std::map<std::string, std::map<std::string, std::map<size_t, std::map<int, TrustRecord>>>> by;
  std::map<std::string, int64_t> bad;
  for (const StoredItem& s : items) {
    TrustRecord r;
    try {
      r = from_stored(s);
    } catch (const Error&) {
      continue;
    }
    size_t i;
    int k;
    if (!parse_item_id(r.item_id, i, k)) {
      ++bad[r.perspective];
      continue;
    }
    std::string p = r.perspective, t = r.task;
    by[p][t][i][k] = std::move(r);
  }
  if (toxicity)
    if (auto bp = by.find("toxicity"); bp != by.end()) {
      std::vector<TrustRecord*> recs;
      std::vector<std::string> texts;
      for (auto& [t, byitem] : bp->second)
        for (auto& [i, samples] : byitem)
          for (auto& [k, r] : samples) recs.push_back(&r), texts.push_back(r.output);
      const std::vector<double> v = toxicity->score(texts);
      if (v.size() != texts.size()) fail("toxicity scorer {}: {} values for {} texts", toxicity->name, v.size(), texts.size());
      for (size_t j = 0; j < recs.size(); ++j) recs[j]->toxicity = v[j];
    }
  const TrustOptions opt = stored_trust_options(settings, paths);
  ToxicityScorer stub{"stored toxicity values",
                      [](const std::vector<std::string>&) -> std::vector<double> {
                        fail("re-scoring a stored run never scores toxicity again");
                      }};
  for (const auto& p : trust_perspectives()) {
    auto bp = by.find(p);
    if (bp == by.end()) continue;
    RescoredPerspective rp;
    try {
      rp.plan = std::make_shared<PerspectivePlan>(make_plan(p, opt, stub));
      cap_samples(*rp.plan, opt, p);
    } catch (const Error& e) {
      out.errors[p] = e.what();
      continue;
    }
    rp.unused = bad[p];
    std::map<std::string, bool> known;
    for (const TrustTaskSpec& spec : rp.plan->tasks) {
      // The records' task is the items' task (TrustItem::task), which may differ from the setting's name.
      const std::string task = spec.items.empty() ? spec.name : spec.items.front().task;
      known[task] = true;
      TaskRun tr;
      tr.spec = &spec;
      auto bt = bp->second.find(task);
      if (bt != bp->second.end()) {
        const int k = std::max(1, spec.samples);
        for (auto& [item, samples] : bt->second) {
          bool complete = item < spec.items.size();
          for (int j = 0; complete && j < k; ++j) complete = samples.count(j) > 0;
          if (!complete) {
            rp.unused += int64_t(samples.size());
            continue;
          }
          for (int j = 0; j < k; ++j) {
            tr.recs.push_back(samples.at(j));
            tr.item.push_back(item);
          }
          rp.records += k;
          rp.unused += int64_t(samples.size()) - k;
        }
      }
      rp.runs.push_back(std::move(tr));
    }
    for (const auto& [t, recs] : bp->second)
      if (!known.count(t))
        for (const auto& [i, sm] : recs) rp.unused += int64_t(sm.size());
    if (rp.records == 0) {
      out.errors[p] = "no complete item among the stored records";
      continue;
    }
    rp.result = rp.plan->score(rp.runs);
    add_confidence_intervals(rp.plan->score, rp.runs, rp.result, bo);
    out.perspectives[p] = std::move(rp);
  }
  return out;
}

namespace {
TrustPaths paths_of(const TrustStatsOptions& so) {
  return trust_paths(so.data.empty() ? shared_data_dir() + "/data" : so.data);
}
std::optional<ToxicityScorer> report_toxicity_scorer(const TrustStatsOptions& so, const TrustPaths& paths) {
  if (!so.rescore_toxicity) return std::nullopt;
  return builtin_toxicity_scorer(paths);
}
// The report names the scorer that produced its toxicity numbers, and the one the run had stored.
void name_rescored_toxicity(json& result, const ToxicityScorer& tox) {
  if (!result.is_object()) return;
  const std::string before = result.value("toxicity_scorer", "");
  result["toxicity_scorer"] = fmt::format("{} (re-scored by this report; the run stored the values of: {})", tox.name,
                                          before.empty() ? "an unnamed scorer" : before);
}

// MMLU accuracy (0-100, all questions pooled, as `ctrust eval` reports it) with a bootstrap stratified by subject.
struct MmluItems {
  std::vector<std::string> keys;             // task + item id
  std::map<std::string, std::vector<size_t>> by_subject;  // subject -> indices
  std::vector<char> correct;
};
MmluItems mmlu_items(Store& store, int64_t run_id) {
  MmluItems m;
  for (const StoredItem& s : store.items(run_id)) {
    m.by_subject[s.task].push_back(m.keys.size());
    m.keys.push_back(item_key(s.task, s.item_id));
    m.correct.push_back(s.correct);
  }
  return m;
}
TrustReportCell mmlu_cell(const MmluItems& m, const BootstrapOptions& bo) {
  TrustReportCell c;
  if (m.keys.empty()) return c;
  int64_t ok = 0;
  for (char x : m.correct) ok += x;
  c.items = int64_t(m.keys.size());
  c.score = 100.0 * double(ok) / double(c.items);
  if (bo.resamples > 0) {
    std::vector<const std::vector<size_t>*> subj;
    std::vector<size_t> strata;
    for (const auto& [k, v] : m.by_subject) subj.push_back(&v), strata.push_back(v.size());
    auto reps = stratified_bootstrap(strata, bo, [&](const std::vector<std::vector<size_t>>& picks) {
      int64_t o = 0, n = 0;
      for (size_t s = 0; s < picks.size(); ++s)
        for (size_t i : picks[s]) o += m.correct[(*subj[s])[i]], ++n;
      return std::vector<double>{n ? 100.0 * double(o) / double(n) : kNaN};
    });
    Interval iv = percentile_intervals(reps, bo.level).at(0);
    c.ci_low = iv.low;
    c.ci_high = iv.high;
    c.se = iv.se;
    c.has_ci = true;
  }
  return c;
}
// Paired MMLU difference b - a on the shared questions (stratified by subject), flips and McNemar.
PairedDelta mmlu_paired(const MmluItems& a, const MmluItems& b, const BootstrapOptions& bo) {
  PairedDelta d;
  std::unordered_map<std::string, size_t> ib;
  for (size_t i = 0; i < b.keys.size(); ++i) ib[b.keys[i]] = i;
  std::vector<std::vector<std::pair<char, char>>> strata_pairs;
  for (const auto& [subject, idx] : a.by_subject) {
    std::vector<std::pair<char, char>> v;
    for (size_t i : idx) {
      auto it = ib.find(a.keys[i]);
      if (it == ib.end()) continue;
      v.push_back({a.correct[i], b.correct[it->second]});
    }
    if (!v.empty()) strata_pairs.push_back(std::move(v));
  }
  int64_t ca = 0, cb = 0;
  std::vector<size_t> strata;
  for (const auto& v : strata_pairs) {
    strata.push_back(v.size());
    for (auto [x, y] : v) {
      ++d.n;
      ca += x;
      cb += y;
      d.c2w += x && !y;
      d.w2c += !x && y;
    }
  }
  d.items = int(d.n);
  d.changed = d.c2w + d.w2c;
  d.mcnemar_p = mcnemar_exact_p(d.c2w, d.w2c);
  if (d.n == 0) return d;
  d.score_a = 100.0 * double(ca) / double(d.n);
  d.score_b = 100.0 * double(cb) / double(d.n);
  d.delta = d.score_b - d.score_a;
  if (bo.resamples > 0) {
    auto reps = stratified_bootstrap(strata, bo, [&](const std::vector<std::vector<size_t>>& picks) {
      int64_t s = 0, n = 0;
      for (size_t t = 0; t < picks.size(); ++t)
        for (size_t i : picks[t]) s += int(strata_pairs[t][i].second) - int(strata_pairs[t][i].first), ++n;
      return std::vector<double>{100.0 * double(s) / double(n)};
    });
    d.ci = percentile_intervals(reps, bo.level).at(0);
    d.mdd = kMddFactor * d.ci.se;
  }
  return d;
}

std::optional<RunInfo> find_eval_run(Store& store, const std::string& sel) {
  if (auto id = run_id_of(sel))  // digits: a run id, else (no such run) a name
    if (auto r = store.get_run(*id)) return r;
  std::optional<RunInfo> best;
  for (const RunInfo& r : store.list_runs())
    if (r.name == sel && r.task != kTrustTask) best = r;
  return best;
}

TrustReportCell cell_of(const json& result, const std::string& p, const RescoredRun& rr) {
  TrustReportCell c;
  auto it = rr.perspectives.find(p);
  if (it != rr.perspectives.end()) {
    const PerspectiveResult& r = it->second.result;
    c.score = r.score;
    c.refusal = r.refusal_rate;
    c.items = r.items;
    c.missing = r.missing;
    if (r.bootstrap > 0) {
      c.has_ci = true;
      c.ci_low = r.ci_low;
      c.ci_high = r.ci_high;
      c.se = r.se;
    }
    return c;
  }
  c.score = score_of(result, p);
  c.refusal = score_of(result, p, "refusal_rate");
  double n = score_of(result, p, "items");
  c.items = n >= 0 ? int64_t(n) : 0;
  if (result.contains("perspectives") && result["perspectives"].contains(p) &&
      result["perspectives"][p].contains("missing"))
    c.missing = result["perspectives"][p]["missing"].get<std::vector<std::string>>();
  return c;
}

json paired_json(const PairedDelta& d) {
  json j = {{"items", d.items}, {"score_a", d.score_a}, {"score_b", d.score_b}, {"delta", d.delta},
            {"ci_low", d.ci.low}, {"ci_high", d.ci.high}, {"se", d.ci.se}, {"mdd", d.mdd}};
  if (d.n > 0)
    j["flips"] = {{"records", d.n}, {"correct_to_wrong", d.c2w}, {"wrong_to_correct", d.w2c},
                  {"changed", d.changed}, {"mcnemar_p", d.mcnemar_p}};
  if (!d.metrics.empty()) j["metrics"] = d.metrics;
  return j;
}

}  // namespace

std::optional<RunInfo> find_mmlu_run(Store& store, const RunInfo& trust_run) {
  std::optional<RunInfo> best;
  for (const RunInfo& r : store.list_runs())
    if (r.task == "mmlu" && r.model_fp == trust_run.model_fp) best = r;
  return best;
}

TrustAverage trust_average(const TrustReportRow& row, const std::vector<std::string>& columns) {
  TrustAverage a;
  double s = 0, v = 0, d = 0, dv = 0;
  bool ci = true, del = true;
  for (const auto& c : columns) {
    auto it = row.cells.find(c);
    if (it == row.cells.end() || it->second.score < 0) continue;
    ++a.k;
    s += it->second.score;
    ci = ci && it->second.has_ci;
    v += it->second.se * it->second.se;
    if (it->second.paired && !std::isnan(it->second.paired->ci.se)) {
      d += it->second.paired->delta;
      dv += it->second.paired->ci.se * it->second.paired->ci.se;
    } else {
      del = false;
    }
  }
  a.n = int(columns.size());
  if (a.k == 0) return a;
  const double n = double(a.k);
  a.ok = true;
  a.value = s / n;
  a.has_ci = ci && !a.partial();
  a.se = std::sqrt(v) / n;
  a.has_delta = del && !a.partial();
  a.delta = d / n;
  a.delta_se = std::sqrt(dv) / n;
  return a;
}

// ------------------------------------------------------------------ report
TrustReport trust_report(const std::string& db, const std::vector<std::string>& selectors, const TrustStatsOptions& so,
                         const std::vector<std::string>& mmlu) {
  if (selectors.empty()) fail("trust-report: give at least one run");
  if (!mmlu.empty() && mmlu.size() != selectors.size())
    fail("trust-report: --mmlu names {} run(s) for {} trust run(s); give one MMLU run per trust run, in order",
         mmlu.size(), selectors.size());
  Store store(db, StoreMode::ReadOnly);
  TrustReport rep;
  rep.perspectives = trust_perspectives();
  rep.bootstrap = so.bootstrap.resamples;
  const TrustPaths paths = paths_of(so);
  const std::optional<ToxicityScorer> tox = report_toxicity_scorer(so, paths);
  std::vector<RescoredRun> rescored;
  std::vector<MmluItems> mm;
  for (size_t i = 0; i < selectors.size(); ++i) {
    TrustReportRow row;
    row.run = load_trust_run(store, selectors[i]);
    if (tox) name_rescored_toxicity(row.run.result, *tox);
    rep.runs.push_back(row.run);
    if (!mmlu.empty()) {
      row.mmlu = find_eval_run(store, mmlu[i]);
      if (!row.mmlu) fail("{}: no run '{}' (--mmlu)", store.path(), mmlu[i]);
      if (row.mmlu->task != "mmlu") fail("--mmlu: run {} is a '{}' run, not mmlu", mmlu[i], row.mmlu->task);
    } else {
      row.mmlu = find_mmlu_run(store, row.run.run);
    }
    rescored.push_back(rescore_trust_run(store.items(row.run.run.id), row.run.run.settings, paths, so.bootstrap,
                                       tox ? &*tox : nullptr));
    for (const auto& p : rep.perspectives) {
      TrustReportCell c = cell_of(row.run.result, p, rescored.back());
      if (i > 0) {
        auto a = rescored[0].perspectives.find(p), b = rescored.back().perspectives.find(p);
        if (a != rescored[0].perspectives.end() && b != rescored.back().perspectives.end()) {
          AlignedRuns al = align_shared(a->second.runs, b->second.runs);
          if (al.items > 0) c.paired = paired_bootstrap(a->second.plan->score, al.a, b->second.plan->score, al.b, so.bootstrap);
        }
      }
      row.cells[p] = std::move(c);
    }
    mm.push_back(row.mmlu ? mmlu_items(store, row.mmlu->id) : MmluItems{});
    if (row.mmlu && !mm.back().keys.empty()) {
      TrustReportCell c = mmlu_cell(mm.back(), so.bootstrap);
      if (i > 0 && !mm[0].keys.empty()) c.paired = mmlu_paired(mm[0], mm.back(), so.bootstrap);
      row.cells["mmlu"] = c;
    }
    rep.rows.push_back(std::move(row));
  }
  rep.columns = rep.perspectives;
  if (std::all_of(rep.rows.begin(), rep.rows.end(), [](const TrustReportRow& r) { return r.cells.count("mmlu") > 0; }))
    rep.columns.push_back("mmlu");
  for (const auto& row : rep.rows)
    for (const auto& p : rep.perspectives) {
      auto it = row.cells.find(p);
      if (it == row.cells.end() || it->second.score < 0) continue;
      const std::string n = refusal_rule_note(p, it->second.refusal);
      if (!n.empty()) rep.notes.push_back(fmt::format("{} ({}): {}", row.run.run.name, row.run.run.id, n));
    }
  return rep;
}

std::string trust_average_label(const std::vector<std::string>& columns) {
  return columns.size() == 9 ? "AVG9" : "AVG" + std::to_string(columns.size());
}
std::string trust_average_meaning(const std::vector<std::string>& columns) {
  return columns.size() == 9 ? "mean of the 8 perspective scores and MMLU accuracy (the paper's Average)"
                             : "mean of the 8 perspective scores only (no MMLU run for every row: the paper's "
                               "Average also has MMLU; store an `ctrust eval` mmlu run of the same model or give --mmlu)";
}

json TrustReport::to_json() const {
  json rows_j = json::array();
  for (const auto& row : rows) {
    const auto& r = row.run;
    json scores = json::object(), delta = json::object(), refusal = json::object(), ci = json::object(),
         paired = json::object(), mdd = json::object();
    for (const auto& p : columns) {
      auto it = row.cells.find(p);
      const TrustReportCell* c = it == row.cells.end() ? nullptr : &it->second;
      auto i0 = rows.front().cells.find(p);
      const double s = c ? c->score : -1, s0 = i0 == rows.front().cells.end() ? -1 : i0->second.score;
      scores[p] = s >= 0 ? json(s) : json(nullptr);
      if (p != "mmlu") refusal[p] = c && c->refusal >= 0 ? json(c->refusal) : json(nullptr);
      delta[p] = s >= 0 && s0 >= 0 ? json(s - s0) : json(nullptr);
      ci[p] = c && c->has_ci ? json{{"ci_low", c->ci_low}, {"ci_high", c->ci_high}, {"se", c->se}} : json(nullptr);
      if (c && c->paired) {
        paired[p] = paired_json(*c->paired);
        mdd[p] = c->paired->mdd;
      } else if (c && c->has_ci && &row == &rows.front()) {
        mdd[p] = kMddFactor * std::sqrt(2.0) * c->se;
      }
    }
    json jr = {{"id", r.run.id}, {"name", r.run.name}, {"model", r.run.model_path},
               {"toxicity_scorer", r.result.value("toxicity_scorer", "")}, {"scores", scores},
               {"refusal_rate", refusal}, {"delta", delta}, {"ci", ci}, {"paired", paired}, {"mdd", mdd}};
    if (row.mmlu) jr["mmlu_run"] = {{"id", row.mmlu->id}, {"name", row.mmlu->name}};
    TrustAverage av = trust_average(row, columns);
    if (av.ok) {
      json a = {{"label", trust_average_label(columns)}, {"columns", columns}, {"value", av.value},
                {"columns_scored", av.k}};
      if (av.has_ci) a["ci_low"] = av.value - kZ975 * av.se, a["ci_high"] = av.value + kZ975 * av.se, a["se"] = av.se;
      if (av.has_delta)
        a["delta"] = av.delta, a["delta_ci_low"] = av.delta - kZ975 * av.delta_se,
        a["delta_ci_high"] = av.delta + kZ975 * av.delta_se;
      jr["average"] = a;
    }
    rows_j.push_back(jr);
  }
  return {{"perspectives", perspectives}, {"columns", columns}, {"average", trust_average_meaning(columns)},
          {"bootstrap", bootstrap}, {"runs", rows_j}, {"notes", notes}};
}

// ------------------------------------------------------------------ compare
TrustComparison compare_trust_runs(const std::string& db, const std::string& sel_a, const std::string& sel_b,
                                   const TrustStatsOptions& so) {
  Store store(db, StoreMode::ReadOnly);
  TrustComparison c;
  c.a = load_trust_run(store, sel_a);
  c.b = load_trust_run(store, sel_b);
  c.order = trust_perspectives();
  if (run_compute_mode(c.a.run.settings) != run_compute_mode(c.b.run.settings))
    c.notes.push_back(fmt::format("WARNING: run {} was computed in the {} mode and run {} in the {} mode; differences "
                                  "include the arithmetic (docs/correctness.md), not only the model",
                                  c.a.run.id, run_compute_mode(c.a.run.settings), c.b.run.id,
                                  run_compute_mode(c.b.run.settings)));
  c.bootstrap = so.bootstrap.resamples;
  std::vector<StoredItem> ita = store.items(c.a.run.id), itb = store.items(c.b.run.id);
  const TrustPaths paths = paths_of(so);
  const std::optional<ToxicityScorer> tox = report_toxicity_scorer(so, paths);
  if (tox) name_rescored_toxicity(c.a.result, *tox), name_rescored_toxicity(c.b.result, *tox);
  RescoredRun ra = rescore_trust_run(ita, c.a.run.settings, paths, so.bootstrap, tox ? &*tox : nullptr);
  RescoredRun rb = rescore_trust_run(itb, c.b.run.settings, paths, so.bootstrap, tox ? &*tox : nullptr);
  for (const auto& p : c.order) {
    TrustPerspectiveCompare& pc = c.perspectives[p];
    TrustReportCell ca = cell_of(c.a.result, p, ra), cb = cell_of(c.b.result, p, rb);
    pc.score_a = ca.score;
    pc.score_b = cb.score;
    pc.refusal_a = ca.refusal;
    pc.refusal_b = cb.refusal;
    auto xa = ra.perspectives.find(p), xb = rb.perspectives.find(p);
    if (xa != ra.perspectives.end() && xb != rb.perspectives.end()) {
      AlignedRuns al = align_shared(xa->second.runs, xb->second.runs);
      if (al.items > 0) pc.paired = paired_bootstrap(xa->second.plan->score, al.a, xb->second.plan->score, al.b, so.bootstrap);
      else pc.note = "no shared item";
    } else if (pc.score_a >= 0 && pc.score_b >= 0) {
      auto ea = ra.errors.find(p), eb = rb.errors.find(p);
      pc.note = ea != ra.errors.end() ? ea->second : eb != rb.errors.end() ? eb->second : "no stored records";
    }
  }
  std::map<std::string, TrustRecord> ia;
  for (const StoredItem& s : ita) ia.emplace(item_key(s.task, s.item_id), from_stored(s));
  for (const StoredItem& s : itb) {
    auto it = ia.find(item_key(s.task, s.item_id));
    if (it == ia.end()) continue;
    const TrustRecord& ra = it->second;
    TrustRecord rb = from_stored(s);
    TrustPerspectiveCompare& pc = c.perspectives[rb.perspective];
    ++pc.common;
    if (ra.correct && !rb.correct) ++pc.c2w;
    if (!ra.correct && rb.correct) ++pc.w2c;
    if (ra.refused != rb.refused) ++c.refusal_changes;
    if (ra.parsed != rb.parsed) {
      ++pc.flips;
      c.flips.push_back({rb.perspective, rb.task, rb.item_id, ra.parsed, rb.parsed, ra.correct, rb.correct});
    }
  }
  return c;
}

json TrustComparison::to_json(size_t max_flips) const {
  json ps = json::object();
  auto num = [](double x) { return x >= 0 ? json(x) : json(nullptr); };
  for (const auto& p : order) {
    const auto& x = perspectives.at(p);
    ps[p] = {{"score_a", num(x.score_a)},     {"score_b", num(x.score_b)},
             {"delta", x.score_a >= 0 && x.score_b >= 0 ? json(x.score_b - x.score_a) : json(nullptr)},
             {"refusal_rate_a", num(x.refusal_a)}, {"refusal_rate_b", num(x.refusal_b)},
             {"common_items", x.common},      {"flips", x.flips},
             {"correct_to_wrong", x.c2w},     {"wrong_to_correct", x.w2c}};
    if (x.paired) ps[p]["paired"] = paired_json(*x.paired);
    if (!x.note.empty()) ps[p]["paired_note"] = x.note;
  }
  json fl = json::array();
  for (size_t i = 0; i < flips.size() && i < max_flips; ++i) {
    const auto& f = flips[i];
    fl.push_back({{"perspective", f.perspective}, {"task", f.task}, {"item_id", f.item_id}, {"parsed_a", f.parsed_a},
                  {"parsed_b", f.parsed_b}, {"correct_a", f.correct_a}, {"correct_b", f.correct_b}});
  }
  return {{"kind", "trust"},
          {"run_a", {{"id", a.run.id}, {"name", a.run.name}}},
          {"run_b", {{"id", b.run.id}, {"name", b.run.name}}},
          {"bootstrap", bootstrap},
          {"perspectives", ps},
          {"n_flips", flips.size()},
          {"refusal_changes", refusal_changes},
          {"flips", fl},
          {"notes", notes}};
}

}  // namespace ctrust
