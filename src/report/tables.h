// `ctrust report RUN...`: the tables of a report over stored runs, built once as data from the comparisons
// (pipeline/runs.h, pipeline/trust_runs.h) and rendered as JSON (Report::to_json) and HTML (report/html.h).
// The first run is the base; every other run is compared with it item by item. docs/report.md.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "pipeline/runs.h"
#include "pipeline/trust_runs.h"

namespace ctrust {

struct ReportOptions {
  std::string db = "ctrust.db";
  BootstrapOptions bootstrap;  // the evaluation comparisons' intervals
  TrustStatsOptions trust;     // trust re-scoring: data folder, bootstrap
};

// An estimate and its 95% interval.
struct Estimate {
  double value = 0, low = 0, high = 0;
};

// One selected run: a name selects every evaluation run of that name (the newest per task) and the newest trust
// run of that name, else the newest trust run of the same model (the evaluation runs' fingerprint: the same file,
// or the same compressed model); an id selects that run (and, for an evaluation run, the trust run of its model).
struct ReportRun {
  std::string selector;    // as given on the command line
  std::string name;        // the stored run name
  std::string model_path;
  std::string compute;     // f32 | native
  std::vector<RunInfo> eval;         // evaluation runs, one per task
  std::optional<RunInfo> trust;      // trust run
  std::string recipe;      // the stored recipe ("" = the model as downloaded); JSON from ctrust compress, or free text
  std::string recipe_label;  // "gptq 3-bit g64", "wanda 50%", "-"
  std::string method;      // the recipe's method ("" = none)
  double bits = -1;        // weight bits from the recipe: bits of rtn/gptq/awq, 8 for smoothquant/llm_int8; -1 = none
};

// One task of one variant against the base (run 0), on the items both runs have.
struct EvalRow {
  std::string task;
  size_t run = 0;  // index in Report::runs (>= 1)
  int64_t n = 0, only_base = 0, only_variant = 0;
  Estimate acc_base, acc;       // accuracy with its Wilson score interval
  Estimate delta_acc;           // acc - acc_base, paired bootstrap interval
  int64_t c2w = 0, w2c = 0;
  Estimate flips;               // (c2w + w2c) / n, bootstrap interval
  bool has_kl = true;           // false for likelihood tasks (one continuation: no distribution over choices)
  Estimate kl;                  // mean answer-level KL(base || variant), nats, bootstrap interval
  double mcnemar_p = 1;
  double ppl_base = -1, ppl = -1;  // likelihood tasks
};

// A point of the flips-and-KL-vs-bits plot: one task of one variant with a bit width.
struct BitsPoint {
  size_t run = 0;
  std::string task, method;
  double bits = 0;
  Estimate flips, kl;
  bool has_kl = true;
};

// The distribution of per-item answer-level KL(base || variant) of one variant, pooled over its choice tasks.
// Fixed bins shared by every variant: [0, 1e-5), then half decades [1e-5, 10^-4.5), ..., [10^-0.5, 1), [1, inf).
struct KlHistogram {
  size_t run = 0;
  std::vector<double> edges;    // bin i = [edges[i], edges[i+1]); the last edge is +inf
  std::vector<int64_t> counts;
  int64_t n = 0;
  double mean = 0, median = 0, p95 = 0, max = 0;
};

struct Report {
  std::string db;
  std::vector<ReportRun> runs;   // runs[0] is the base
  std::vector<EvalRow> eval;     // per task (in the base's task order), per variant
  bool bits_plot = false;        // the runs are variants of one base and at least one has a bit width
  std::vector<BitsPoint> bits_points;
  std::vector<KlHistogram> kl_hist;
  std::optional<TrustReport> trust;  // when the base and at least one variant have trust runs
  std::vector<size_t> trust_rows;    // the report run of each trust row
  std::vector<std::string> notes;
  int bootstrap = 0;
  nlohmann::json to_json() const;
};

// Reads the store and builds every table. Error for an unknown run, or when no run is given.
Report build_report(const std::vector<std::string>& selectors, const ReportOptions& opt);

// ---- pieces (tested on their own) ----

// A short label of a stored recipe ("gptq 3-bit g64", "wanda 50%", "sparsegpt 2:4"); "-" when there is none;
// free text (trust --recipe) as given, cut to 22 characters.
std::string recipe_label(const std::string& text);
// The method and weight bits of a stored recipe (method "" and bits -1 when it is not a ctrust recipe).
void recipe_bits(const std::string& text, std::string& method, double& bits);
// Wilson score interval of k successes in n trials at z = 1.96 (value = k / n). n = 0: all zero.
Estimate wilson_interval(int64_t k, int64_t n);
// The histogram of per-item KL values on the fixed bins above, with mean, median, 95th percentile and maximum.
KlHistogram kl_histogram(const std::vector<double>& kl);

}  // namespace ctrust
