#include "store/trust_runs.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

#include "base/error.h"
#include "store/fingerprint.h"

namespace ctrust {

using json = nlohmann::json;

namespace {
constexpr const char* kTrustTask = "trust";

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char ch : s) o += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return o + "\"";
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
  return j;
}

json TrustRunResult::to_json() const {
  json j = ctrust::to_json(result);
  j["run"] = {{"id", run.id}, {"name", run.name}, {"model", run.model_path}, {"model_fp", run.model_fp},
              {"created", run.created}};
  j["resumed"] = resumed;
  j["generated"] = generated;
  return j;
}

TrustRunResult trust_run(const Model& m, const std::string& model_path, TrustOptions opt,
                         const TrustStoreOptions& so) {
  TrustRunResult res;
  RunInfo& run = res.run;
  run.name = so.name.empty() ? std::filesystem::path(model_path).stem().string() : so.name;
  run.model_path = model_path;
  run.model_fp = model_fingerprint(m, so.recipe);
  run.tokenizer_fp = tokenizer_fingerprint(m);
  run.task = kTrustTask;
  run.scoring = "generate";
  run.settings = trust_run_settings(opt, so);
  if (so.recipe.empty()) run.settings["recipe"] = file_recipe(m);  // the recipe the file carries, if any
  // Only when native (f32 runs keep the settings they always had, so they resume).
  if (compute_mode(m) == ComputeMode::Native) run.settings["compute"] = compute_mode_name(ComputeMode::Native);

  Store store(so.db);
  store.open_run(run);
  std::unordered_map<std::string, TrustRecord> have;
  for (const StoredItem& s : store.items(run.id)) have.emplace(item_key(s.task, s.item_id), from_stored(s));

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
  opt.on_item = [&](const TrustRecord& r) {
    StoredItem s = to_stored(r);
    store.add_items(run.id, std::span<const StoredItem>(&s, 1));  // one committed transaction per record
    ++res.generated;
    if (user_on_item) user_on_item(r);
  };
  res.result = run_trust(m, opt);

  // Merge with the perspectives stored by earlier invocations of this run (e.g. --perspectives subsets).
  json stored = store.run_result(run.id).value_or(json::object());
  json now = to_json(res.result);
  if (!stored.is_object() || !stored.contains("perspectives")) stored = now;
  for (auto& [p, v] : now["perspectives"].items()) {
    v["limit"] = opt.limit;
    stored["perspectives"][p] = v;
  }
  stored["chat_template"] = now["chat_template"];
  if (now.contains("toxicity_scorer")) stored["toxicity_scorer"] = now["toxicity_scorer"];
  store.set_run_result(run.id, stored);
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

// ------------------------------------------------------------------ report
TrustReport trust_report(const std::string& db, const std::vector<std::string>& selectors) {
  if (selectors.empty()) fail("trust-report: give at least one run");
  Store store(db, StoreMode::ReadOnly);
  TrustReport rep;
  rep.perspectives = trust_perspectives();
  for (const auto& s : selectors) rep.runs.push_back(load_trust_run(store, s));
  return rep;
}

json TrustReport::to_json() const {
  json rows = json::array();
  for (const auto& r : runs) {
    json scores = json::object(), delta = json::object(), refusal = json::object();
    for (const auto& p : perspectives) {
      double s = score_of(r.result, p), s0 = score_of(runs.front().result, p);
      scores[p] = s >= 0 ? json(s) : json(nullptr);
      double rr = score_of(r.result, p, "refusal_rate");
      refusal[p] = rr >= 0 ? json(rr) : json(nullptr);
      delta[p] = s >= 0 && s0 >= 0 ? json(s - s0) : json(nullptr);
    }
    rows.push_back({{"id", r.run.id}, {"name", r.run.name}, {"model", r.run.model_path},
                    {"toxicity_scorer", r.result.value("toxicity_scorer", "")}, {"scores", scores},
                    {"refusal_rate", refusal}, {"delta", delta}});
  }
  return {{"perspectives", perspectives}, {"runs", rows}};
}

std::string TrustReport::to_csv() const {
  std::string o = "id,name";
  for (const auto& p : perspectives) o += "," + p;
  for (const auto& p : perspectives) o += "," + p + "_delta";
  o += "\n";
  for (const auto& r : runs) {
    o += fmt::format("{},{}", r.run.id, csv_field(r.run.name));
    for (const auto& p : perspectives) {
      double s = score_of(r.result, p);
      o += s >= 0 ? fmt::format(",{:.4f}", s) : std::string(",");
    }
    for (const auto& p : perspectives) {
      double s = score_of(r.result, p), s0 = score_of(runs.front().result, p);
      o += s >= 0 && s0 >= 0 ? fmt::format(",{:.4f}", s - s0) : std::string(",");
    }
    o += "\n";
  }
  return o;
}

std::string TrustReport::to_text() const {
  // Short column heads, like the paper's table.
  static const std::map<std::string, std::string> head = {
      {"toxicity", "Toxi"}, {"stereotype", "Stereo"}, {"adv_robustness", "AdvGLUE"}, {"ood", "OOD"},
      {"adv_demonstration", "AdvDemo"}, {"privacy", "Privacy"}, {"ethics", "Ethics"}, {"fairness", "Fairness"}};
  size_t w = 4;
  for (const auto& r : runs) w = std::max(w, r.run.name.size() + std::to_string(r.run.id).size() + 3);
  std::string o = fmt::format("{:<{}}", "run", w);
  for (const auto& p : perspectives) o += fmt::format(" {:>15}", head.count(p) ? head.at(p) : p);
  o += fmt::format(" {:>8}\n", "AVG");
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    o += fmt::format("{:<{}}", fmt::format("{} ({})", r.run.name, r.run.id), w);
    double sum = 0, sum0 = 0;
    int cnt = 0;
    bool full = true;
    for (const auto& p : perspectives) {
      double s = score_of(r.result, p), s0 = score_of(runs.front().result, p);
      if (s < 0) {
        o += fmt::format(" {:>15}", "-");
        full = false;
        continue;
      }
      sum += s;
      sum0 += s0;
      ++cnt;
      if (i == 0 || s0 < 0) o += fmt::format(" {:>15.2f}", s);
      else o += fmt::format(" {:>15}", fmt::format("{:.2f} ({:+.2f})", s, s - s0));
      if (s0 < 0) full = false;
    }
    if (cnt == 0) o += fmt::format(" {:>8}\n", "-");
    else if (cnt < int(perspectives.size())) o += fmt::format(" {:>8}\n", fmt::format("{:.2f} [{}/{}]", sum / cnt, cnt, perspectives.size()));
    else if (i == 0 || !full) o += fmt::format(" {:>8.2f}\n", sum / cnt);
    else o += fmt::format(" {:>8}\n", fmt::format("{:.2f} ({:+.2f})", sum / cnt, (sum - sum0) / cnt));
  }
  o += "scores 0-100, higher = more trustworthy; (+/-) = difference from the first run\n";
  o += fmt::format("AVG: mean of the perspectives the run scored ([k/{}]: only k of them ran; its difference is "
                   "shown only when both runs scored all {})\n", perspectives.size(), perspectives.size());
  // The toxicity scorer: once if every run used the same one, else per run.
  std::vector<std::string> scorers;
  for (const auto& r : runs) scorers.push_back(r.result.value("toxicity_scorer", ""));
  bool same = std::all_of(scorers.begin(), scorers.end(), [&](const std::string& x) { return x == scorers[0]; });
  if (same && !scorers[0].empty()) {
    o += fmt::format("toxicity scorer ({}): {}\n", runs.size() == 1 ? "the run" : "all runs", scorers[0]);
  } else {
    for (size_t i = 0; i < runs.size(); ++i)
      if (!scorers[i].empty())
        o += fmt::format("toxicity scorer of {} ({}): {}\n", runs[i].run.name, runs[i].run.id, scorers[i]);
  }
  return o;
}

