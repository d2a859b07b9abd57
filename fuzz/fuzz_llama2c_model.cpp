// llama2.c checkpoint (the input) with a fixed, valid 512-token tokenizer written once per process.
#include <vector>

#include "fuzz_common.h"
#include "io/model_file.h"

using namespace ctrust;

static std::string tokenizer() {
  static const std::string p = [] {
    // A llama2.c tokenizer: max_len, then (score, len, bytes) per token; 512 tokens like tok512.bin.
    std::string b;
    auto put = [&](const void* v, size_t n) { b.append(static_cast<const char*>(v), n); };
    int32_t max_len = 8;
    put(&max_len, 4);
    for (int i = 0; i < 512; i++) {
      std::string t = i == 0 ? "<unk>" : i == 1 ? "\n<s>\n" : i == 2 ? "\n</s>\n"
                      : i < 259 ? "<0x" + std::string(1, "0123456789ABCDEF"[(i - 3) >> 4]) +
                                      std::string(1, "0123456789ABCDEF"[(i - 3) & 15]) + ">"
                                : "t" + std::to_string(i);
      float score = -float(i);
      int32_t len = int32_t(t.size());
      put(&score, 4), put(&len, 4), put(t.data(), t.size());
    }
    const std::string path = fuzz::scratch() + "/tok.bin";
    fuzz::write_text(path, b);
    return path;
  }();
  return p;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string tok = tokenizer();
  const std::string p = fuzz::write_input("model.bin", data, size);
  fuzz::expect_clean([&] { (void)load_llama2c_model(p, tok); });
  return 0;
}
