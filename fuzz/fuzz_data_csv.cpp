// The CSV reader with MMLU's declaration (choice columns, letter or index gold).
#include "fuzz_data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ctrust::fuzz::fuzz_data("data.csv", R"({"format": "csv", "data": "./data.csv",
    "prompt": "{{question|strip}}\nA. {{choice0}}\nB. {{choice1}}\nC. {{choice2}}\nD. {{choice3}}\nAnswer:",
    "choices": ["A", "B", "C", "D"], "gold": "answer", "gold_labels": ["A", "B", "C", "D"]})", data, size);
  return 0;
}
