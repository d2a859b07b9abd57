#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

#include "base/error.h"

namespace ctrust {

double mcnemar_exact_p(int64_t c2w, int64_t w2c) {
  if (c2w < 0 || w2c < 0) fail("mcnemar_exact_p: negative count ({}, {})", c2w, w2c);
  const int64_t m = c2w + w2c;
  if (m == 0) return 1.0;
  const int64_t k = std::min(c2w, w2c);
  // P[X <= k] for X ~ Binomial(m, 1/2): exact term recurrence while 2^-m is representable,
  // log space beyond (m in the thousands).
  double tail = 0;
  if (m <= 1000) {
    double term = std::ldexp(1.0, -int(m));  // C(m,0) / 2^m
    for (int64_t i = 0; i <= k; i++) {
      tail += term;
      term = term * double(m - i) / double(i + 1);
    }
  } else {
    const double lg_m1 = std::lgamma(double(m) + 1.0);
    const double log_half_m = double(m) * std::log(0.5);
    for (int64_t i = 0; i <= k; i++) {
      const double lc = lg_m1 - std::lgamma(double(i) + 1.0) - std::lgamma(double(m - i) + 1.0);
      tail += std::exp(lc + log_half_m);
    }
  }
  return std::min(1.0, 2.0 * tail);
}

double kl_softmax(std::span<const double> p, std::span<const double> q) {
  if (p.size() != q.size()) fail("kl_softmax: {} vs {} choices", p.size(), q.size());
  if (p.empty()) return 0.0;
  auto lse = [](std::span<const double> x) {
    double mx = *std::max_element(x.begin(), x.end());
    if (!std::isfinite(mx)) return mx;
    double s = 0;
    for (double v : x) s += std::exp(v - mx);
    return mx + std::log(s);
  };
  const double lp = lse(p), lq = lse(q);
  double kl = 0;
  for (size_t i = 0; i < p.size(); i++) {
    const double a = p[i] - lp, b = q[i] - lq;
    if (std::isinf(a) && a < 0) continue;  // p_i = 0 contributes nothing
    kl += std::exp(a) * (a - b);
  }
  return std::max(0.0, kl);
}

double percentile_sorted(std::span<const double> v, double q) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  q = std::clamp(q, 0.0, 1.0);
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  const double f = pos - double(lo);
  return v[lo] + (v[hi] - v[lo]) * f;
}

PairMetrics compare_items(std::span<const ItemResult> a, std::span<const ItemResult> b,
                          const BootstrapOptions& opt) {
  if (a.size() != b.size()) fail("compare_items: {} items vs {} items", a.size(), b.size());
  PairMetrics r;
  const size_t n = a.size();
  r.n = int64_t(n);
  if (n == 0) return r;
  // Per item: 0 = both same correctness, +1 = w2c, -1 = c2w; flip = correctness changed.
  std::vector<int8_t> d(n);
  std::vector<double> kl(n);
  int64_t ca = 0, cb = 0, agree = 0, other_wrong = 0;
  double kab = 0, kba = 0;
  for (size_t i = 0; i < n; i++) {
    const ItemResult& x = a[i];
    const ItemResult& y = b[i];
    if (x.id != y.id) fail("compare_items: item {} is '{}' in run a but '{}' in run b", i, x.id, y.id);
    if (x.ll.size() != y.ll.size())
      fail("compare_items: item '{}' has {} choices in run a but {} in run b", x.id, x.ll.size(), y.ll.size());
    ca += x.correct;
    cb += y.correct;
    if (x.correct && !y.correct) r.c2w++, d[i] = -1;
    else if (!x.correct && y.correct) r.w2c++, d[i] = 1;
    if (x.pred == y.pred) agree++;
    else if (!x.correct && !y.correct) other_wrong++;
    kl[i] = kl_softmax(x.ll, y.ll);
    kab += kl[i];
    kba += kl_softmax(y.ll, x.ll);
  }
  const double dn = double(n);
  r.acc_a = ca / dn;
  r.acc_b = cb / dn;
  r.delta_acc = (cb - ca) / dn;
  r.flips = (r.c2w + r.w2c) / dn;
  r.all_flip_count = r.c2w + r.w2c + other_wrong;
  r.all_flips = r.all_flip_count / dn;
  r.agreement = agree / dn;
  r.kl_ab = kab / dn;
  r.kl_ba = kba / dn;
  r.mcnemar_p = mcnemar_exact_p(r.c2w, r.w2c);

  if (opt.resamples > 0) {
    std::mt19937_64 rng(opt.seed);
    std::uniform_int_distribution<size_t> pick(0, n - 1);
    std::vector<double> deltas(size_t(opt.resamples)), flips(size_t(opt.resamples)), kls(size_t(opt.resamples));
    for (int s = 0; s < opt.resamples; s++) {
      int64_t sum = 0, fl = 0;
      double k = 0;
      for (size_t i = 0; i < n; i++) {
        const size_t j = pick(rng);
        const int8_t v = d[j];
        sum += v;
        fl += v != 0;
        k += kl[j];
      }
      deltas[size_t(s)] = double(sum) / dn;
      flips[size_t(s)] = double(fl) / dn;
      kls[size_t(s)] = k / dn;
    }
    std::sort(deltas.begin(), deltas.end());
    std::sort(flips.begin(), flips.end());
    std::sort(kls.begin(), kls.end());
    const double lo = (1.0 - opt.level) / 2, hi = 1.0 - lo;
    r.delta_acc_ci = {percentile_sorted(deltas, lo), percentile_sorted(deltas, hi)};
    r.flips_ci = {percentile_sorted(flips, lo), percentile_sorted(flips, hi)};
    r.kl_ab_ci = {percentile_sorted(kls, lo), percentile_sorted(kls, hi)};
  }
  r.kl_item = std::move(kl);
  return r;
}


uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  if (n == 0) fail("uniform_below: empty range");
  // Largest multiple of n representable: draws at or above it are rejected.
  const uint64_t lim = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t x;
  do x = rng();
  while (x >= lim);
  return x % n;
}

std::vector<std::vector<double>> stratified_bootstrap(
    std::span<const size_t> strata, const BootstrapOptions& opt,
    const std::function<std::vector<double>(const std::vector<std::vector<size_t>>&)>& stat) {
  if (opt.resamples < 0) fail("bootstrap: negative number of resamples ({})", opt.resamples);
  std::mt19937_64 rng(opt.seed);
  std::vector<std::vector<double>> out;
  out.reserve(size_t(opt.resamples));
  std::vector<std::vector<size_t>> picks(strata.size());
  for (int b = 0; b < opt.resamples; ++b) {
    for (size_t s = 0; s < strata.size(); ++s) {
      picks[s].resize(strata[s]);
      for (size_t i = 0; i < strata[s]; ++i) picks[s][i] = size_t(uniform_below(rng, strata[s]));
    }
    out.push_back(stat(picks));
  }
  return out;
}

std::vector<Interval> percentile_intervals(const std::vector<std::vector<double>>& reps, double level) {
  size_t m = 0;
  for (const auto& r : reps) m = std::max(m, r.size());
  std::vector<Interval> out(m);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double lo = (1.0 - level) / 2, hi = 1.0 - lo;
  std::vector<double> v;
  for (size_t c = 0; c < m; ++c) {
    v.clear();
    for (const auto& r : reps)
      if (c < r.size() && !std::isnan(r[c])) v.push_back(r[c]);
    if (v.empty()) {
      out[c] = {nan, nan, nan};
      continue;
    }
    std::sort(v.begin(), v.end());
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    out[c] = {percentile_sorted(v, lo), percentile_sorted(v, hi), v.size() > 1 ? std::sqrt(ss / double(v.size() - 1)) : 0.0};
  }
  return out;
}

std::vector<size_t> stratified_sample(std::span<const std::string> strata, size_t limit, uint64_t seed) {
  const size_t n = strata.size();
  std::vector<size_t> all(n);
  std::iota(all.begin(), all.end(), size_t(0));
  if (limit == 0 || limit >= n) return all;
  // Units of each stratum in index order, then a seeded Fisher-Yates shuffle per stratum (one generator,
  // strata in key order: the order of a stratum does not depend on the limit).
  std::map<std::string, std::vector<size_t>> by;
  for (size_t i = 0; i < n; ++i) by[strata[i]].push_back(i);
  std::mt19937_64 rng(seed);
  struct Cand {  // priority (2 rank + 1) / (2 size), compared exactly in integers
    uint64_t num, den;
    size_t stratum, unit;
  };
  std::vector<Cand> cand;
  cand.reserve(n);
  size_t si = 0;
  for (auto& [key, units] : by) {
    for (size_t i = units.size(); i > 1; --i) std::swap(units[i - 1], units[size_t(uniform_below(rng, i))]);
    for (size_t r = 0; r < units.size(); ++r) cand.push_back({2 * uint64_t(r) + 1, 2 * uint64_t(units.size()), si, units[r]});
    ++si;
  }
  std::sort(cand.begin(), cand.end(), [](const Cand& a, const Cand& b) {
    const unsigned __int128 l = (unsigned __int128)a.num * b.den, r = (unsigned __int128)b.num * a.den;
    if (l != r) return l < r;
    return a.stratum < b.stratum;
  });
  std::vector<size_t> out;
  out.reserve(limit);
  for (size_t i = 0; i < limit; ++i) out.push_back(cand[i].unit);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace ctrust
