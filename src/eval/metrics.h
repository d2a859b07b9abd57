// Item-by-item comparison of two evaluation runs of the same task: accuracy, flips (correct<->wrong),
// agreement, KL between the choice distributions, exact McNemar test and bootstrap intervals.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <random>
#include <vector>

namespace ctrust {

// One scored item of one run. `ll` holds one score per choice (summed log-likelihoods; for
// loglikelihood/perplexity tasks a single value). `pred` is the chosen answer, `correct` whether it
// counts as right (usually pred == gold; TruthfulQA counts any true answer).
struct ItemResult {
  std::string id;
  std::vector<double> ll;
  int pred = -1;
  int gold = -1;
  bool correct = false;
};

struct BootstrapOptions {
  int resamples = 1000;
  uint64_t seed = 42;
  double level = 0.95;
};

struct PairMetrics {
  int64_t n = 0;
  double acc_a = 0, acc_b = 0, delta_acc = 0;   // delta = acc_b - acc_a
  int64_t c2w = 0, w2c = 0;                     // correct in a -> wrong in b, and back
  int64_t all_flip_count = 0;                   // c2w + w2c + wrong -> other wrong
  double flips = 0;                             // (c2w + w2c) / n
  double all_flips = 0;                         // all_flip_count / n (any change of the chosen answer...)
  double agreement = 0;                         // same chosen answer
  double kl_ab = 0, kl_ba = 0;                  // mean KL(softmax(ll_a) || softmax(ll_b)) and reverse
  double mcnemar_p = 1;                         // exact two-sided McNemar (binomial on c2w, w2c)
  std::array<double, 2> delta_acc_ci{0, 0};     // bootstrap percentile interval
  std::array<double, 2> flips_ci{0, 0};
  std::array<double, 2> kl_ab_ci{0, 0};         // of kl_ab, from the same resamples
  std::vector<double> kl_item;                  // KL(a||b) of each item, in input order (the report's histogram)
};

// a[i] and b[i] must be the same item (same id, same number of choices): throws Error otherwise.
PairMetrics compare_items(std::span<const ItemResult> a, std::span<const ItemResult> b,
                          const BootstrapOptions& opt = {});

// Exact McNemar: two-sided binomial test of c2w successes among c2w + w2c trials at p = 1/2,
// p = min(1, 2 * P[X <= min(c2w, w2c)]). 1 when there are no discordant pairs.
double mcnemar_exact_p(int64_t c2w, int64_t w2c);

// KL(softmax(p) || softmax(q)) of two score vectors of equal length (natural log).
double kl_softmax(std::span<const double> p, std::span<const double> q);

// Percentile of sorted values with linear interpolation between order statistics (numpy's default),
// q in [0, 1]. NaN for an empty vector.
double percentile_sorted(std::span<const double> sorted, double q);


// ---- generic resampling statistics (used by the trust confidence intervals, src/trust/stats.h) ----

// Minimum detectable difference: z(0.975) + z(0.80). A true difference of kMddFactor x SE(difference) is
// detected by a two-sided test at alpha = 0.05 with 80% power (normal approximation).
constexpr double kMddFactor = 2.8015852;

// Uniform integer in [0, n) from a 64-bit generator, by rejection (no modulo bias). Written here rather than
// std::uniform_int_distribution so that draws are the same with every standard library (seeded samples are
// part of a run's identity).
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n);

// One interval of a statistic: percentile bounds of its bootstrap replicates and their standard deviation
// (the bootstrap standard error). NaN when no replicate had a value.
struct Interval {
  double low = 0, high = 0, se = 0;
};

// Stratified bootstrap: for each replicate, stratum s (of strata[s] units) is resampled with replacement,
// strata[s] draws, independently of the other strata; stat(picks) gets picks[s] = the drawn unit indices of
// stratum s (in draw order) and returns the statistics of the resample (NaN = undefined for this resample).
// Returns opt.resamples replicate vectors. Seeded (opt.seed): the same inputs give the same replicates.
std::vector<std::vector<double>> stratified_bootstrap(
    std::span<const size_t> strata, const BootstrapOptions& opt,
    const std::function<std::vector<double>(const std::vector<std::vector<size_t>>&)>& stat);

// Percentile interval (numpy's linear interpolation, `level` central mass) and standard deviation (n - 1) of
// each component over the replicates; NaN components of a replicate are skipped.
std::vector<Interval> percentile_intervals(const std::vector<std::vector<double>>& replicates, double level);

// A seeded, nested, stratified sample: `limit` of the n = strata.size() units (strata[i] = the stratum key of
// unit i), as ascending unit indices. Within each stratum the units are put in a seeded random order
// (Fisher-Yates with uniform_below); the strata are interleaved in Sainte-Lague order (the unit of rank r of a
// stratum of size m has priority (r + 0.5) / m, ties by stratum key) and the first `limit` units are taken.
// Sainte-Lague is a divisor method, so the allocation is proportional to the stratum sizes up to rounding and
// the sample for a limit is contained in the sample for every larger limit (resuming with a larger limit
// reuses the units already done). limit >= n (or 0) gives every unit.
std::vector<size_t> stratified_sample(std::span<const std::string> strata, size_t limit, uint64_t seed);

}  // namespace ctrust
