// One dataset reader under fuzzing: the input is the data file of a fixed declaration (see fuzz_data_*.cpp).
#pragma once
#include <nlohmann/json.hpp>

#include "eval/task.h"
#include "fuzz_common.h"

namespace ctrust::fuzz {

inline void fuzz_data(const char* file, const char* decl_json, const uint8_t* data, size_t size) {
  write_input(file, data, size);
  expect_clean([&] {
    TaskSpec s = parse_task_spec(nlohmann::json::parse(decl_json), scratch() + "/decl.json");
    (void)load_task(s, 0);
  });
}

}  // namespace ctrust::fuzz
