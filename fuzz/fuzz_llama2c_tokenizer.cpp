// llama2.c tokenizer .bin: reading, building, encoding and decoding.
#include "fuzz_common.h"
#include "io/tokenizer.h"

using namespace ctrust;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string p = fuzz::write_input("tok.bin", data, size);
  fuzz::expect_clean([&] {
    Tokenizer tok(tokenizer_from_llama2c(p));
    auto ids = tok.encode("Once upon a time, Lily saw a caf\xc3\xa9 \xf0\x9f\x98\x80", true);
    (void)tok.decode(ids);
  });
  return 0;
}
