#!/usr/bin/env python3
"""Items per setting for the `standard` preset: the size at which every perspective's paired 95% half-width
would be <= 3 points (docs/trust.md, Presets).

Input: `ctrust compare A B --json` of two trust runs of a small real pair (baseline vs a compressed model, same
items: e.g. both at --preset quick) and `ctrust trust-plan --preset paper --json` (the setting sizes).
For each perspective with n0 items per setting in the pair and paired bootstrap SE s0 of the score difference,
SE scales as 1/sqrt(n) (every setting grows alike), so the half-width 1.96 * s0 * sqrt(n0 / n) <= 3 needs
  n >= n0 * (1.96 * s0 / 3)^2.
When the pair shows no variation (s0 = 0: e.g. SmolLM2-135M answers every ethics item the same way in both runs,
so the sample says nothing about the variance) a planning bound is used instead of a measurement: a 0-100 score
that is a rate over all N = n * S records (S settings) of two independent runs at p = 1/2 has
SE = 100 sqrt(2 * 0.25 / N), so n >= (1.96 * 100)^2 * 0.5 / 9 / S. n is capped at the largest setting of the
perspective; a perspective whose need exceeds its smallest setting is short of the target (those settings use
all their items).
Usage: trust_standard_sizes.py compare.json plan_paper.json
"""
import json
import math
import sys


def main():
    cmp_ = json.load(open(sys.argv[1]))
    plan = json.load(open(sys.argv[2]))
    out = {}
    for p, x in cmp_["perspectives"].items():
        pd = x.get("paired")
        if not pd:
            continue
        settings = plan["perspectives"][p]["settings"]
        n_set = sum(1 for s in settings if s["items_total"] > 0)
        n0 = pd["items"] / max(1, n_set)
        s0 = pd["se"] or 0.0
        source = "paired bootstrap SE"
        if s0 > 0:
            need = math.ceil(n0 * (1.96 * s0 / 3.0) ** 2)
        else:
            source = "planning bound (no variation measured)"
            need = math.ceil((1.96 * 100) ** 2 * 0.5 / 9.0 / n_set)
            s0 = 100 * math.sqrt(0.5 / (n0 * n_set))
        cap = max(s["items_total"] for s in settings)
        smallest = min(s["items_total"] for s in settings if s["items_total"] > 0)
        out[p] = {"items_per_setting_measured": n0, "se_measured": s0, "se_source": source,
                  "items_per_setting_needed": need, "largest_setting": cap,
                  "short_of_target": need > smallest,
                  "standard_items_per_setting": min(max(need, int(math.ceil(n0))), cap),
                  "expected_half_width_at_standard": 1.96 * s0 * math.sqrt(n0 / min(max(need, n0), cap)) if s0 else 0}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
