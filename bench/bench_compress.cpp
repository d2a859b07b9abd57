// Times the sequential compression driver on a real model: wall seconds of each phase, CPU seconds, and the
// process's peak resident memory (getrusage ru_maxrss), as one line of text and one JSON line.
// usage: bench_compress MODEL [method=gptq] [N=32] [L=256] [bits=4] [group=32] [key=value ...]
//   extra keys: sym=0|1 sparsity=S nm=N:M act_order=0|1 seed=S threads=T
// Defaults are the project's (Recipe: N = 32, L = 256, 4-bit asymmetric, group 32).
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <omp.h>

#include <cblas.h>

#include "base/error.h"
#include "bench_util.h"
#include "compress/driver.h"

using namespace ctrust;
using namespace ctrust::bench;

namespace {


}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [method] [N] [L] [bits] [group] [key=value ...]\n", argv[0]);
    return 2;
  }
  try {
    Recipe r;
    r.method = method_from_name(argc > 2 ? argv[2] : "gptq");
    if (argc > 3) r.n_samples = std::atoi(argv[3]);
    if (argc > 4) r.seq_len = std::atoi(argv[4]);
    if (argc > 5) r.bits = std::atoi(argv[5]);
    if (argc > 6) r.group = std::atoi(argv[6]);
    for (int i = 7; i < argc; ++i) {
      std::string a = argv[i];
      const size_t eq = a.find('=');
      if (eq == std::string::npos) fail("bench_compress: expected key=value, got '{}'", a);
      const std::string k = a.substr(0, eq), v = a.substr(eq + 1);
      if (k == "sym") r.sym = v == "1";
      else if (k == "sparsity") r.sparsity = std::atof(v.c_str());
      else if (k == "nm") {
        if (std::sscanf(v.c_str(), "%d:%d", &r.prune_n, &r.prune_m) != 2) fail("bench_compress: bad nm '{}'", v);
      } else if (k == "act_order") r.act_order = v == "1";
      else if (k == "seed") r.seed = std::strtoull(v.c_str(), nullptr, 10);
      else if (k == "threads") {
        omp_set_num_threads(std::atoi(v.c_str()));
        openblas_set_num_threads(std::atoi(v.c_str()));
      } else fail("bench_compress: unknown key '{}'", k);
    }
    validate_recipe(r);
    const bool calibrated = method_needs_calibration(r.method);
    auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    auto m = open_model(argv[1]);
    auto t1 = std::chrono::steady_clock::now();
    Calibration c;
    if (calibrated) c = load_calibration(m->tok, default_calibration_file(), r.n_samples, r.seq_len, r.seed);
    auto t2 = std::chrono::steady_clock::now();
    CompressReport rep = compress_model(*m, r, calibrated ? &c : nullptr);
    auto t3 = std::chrono::steady_clock::now();
    const double cpu = cpu_seconds() - c0;
    double err = 0;
    int n_err = 0;
    for (const auto& t : rep.tensors)
      if (t.rel_error >= 0) {
        err += t.rel_error;
        ++n_err;
      }
    auto s = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    const std::string label = fmt::format("{}{}", method_name(r.method),
                                          method_is_pruning(r.method) ? "" : fmt::format(" {}-bit", r.bits));
    std::printf("%s: threads %d  load %.2fs  calibration %.2fs (%d x %d tokens)  compress %.2fs  total %.2fs  "
                "cpu %.1fs  peak RSS %.0f MB  tensors %zu  mean rel. error %.5f\n",
                label.c_str(), omp_get_max_threads(), s(t0, t1), s(t1, t2), r.n_samples, r.seq_len, s(t2, t3),
                s(t0, t3), cpu, peak_rss_mb(), rep.tensors.size(), n_err ? err / n_err : -1.0);
    std::printf("{\"method\":\"%s\",\"recipe\":%s,\"threads\":%d,\"load_s\":%.3f,\"calib_s\":%.3f,\"compress_s\":%.3f,"
                "\"total_s\":%.3f,\"cpu_s\":%.2f,\"peak_rss_mb\":%.1f}\n",
                method_name(r.method), recipe_to_string(rep.recipe).c_str(), omp_get_max_threads(), s(t0, t1),
                s(t1, t2), s(t2, t3), s(t0, t3), cpu, peak_rss_mb());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_compress: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
