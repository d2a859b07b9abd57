// The JSON-lines reader with ARC-Easy's declaration (+ one few-shot example from the data itself).
#include "fuzz_data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ctrust::fuzz::fuzz_data("data.jsonl", R"({"format": "jsonl", "data": "./data.jsonl", "num_fewshot": 1,
    "prompt": "{{query|strip}}\nAnswer:", "choices": "{{choices}}", "gold": "gold"})", data, size);
  return 0;
}
