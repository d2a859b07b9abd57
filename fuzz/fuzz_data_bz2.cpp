// bzip2-compressed data (the decompressor and its output limit), read as JSON lines with PIQA's declaration.
#include "fuzz_data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ctrust::fuzz::fuzz_data("data.jsonl.bz2", R"({"format": "jsonl", "data": "./data.jsonl.bz2",
    "prompt": "{{query}}Answer:", "choices": "{{choices}}", "gold": "gold"})", data, size);
  return 0;
}
