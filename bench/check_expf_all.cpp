// The vector expf (ops/vexp.h) against std::exp for EVERY float: all 2^32 bit patterns (the floats <= 0 from -0 to
// -inf, the positive ones, the NaNs), each ISA this CPU runs, bit for bit. Prints the count of differing results
// per ISA and range (and the first few); exit status 1 if any differs. About a minute on one core.
//   check_expf_all [ISAS=avx2,avx512]        (scripts/check_expf.sh builds and runs it)
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "ops/qmatmul.h"
#include "ops/vexp.h"

using namespace ctrust;

int main(int argc, char** argv) {
  std::vector<KernelIsa> isas;
  std::stringstream ss(argc > 1 ? argv[1] : "avx2,avx512");
  for (std::string s; std::getline(ss, s, ',');)
    isas.push_back(s == "ref" ? KernelIsa::Ref : s == "avx2" ? KernelIsa::Avx2 : KernelIsa::Avx512);
  std::printf("start-up check (exp_f32_matches_libm): %s\n", exp_f32_matches_libm() ? "yes" : "NO");
  const int64_t chunk = 1 << 20;
  std::vector<float> x(chunk), want(chunk), got(chunk);
  int bad_total = 0;
  for (KernelIsa isa : isas) {
    if (!cpu_has_isa(isa)) {
      std::printf("%s: not on this CPU, skipped\n", kernel_isa_name(isa));
      continue;
    }
    // [0] floats with the sign bit set, -0 .. -inf; [1] their NaNs; [2] +0 .. +inf; [3] positive NaNs
    int64_t bad[4] = {0, 0, 0, 0}, count[4] = {0, 0, 0, 0};
    int shown = 0;
    for (uint64_t b0 = 0; b0 < (1ull << 32); b0 += chunk) {
      for (int64_t i = 0; i < chunk; ++i) {
        const uint32_t b = (uint32_t)(b0 + i);
        std::memcpy(&x[i], &b, 4);
      }
      exp_f32_ref(x.data(), want.data(), chunk);
      exp_f32_isa(x.data(), got.data(), chunk, isa);
      for (int64_t i = 0; i < chunk; ++i) {
        const uint32_t b = (uint32_t)(b0 + i);
        const int r = (b >> 31) ? (b > 0xff800000u ? 1 : 0) : (b > 0x7f800000u ? 3 : 2);
        ++count[r];
        if (std::memcmp(&got[i], &want[i], 4) != 0) {
          ++bad[r];
          if (shown++ < 10)
            std::printf("  %s: x = %a (0x%08x): kernel %a, std::exp %a\n", kernel_isa_name(isa), x[i], b, got[i],
                        want[i]);
        }
      }
    }
    const char* names[4] = {"[-inf, -0]", "NaN (sign set)", "[+0, +inf]", "NaN"};
    for (int r = 0; r < 4; ++r) {
      std::printf("%s %-15s %11lld floats, %lld differ\n", kernel_isa_name(isa), names[r], (long long)count[r],
                  (long long)bad[r]);
      bad_total += bad[r] != 0;
    }
  }
  std::printf("%s\n", bad_total ? "DIFFERENCES FOUND" : "all identical");
  return bad_total ? 1 : 0;
}