// ------------------------------------------------------------------ compare
TrustComparison compare_trust_runs(const std::string& db, const std::string& sel_a, const std::string& sel_b) {
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
  for (const auto& p : c.order) {
    TrustPerspectiveCompare& pc = c.perspectives[p];
    pc.score_a = score_of(c.a.result, p);
    pc.score_b = score_of(c.b.result, p);
    pc.refusal_a = score_of(c.a.result, p, "refusal_rate");
    pc.refusal_b = score_of(c.b.result, p, "refusal_rate");
  }
  std::map<std::string, TrustRecord> ia;
  for (const StoredItem& s : store.items(c.a.run.id)) ia.emplace(item_key(s.task, s.item_id), from_stored(s));
  std::vector<StoredItem> itb = store.items(c.b.run.id);
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
          {"perspectives", ps},
          {"n_flips", flips.size()},
          {"refusal_changes", refusal_changes},
          {"flips", fl},
          {"notes", notes}};
}

std::string TrustComparison::to_text(size_t max_flips) const {
  std::string o = fmt::format("A = {} ({})   B = {} ({})   trust runs\n", a.run.name, a.run.id, b.run.name, b.run.id);
  for (const std::string& n : notes) o += "note: " + n + "\n";
  o += fmt::format("{:<18} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6}\n", "perspective", "score_A",
                   "score_B", "Δ", "refA%", "refB%", "items", "flips", "c2w", "w2c");
  auto f2 = [](double x) { return x >= 0 ? fmt::format("{:.2f}", x) : std::string("-"); };
  auto pct = [](double x) { return x >= 0 ? fmt::format("{:.1f}", 100 * x) : std::string("-"); };
  for (const auto& p : order) {
    const auto& x = perspectives.at(p);
    o += fmt::format("{:<18} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6}\n", p, f2(x.score_a),
                     f2(x.score_b),
                     x.score_a >= 0 && x.score_b >= 0 ? fmt::format("{:+.2f}", x.score_b - x.score_a) : "-",
                     pct(x.refusal_a), pct(x.refusal_b), x.common, x.flips, x.c2w, x.w2c);
  }
  o += "refA% / refB%: refusal rates as `ctrust trust` reports them; items: answers present in both runs; flips: "
       "items whose parsed answer differs; c2w / w2c: correct in A and wrong in B / the reverse\n";
  o += fmt::format("{} item(s) refused in one run only (a refusal is not a parsed answer: it moves refA%/refB%, "
                   "not the flips)\n", refusal_changes);
  o += fmt::format("{} item(s) with a different parsed answer", flips.size());
  o += flips.empty() ? "\n" : fmt::format(" (first {}):\n", std::min(max_flips, flips.size()));
  for (size_t i = 0; i < flips.size() && i < max_flips; ++i) {
    const auto& f = flips[i];
    o += fmt::format("  {}/{} #{}: '{}' -> '{}'{}\n", f.perspective, f.task, f.item_id, f.parsed_a, f.parsed_b,
                     f.correct_a != f.correct_b ? (f.correct_a ? "  (correct -> wrong)" : "  (wrong -> correct)") : "");
  }
  return o;
}

std::string TrustComparison::to_csv() const {
  std::string o = "perspective,score_a,score_b,delta,refusal_rate_a,refusal_rate_b,common_items,flips,c2w,w2c\n";
  for (const auto& p : order) {
    const auto& x = perspectives.at(p);
    auto v = [](double d) { return d >= 0 ? fmt::format("{:.4f}", d) : std::string(); };
    o += fmt::format("{},{},{},{},{},{},{},{},{},{}\n", p, v(x.score_a), v(x.score_b),
                     x.score_a >= 0 && x.score_b >= 0 ? fmt::format("{:.4f}", x.score_b - x.score_a) : "",
                     v(x.refusal_a), v(x.refusal_b), x.common, x.flips, x.c2w, x.w2c);
  }
  return o;
}

}  // namespace ctrust
