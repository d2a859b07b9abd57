// Kernels for ctrust's own weight types in the native compute mode (qmatmul_ctrust.h).
#include "ops/qmatmul_ctrust.h"

#include <algorithm>
#include <vector>

#include <cblas.h>

#include "base/error.h"
#include "io/ctrust_types.h"

namespace ctrust {

namespace {
size_t checked_row_bytes(GgmlType t, int in, int64_t* nb) {
  const GgmlTypeInfo* info = ggml_type_info(uint32_t(t));
  if (!is_ctrust_type(t) || !info) fail("ctrust kernels: {} is not a ctrust weight type", ggml_type_name(t));
  const size_t rb = ggml_nbytes(t, in);  // throws if the row is not a whole number of blocks
  *nb = in / info->block_size;
  return rb;
}
}  // namespace

void ctrust_matmul(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows) {
  int64_t nb = 0;
  const size_t rb = checked_row_bytes(t, in, &nb);
  const int tiles = (out + kCtrustTile - 1) / kCtrustTile;
#pragma omp parallel if (int64_t(out) * in >= (1 << 15))
  {
    std::vector<float> tile(static_cast<size_t>(kCtrustTile) * in);
#pragma omp for schedule(static)
    for (int ti = 0; ti < tiles; ++ti) {
      const int o0 = ti * kCtrustTile, n = std::min(kCtrustTile, out - o0);
      for (int o = 0; o < n; ++o)
        ctrust_dequantize_blocks(t, w + size_t(o0 + o) * rb, tile.data() + size_t(o) * in, nb);
      // One BLAS call per tile; inside the parallel region OpenBLAS runs it on this thread.
      if (rows == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, in, 1.0f, tile.data(), in, x, 1, 0.0f, y + o0, 1);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, in, 1.0f, x, in, tile.data(), in, 0.0f,
                    y + o0, out);
    }
  }
}

void ctrust_matmul_ref(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows) {
  int64_t nb = 0;
  const size_t rb = checked_row_bytes(t, in, &nb);
  std::vector<float> row(static_cast<size_t>(in));
  for (int o = 0; o < out; ++o) {
    ctrust_dequantize_blocks(t, w + size_t(o) * rb, row.data(), nb);
    for (int r = 0; r < rows; ++r) {
      const float* xr = x + int64_t(r) * in;
      float s = 0.0f;
      for (int j = 0; j < in; ++j) s += xr[j] * row[j];
      y[int64_t(r) * out + o] = s;
    }
  }
}

}  // namespace ctrust
