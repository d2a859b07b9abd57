// Hugging Face tokenizer.json: reading, building the tokenizer, encoding and decoding.
#include "fuzz_common.h"
#include "io/tokenizer.h"

using namespace ctrust;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::filesystem::create_directories(fuzz::scratch() + "/tj");
  const std::string p = fuzz::write_input("tj/tokenizer.json", data, size);
  fuzz::expect_clean([&] {
    Tokenizer tok(tokenizer_from_json(p));
    auto ids = tok.encode("Hello world! 123 <s> caf\xc3\xa9 \xf0\x9f\x98\x80 \xff", true, true);
    (void)tok.decode(ids);
  });
  return 0;
}
