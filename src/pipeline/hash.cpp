// hash_bytes / hex64 (declared in pipeline/fingerprint.h), apart from the model-dependent functions.
#include <cstring>

#include <fmt/format.h>

#include "pipeline/fingerprint.h"

namespace ctrust {

static inline uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

uint64_t hash_bytes(const void* data, size_t n, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  const uint64_t k = 0x9e3779b97f4a7c15ULL;
  uint64_t a = seed ^ 0x243f6a8885a308d3ULL, b = seed ^ 0x13198a2e03707344ULL;
  uint64_t c = seed ^ 0xa4093822299f31d0ULL, d = seed ^ 0x082efa98ec4e6c89ULL;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {  // four independent lanes
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    a = (a ^ w[0]) * k; a ^= a >> 29;
    b = (b ^ w[1]) * k; b ^= b >> 29;
    c = (c ^ w[2]) * k; c ^= c >> 29;
    d = (d ^ w[3]) * k; d ^= d >> 29;
  }
  uint64_t h = mix(a) ^ mix(b + 1) ^ mix(c + 2) ^ mix(d + 3);
  for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return mix(h ^ uint64_t(n));
}

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

}  // namespace ctrust
