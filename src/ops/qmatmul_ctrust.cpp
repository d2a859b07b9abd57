// Reference kernel for ctrust's own weight types in the native compute mode (qmatmul_ctrust.h).
#include "ops/qmatmul_ctrust.h"

#include <vector>

#include "base/error.h"
#include "io/ctrust_types.h"

namespace ctrust {

void ctrust_matmul(GgmlType t, const uint8_t* w, int in, int out, const float* x, float* y, int rows) {
  const GgmlTypeInfo* info = ggml_type_info(uint32_t(t));
  if (!is_ctrust_type(t) || !info) fail("ctrust kernels: {} is not a ctrust weight type", ggml_type_name(t));
  const size_t rb = ggml_nbytes(t, in);  // throws if the row is not a whole number of blocks
  const int64_t nb = in / info->block_size;
#pragma omp parallel if (int64_t(out) * in >= (1 << 15))
  {
    std::vector<float> row(static_cast<size_t>(in));
#pragma omp for schedule(static)
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
}

}  // namespace ctrust
