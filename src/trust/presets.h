// Run-size presets of `ctrust trust --preset`: how many items of each setting are drawn (the stratified
// seeded sample of TrustOptions::limit / limits) and a cap on the samples per item. docs/trust.md (Presets)
// gives each preset's item counts, tokens generated and measured wall time.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "trust/run.h"

namespace ctrust {

// A preset fixes how many items of each setting are drawn (stratified seeded sample, TrustOptions::limit /
// limits) and a cap on the samples per item (0 = the plan's own number: the protocol's). docs/trust.md
// (Presets) gives the item counts, tokens and times.
struct TrustPreset {
  std::string name;
  int limit = 0;                      // items per setting for perspectives not in `limits` (0 = all)
  std::map<std::string, int> limits;  // items per setting, per perspective
  int max_samples = 0;                // cap on the samples per item (0 = the plan's)
  std::map<std::string, int> sample_caps;  // per perspective, a further cap (TrustOptions::sample_caps)
  // Perspectives whose half-width target (standard) the data cannot reach: all their items are used.
  std::vector<std::string> short_of_target;
};
std::vector<std::string> trust_preset_names();  // quick, standard, paper
TrustPreset trust_preset(const std::string& name);  // Error naming the known presets
void apply_preset(const TrustPreset& p, TrustOptions& opt);

// What a run with these options generates, without a model (`ctrust trust-plan`): per perspective and setting the
// items of the setting, the items used (limit), samples per item, records, and the token budget (records x the
// items' generation length, capped by max_new_tokens). {"perspectives": {p: {"settings": [{"name","items_total",
// "items","samples","records","max_tokens"}], "items", "records", "max_tokens"}}, "items", "records", "max_tokens"}
nlohmann::json trust_plan_summary(const TrustOptions& opt);

}  // namespace ctrust
