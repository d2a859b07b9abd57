#!/usr/bin/env python3
"""Independent check of ctrust's stratified cluster bootstrap (src/trust/stats.cpp, src/eval/metrics.cpp).

scipy.stats.bootstrap with several samples resamples each sample independently (with replacement, its own size):
that is the stratified bootstrap ctrust runs, one sample per setting. The units are items; an item carries its k
sample outcomes, and the statistic is the mean over settings of each setting's record-level accuracy (x 100), which
equals the mean of the item means when every item has k samples (what advglue's / adv_demo's ScoreFn computes).
Writes tests/golden/trust_bootstrap_ref.json: the data, and scipy's percentile interval and standard error with
200,000 resamples. The C++ test (tests/test_trust_stats.cpp, TrustStats.MatchesScipyStratifiedBootstrap) runs its
own bootstrap (different random numbers) on the same data and compares within Monte Carlo tolerance.
Usage: python3 scripts/ref/trust_bootstrap_ref.py [out.json]
"""
import json
import sys

import numpy as np
from scipy import stats

# settings -> items -> k = 2 sample outcomes (1 = correct)
DATA = {
    "s1": [[1, 1], [1, 0], [0, 0], [1, 1], [0, 1], [1, 1], [0, 0], [1, 0]],
    "s2": [[0, 0], [1, 1], [0, 0], [0, 1], [1, 1], [0, 0]],
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/golden/trust_bootstrap_ref.json"
    samples = [np.array([np.mean(item) for item in DATA[s]]) for s in ("s1", "s2")]

    def statistic(a, b, axis=-1):
        return 100.0 * (np.mean(a, axis=axis) + np.mean(b, axis=axis)) / 2

    res = stats.bootstrap(tuple(samples), statistic, n_resamples=200000, method="percentile",
                          confidence_level=0.95, vectorized=True, rng=np.random.default_rng(1))
    point = float(statistic(*samples))
    doc = {
        "data": DATA,
        "samples_per_item": 2,
        "score": point,
        "ci_low": float(res.confidence_interval.low),
        "ci_high": float(res.confidence_interval.high),
        "se": float(res.standard_error),
        "n_resamples": 200000,
        "method": "scipy.stats.bootstrap, percentile, one sample per setting (independent resampling = strata)",
        "scipy": __import__("scipy").__version__,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(json.dumps({k: doc[k] for k in ("score", "ci_low", "ci_high", "se")}))


if __name__ == "__main__":
    main()
