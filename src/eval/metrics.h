// Item-by-item comparison of two evaluation runs of the same task: accuracy, flips (correct<->wrong),
// agreement, KL between the choice distributions, exact McNemar test and bootstrap intervals.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
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

}  // namespace ctrust
