// What one core can stream from memory: a plain read loop (AVX2 loads, four independent sums) over a buffer of
// SIZE MB, best of REPS passes, single-threaded; also the same over a buffer that fits the caches. The decode
// products read every weight once per token, so this rate bounds decode tok/s at (rate / bytes per token).
//   bench_membw [SIZE_MB=1024] [REPS=5] [PREFETCH_AHEAD_BYTES=8192]
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "bench_util.h"

namespace {
// Sum of all 32-byte words (so that the loads cannot be dropped); with PF, each line is also prefetched g_ahead
// bytes ahead, as the decode kernels prefetch the next weight rows.
size_t g_ahead = 8192;
template <bool PF>
__attribute__((noinline, noipa)) int64_t read_all(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    if constexpr (PF) {
      _mm_prefetch((const char*)(p + i + g_ahead), _MM_HINT_T0);
      _mm_prefetch((const char*)(p + i + g_ahead + 64), _MM_HINT_T0);
    }
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i*)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i*)(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i*)(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i*)(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) int64_t v[4];
  _mm256_store_si256((__m256i*)v, s);
  return v[0] + v[1] + v[2] + v[3];
}

template <bool PF>
double best_rate(const uint8_t* p, size_t n, int reps, int64_t& sink) {
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double t0 = ctrust::bench::now();
    sink += read_all<PF>(p, n);
    const double dt = ctrust::bench::now() - t0;
    best = std::max(best, n / dt / 1e9);
  }
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  const size_t mb = argc > 1 ? (size_t)std::atol(argv[1]) : 1024;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  if (argc > 3) g_ahead = (size_t)std::atol(argv[3]);
  const size_t n = mb << 20;
  std::unique_ptr<uint8_t[]> buf(new (std::align_val_t(64)) uint8_t[n]);
  std::memset(buf.get(), 1, n);  // touch every page
  int64_t sink = 0;
  std::printf("read %zu MB: %.1f GB/s (best of %d, 1 thread)\n", mb, best_rate<false>(buf.get(), n, reps, sink), reps);
  std::printf("read %zu MB, prefetching %zu bytes ahead: %.1f GB/s\n", mb, g_ahead, best_rate<true>(buf.get(), n, reps, sink));
  const size_t small = std::min<size_t>(n, 1 << 20);  // 1 MB: the L2 cache
  std::printf("read 1 MB x 200: %.1f GB/s\n", [&] {
    double best = 0;
    for (int r = 0; r < reps; ++r) {
      const double t0 = ctrust::bench::now();
      for (int k = 0; k < 200; ++k) sink += read_all<false>(buf.get(), small);
      best = std::max(best, 200.0 * small / (ctrust::bench::now() - t0) / 1e9);
    }
    return best;
  }());
  return sink == 42 ? 1 : 0;
}
