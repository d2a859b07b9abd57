// GGUF reader, then what loading does with the result: tokenizer build + encode/decode, dequantization of
// every tensor ctrust can read (small tensors only, to keep executions fast), and the whole model load.
#include <algorithm>
#include <vector>

#include "fuzz_common.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "io/tokenizer.h"

using namespace ctrust;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string p = fuzz::write_input("in.gguf", data, size);
  fuzz::expect_clean([&] {
    GgufFile f = read_gguf(p);
    for (const auto& t : f.tensors) {
      const GgmlTypeInfo* info = ggml_type_info((uint32_t)t.type);
      if (!info->can_dequantize || t.numel() > (1 << 16)) continue;
      std::vector<float> out((size_t)t.numel());
      dequantize(t.type, t.data, out.data(), t.numel());
    }
    fuzz::expect_clean([&] {
      Tokenizer tok(tokenizer_from_gguf(f));
      auto ids = tok.encode("Hello world! 123 <s> caf\xc3\xa9 \xf0\x9f\x98\x80", true, true);
      (void)tok.decode(ids);
    });
    fuzz::expect_clean([&] { (void)load_gguf_model(p); });
  });
  return 0;
}
