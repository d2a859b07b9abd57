// The llama.cpp HellaSwag text format (6 lines per item).
#include "fuzz_data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ctrust::fuzz::fuzz_data("data.txt", R"({"format": "hellaswag", "data": "./data.txt", "prompt": "{{ctx}}",
    "choices": "{{endings}}", "gold": "label"})", data, size);
  return 0;
}
