// lm-evaluation-harness --log_samples files (import-lm-eval's reader).
#include "fuzz_common.h"
#include "pipeline/lmeval.h"

using namespace ctrust;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string p = fuzz::write_input("samples_arc_easy_2024-01-01T00-00-00.jsonl", data, size);
  fuzz::expect_clean([&] { (void)read_lm_eval_samples(p, "arc_easy"); });
  return 0;
}
