#include "trust/presets.h"

#include "base/error.h"
#include "trust/perspective.h"

namespace ctrust {

// ---------------------------------------------------------------- presets
std::vector<std::string> trust_preset_names() { return {"quick", "standard", "paper"}; }

TrustPreset trust_preset(const std::string& name) {
  TrustPreset p;
  p.name = name;
  if (name == "paper") return p;  // every item, the plans' samples and temperatures
  if (name == "quick") {
    // A smoke run of a few minutes: 4 items of every setting (stratified), one sample per item.
    p.limit = 4;
    p.max_samples = 1;
    return p;
  }
  if (name == "standard") {
    // Items per setting for a paired 95% half-width <= 3 points (docs/trust.md, Presets): n = n0 (1.96 SE0 / 3)^2
    // from the paired bootstrap SE0 of SmolLM2-135M-Instruct Q4_1 vs its RTN 3-bit copy at the quick size
    // (toxicity, AdvGLUE, OOD, adversarial demonstrations), else the planning bound for a rate at p = 1/2
    // (stereotype, privacy, ethics, fairness: no variation measured); scripts/trust_standard_sizes.py.
    // 0 = every item. The plans' own temperatures; samples the protocol's, except stereotype and privacy: one
    // generation per prompt. Their sizes come from the planning bound over one record per item, and one sample
    // at the protocol's temperature estimates the same per-prompt mean (agreement rate, leak rate) without bias;
    // the protocol's 25 (stereotype) and 100 (privacy understanding) samples are 8.0 M of the 10.7 M tokens.
    // Toxicity keeps its 25: its metrics are maxima over a prompt's samples, which depend on their number.
    p.sample_caps = {{"stereotype", 1}, {"privacy", 1}};
    p.limits = {{"toxicity", 35},        {"stereotype", 712}, {"adv_robustness", 0}, {"ood", 286},
                {"adv_demonstration", 181}, {"privacy", 89},    {"ethics", 195},       {"fairness", 0}};
    p.short_of_target = {"adv_robustness", "ood", "fairness"};
    return p;
  }
  std::string k;
  for (const auto& x : trust_preset_names()) k += (k.empty() ? "" : ", ") + x;
  fail("unknown preset '{}' (known: {})", name, k);
}

void apply_preset(const TrustPreset& p, TrustOptions& opt) {
  opt.limit = p.limit;
  opt.limits = p.limits;
  opt.max_samples = p.max_samples;
  opt.sample_caps = p.sample_caps;
}


nlohmann::json trust_plan_summary(const TrustOptions& opt) {
  using json = nlohmann::json;
  auto known = trust_perspectives();
  std::vector<std::string> want = opt.perspectives.empty() ? known : opt.perspectives;
  ToxicityScorer stub{"none", [](const std::vector<std::string>& t) { return std::vector<double>(t.size(), 0.0); }};
  json out = {{"perspectives", json::object()}};
  int64_t ti = 0, tr = 0, tt = 0;
  for (const auto& p : known) {
    if (std::find(want.begin(), want.end(), p) == want.end()) continue;
    PerspectivePlan plan = make_plan(p, opt, stub);
    cap_samples(plan, opt, p);
    json settings = json::array();
    int64_t pi = 0, pr = 0, pt = 0;
    for (const TrustTaskSpec& t : plan.tasks) {
      std::vector<size_t> sel = select_items(t, opt);
      const int k = std::max(1, t.samples);
      int64_t tokens = 0;
      for (size_t i : sel) {
        int m = t.items[i].max_tokens;
        if (opt.max_new_tokens > 0) m = std::min(m, opt.max_new_tokens);
        tokens += int64_t(m) * k;
      }
      settings.push_back({{"name", t.name}, {"items_total", t.items.size()}, {"items", sel.size()}, {"samples", k},
                          {"temperature", t.temperature}, {"records", int64_t(sel.size()) * k}, {"max_tokens", tokens}});
      pi += int64_t(sel.size());
      pr += int64_t(sel.size()) * k;
      pt += tokens;
    }
    out["perspectives"][p] = {{"settings", settings}, {"items", pi}, {"records", pr}, {"max_tokens", pt}};
    ti += pi;
    tr += pr;
    tt += pt;
  }
  out["items"] = ti;
  out["records"] = tr;
  out["max_tokens"] = tt;
  return out;
}

}  // namespace ctrust
