// Times the sequential compression driver on a real model.
// usage: bench_compress MODEL [method=gptq] [N=32] [L=256] [bits=4] [group=32]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "compress/driver.h"

using namespace ctrust;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [method] [N] [L] [bits] [group]\n", argv[0]);
    return 2;
  }
  try {
    Recipe r;
    r.method = method_from_name(argc > 2 ? argv[2] : "gptq");
    r.n_samples = argc > 3 ? std::atoi(argv[3]) : 32;
    r.seq_len = argc > 4 ? std::atoi(argv[4]) : 256;
    r.bits = argc > 5 ? std::atoi(argv[5]) : 4;
    r.group = argc > 6 ? std::atoi(argv[6]) : 32;
    validate_recipe(r);
    auto t0 = std::chrono::steady_clock::now();
    auto m = open_model(argv[1]);
    auto t1 = std::chrono::steady_clock::now();
    Calibration c = load_calibration(m->tok, default_calibration_file(), r.n_samples, r.seq_len, r.seed);
    auto t2 = std::chrono::steady_clock::now();
    CompressReport rep = compress_model(*m, r, &c);
    double err = 0, rtn = 0;
    for (const auto& t : rep.tensors) {
      err += t.rel_error;
      rtn += t.rtn_error >= 0 ? t.rtn_error / std::max(1e-30, t.error / std::max(1e-30, t.rel_error)) : 0;
    }
    auto s = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    std::printf("load %.2fs  calibration %.2fs (%d x %d tokens)  compress %.2fs  tensors %zu  mean rel. error %.5f"
                "  (RTN %.5f)\n",
                s(t0, t1), s(t1, t2), r.n_samples, r.seq_len, rep.seconds, rep.tensors.size(),
                err / rep.tensors.size(), rtn / rep.tensors.size());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_compress: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
