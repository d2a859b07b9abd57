// OpenBLAS starts its threads for every call; for the many small products of compression (tiny models,
// tests) that costs far more than the product, especially on a busy machine. BlasSerial runs the BLAS calls
// of its scope single-threaded when `small` is true (restoring the thread count afterwards). Inside an OpenMP
// parallel region it does nothing: OpenBLAS (OpenMP build) already runs single-threaded there, and changing
// the global thread count from several threads at once would race.
#pragma once
#include <cblas.h>
#include <omp.h>

namespace ctrust {

// OpenBLAS's OpenMP build sets OpenMP's thread count when its own is set (openblas_set_num_threads(1) makes
// omp_get_max_threads() 1, and restoring it to OpenBLAS's count, capped at the cores, would not give back a larger
// OpenMP count): both are saved and restored.
struct BlasSerial {
  int saved = 0, saved_omp = 0;
  explicit BlasSerial(bool small) {
    if (small && !omp_in_parallel()) {
      saved = openblas_get_num_threads();
      saved_omp = omp_get_max_threads();
      if (saved > 1 || saved_omp > 1) openblas_set_num_threads(1); else saved = 0;
    }
  }
  ~BlasSerial() {
    if (saved > 1 || saved_omp > 1) {
      openblas_set_num_threads(saved > 0 ? saved : 1);
      omp_set_num_threads(saved_omp);
    }
  }
  BlasSerial(const BlasSerial&) = delete;
  BlasSerial& operator=(const BlasSerial&) = delete;
};

// Below this many multiply-adds a product runs single-threaded.
inline constexpr double kBlasSmall = double(1 << 22);

}  // namespace ctrust
