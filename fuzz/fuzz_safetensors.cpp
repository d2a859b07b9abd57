// safetensors header and layout checks.
#include "fuzz_common.h"
#include "io/safetensors.h"

using namespace ctrust;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string p = fuzz::write_input("model.safetensors", data, size);
  fuzz::expect_clean([&] {
    SafetensorsFile f = read_safetensors(p);
    size_t sum = 0;
    for (const auto& t : f.tensors)
      if (t.nbytes) sum += t.data[0] + t.data[t.nbytes - 1];  // every range must be inside the map
    (void)sum;
  });
  return 0;
}
