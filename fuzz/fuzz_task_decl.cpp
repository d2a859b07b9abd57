// Task declarations: parse_task_spec on the input JSON, then load_task on a small fixed data file of the
// declared format (so templates, choices, gold and few-shot rules run on real documents).
#include <nlohmann/json.hpp>

#include "eval/task.h"
#include "fuzz_common.h"

using namespace ctrust;

static void write_data() {
  static bool done = false;
  if (done) return;
  done = true;
  const std::string d = fuzz::scratch();
  fuzz::write_text(d + "/data.jsonl",
                   "{\"q\": \"Is the sky blue?\", \"choices\": [\"yes\", \"no\"], \"gold\": 0, \"label\": \"A\"}\n"
                   "{\"q\": \"2+2?\", \"choices\": [\"3\", \"4\", \"5\"], \"gold\": 1, \"label\": \"B\"}\n");
  fuzz::write_text(d + "/data.csv", "q,a,b,answer\nIs it?,yes,no,A\nWhat?,x,y,B\n");
  fuzz::write_text(d + "/data.txt", "ctx one\n0\ne1\ne2\ne3\ne4\nctx two\n3\nf1\nf2\nf3\nf4\n");
  std::filesystem::create_directories(d + "/folder");
  fuzz::write_text(d + "/folder/sub_test.csv", "q,a,b,answer\nIs it?,yes,no,A\n");
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_data();
  const std::string decl = fuzz::scratch() + "/decl.json";
  fuzz::expect_clean([&] {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(data, data + size);
    } catch (const nlohmann::json::exception&) {
      return;  // load_task_spec reports invalid JSON as an Error; nothing else to test here
    }
    TaskSpec s = parse_task_spec(j, decl);  // relative data paths ("./data.jsonl") resolve in the scratch folder
    (void)load_task(s, 4);
  });
  return 0;
}
