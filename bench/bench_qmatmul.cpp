// Native kernel throughput on one matrix shape: y[rows][out] = x[rows][in] W^T with W in a ggml type (random
// quants, sane scales), single-threaded, each ISA; best of REPS, wall time and the thread's CPU time (which
// leaves out the time other processes held the core). Shapes of Qwen2.5-1.5B: q 1536x1536, ffn_up/gate 1536->8960, ffn_down 8960->1536.
//   bench_qmatmul TYPE IN OUT [ROWS=1,16,128] [REPS=5] [ISAS=ref,avx2,avx512]
// e.g. bench_qmatmul q4_k 1536 8960 1,128 5 avx2,avx512
// TYPE f32: the f32 product of the `f32` compute mode (ops::linear: OpenBLAS sgemm, one thread) on the OpenBLAS
// kernel set in use (OPENBLAS_CORETYPE chooses it; ISAS is ignored), e.g.
//   for c in Haswell SkylakeX; do OPENBLAS_CORETYPE=$c bench_qmatmul f32 1536 8960 1,128; done
// and then whether each row's bits depend on the number of rows (each listed count against the largest).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench_util.h"
#include "io/gguf.h"
#include "compress/blas_serial.h"
#include "ops/linear.h"
#include "ops/qmatmul.h"

using namespace ctrust;

namespace {
std::vector<int> ints(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) v.push_back(std::atoi(t.c_str()));
  return v;
}
// CPU time of this thread (excludes the time other processes hold the core: the machine is shared).
double thread_cpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
void put16(uint8_t* p, float f) {
  const uint16_t h = ggml_fp32_to_fp16(f);
  std::memcpy(p, &h, 2);
}
}  // namespace

int main(int argc, char** argv) try {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s TYPE IN OUT [ROWS=1,16,128] [REPS=5] [ISAS=ref,avx2,avx512]\n", argv[0]);
    return 2;
  }
  const GgmlType t = ggml_type_from_name(argv[1]);
  const int in = std::atoi(argv[2]), out = std::atoi(argv[3]);
  const std::vector<int> rows_list = ints(argc > 4 ? argv[4] : "1,16,128");
  const int reps = argc > 5 ? std::atoi(argv[5]) : 5;
  std::vector<KernelIsa> isas;
  {
    std::stringstream ss(argc > 6 ? argv[6] : "ref,avx2,avx512");
    for (std::string s; std::getline(ss, s, ',');)
      isas.push_back(s == "ref" ? KernelIsa::Ref : s == "avx2" ? KernelIsa::Avx2 : KernelIsa::Avx512);
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int max_rows = *std::max_element(rows_list.begin(), rows_list.end());
  if (t == GgmlType::F32) {
    BlasSerial one_thread(true);
    std::vector<float> w((size_t)in * out), x((size_t)max_rows * in), y((size_t)max_rows * out);
    for (auto& v : w) v = 0.02f * g(rng);
    for (auto& v : x) v = g(rng);
    Linear L;
    L.w = w.data();
    L.in = in;
    L.out = out;
    std::printf("f32 %d -> %d, best of %d, 1 thread, OpenBLAS core %s\n", in, out, reps, blas_core_name());
    for (int rows : rows_list) {
      double best = 1e30, best_cpu = 1e30;
      for (int r = 0; r < reps; ++r) {
        const double t0 = bench::now(), c0 = thread_cpu();
        linear(L, x.data(), y.data(), rows);
        best = std::min(best, bench::now() - t0);
        best_cpu = std::min(best_cpu, thread_cpu() - c0);
      }
      std::printf("%-12s rows %4d: wall %9.3f ms, thread CPU %9.3f ms: %7.2f GFLOP/s (CPU time)\n", blas_core_name(),
                  rows, 1e3 * best, 1e3 * best_cpu, 2.0 * rows * in * out / best_cpu * 1e-9);
    }
    // Row independence: does a row get the same bits whatever number of rows it is multiplied with? (In the f32
    // mode batched generation multiplies a varying number of sequences; docs/trust.md, Batching.)
    std::vector<float> ref((size_t)max_rows * out);
    linear(L, x.data(), ref.data(), max_rows);
    for (int rows : rows_list) {
      if (rows == max_rows) continue;
      linear(L, x.data(), y.data(), rows);
      size_t differ = 0;
      for (size_t i = 0; i < (size_t)rows * out; ++i) differ += std::memcmp(&y[i], &ref[i], sizeof(float)) != 0;
      std::printf("%-12s rows %4d: %zu of %zu outputs differ in bits from the same rows of a %d-row product\n",
                  blas_core_name(), rows, differ, (size_t)rows * out, max_rows);
    }
    return 0;
  }
  const GgmlTypeInfo* info = ggml_type_info((uint32_t)t);
  std::vector<uint8_t> w(ggml_nbytes(t, in) * out);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = (uint8_t)byte(rng);
  // sane f16 scales where each type keeps them (as tests/test_qmatmul.cpp), so no sum overflows to inf
  for (size_t b = 0; b < w.size() / info->type_size; ++b) {
    uint8_t* p = w.data() + b * info->type_size;
    switch (t) {
      case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: case GgmlType::Q4_1: case GgmlType::Q5_1:
        put16(p, 0.01f); if (t == GgmlType::Q4_1 || t == GgmlType::Q5_1) put16(p + 2, -0.08f); break;
      case GgmlType::Q2_K: put16(p + 80, 0.01f); put16(p + 82, 0.01f); break;
      case GgmlType::Q3_K: put16(p + 108, 0.01f); break;
      case GgmlType::Q4_K: case GgmlType::Q5_K: put16(p, 0.001f); put16(p + 2, 0.001f); break;
      case GgmlType::Q6_K: put16(p + 208, 0.001f); break;
      default: break;
    }
  }
  std::vector<float> x((size_t)max_rows * in), y((size_t)max_rows * out);
  for (auto& v : x) v = g(rng);
  std::printf("%s %d -> %d, best of %d, 1 thread\n", ggml_type_name(t), in, out, reps);
  for (KernelIsa isa : isas) {
    if (!cpu_has_isa(isa)) continue;
    for (int rows : rows_list) {
      double best = 1e30, best_cpu = 1e30;
      for (int r = 0; r < (isa == KernelIsa::Ref ? 1 : reps); ++r) {
        const double t0 = bench::now(), c0 = thread_cpu();
        native_matmul_isa(t, w.data(), in, out, x.data(), y.data(), rows, isa);
        best = std::min(best, bench::now() - t0);
        best_cpu = std::min(best_cpu, thread_cpu() - c0);
      }
      std::printf("%-12s rows %4d: wall %9.3f ms, thread CPU %9.3f ms: %7.2f GMAC/s, %6.2f GB/s of weights (CPU time)\n",
                  kernel_isa_name(isa), rows, 1e3 * best, 1e3 * best_cpu, (double)rows * in * out / best_cpu * 1e-9,
                  (double)w.size() / best_cpu * 1e-9);
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ctrust: error: %s\n", e.what());
  return 1;
}
