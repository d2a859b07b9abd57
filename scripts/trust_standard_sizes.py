#!/usr/bin/env python3
"""Items per setting for the `standard` preset: the size at which every perspective's paired 95% half-width
would be <= 3 points (docs/trust.md, Presets).

Input: `ctrust compare A B --json` of two trust runs of a small real pair (baseline vs a compressed model, same
items: e.g. both at --preset quick) and `ctrust trust-plan --preset paper --json` (the setting sizes).
For each perspective with n0 items per setting in the pair and paired bootstrap SE s0 of the score difference,
SE scales as 1/sqrt(n) (every setting grows alike), so the half-width 1.96 * s0 * sqrt(n0 / n) <= 3 needs
  n >= n0 * (1.96 * s0 / 3)^2.
When the pair shows no discordant item (s0 = 0: no information on the paired variance at that size) the
unpaired bound is used instead: s0 = sqrt(se_a^2 + se_b^2) from the two runs' own bootstrap SEs (`--se-a`, `--se-b`
JSON files: `ctrust trust-report A --json` runs[0].ci). n is capped at the largest setting of the perspective: a
perspective whose cap is reached is short of the target (all its items are used).
Usage: trust_standard_sizes.py compare.json plan_paper.json report_a.json report_b.json
"""
import json
import math
import sys


def main():
    cmp_ = json.load(open(sys.argv[1]))
    plan = json.load(open(sys.argv[2]))
    rep_a = json.load(open(sys.argv[3]))["runs"][0]["ci"]
    rep_b = json.load(open(sys.argv[4]))["runs"][0]["ci"]
    out = {}
    for p, x in cmp_["perspectives"].items():
        pd = x.get("paired")
        if not pd:
            continue
        settings = plan["perspectives"][p]["settings"]
        n_set = sum(1 for s in settings if s["items_total"] > 0)
        n0 = pd["items"] / max(1, n_set)
        s0 = pd["se"] or 0.0
        source = "paired"
        if s0 == 0:
            sa = (rep_a.get(p) or {}).get("se") or 0.0
            sb = (rep_b.get(p) or {}).get("se") or 0.0
            s0 = math.sqrt(sa * sa + sb * sb)
            source = "unpaired bound"
        need = math.ceil(n0 * (1.96 * s0 / 3.0) ** 2) if s0 > 0 else 0
        cap = max(s["items_total"] for s in settings)
        out[p] = {"items_per_setting_measured": n0, "se_measured": s0, "se_source": source,
                  "items_per_setting_needed": need, "largest_setting": cap,
                  "short_of_target": need > cap,
                  "standard_items_per_setting": min(max(need, int(math.ceil(n0))), cap),
                  "expected_half_width_at_standard": 1.96 * s0 * math.sqrt(n0 / min(max(need, n0), cap)) if s0 else 0}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
