// A Hugging Face folder whose config.json is the input; the weights (a valid 1-layer Llama, dim 4) and
// tokenizer.json are fixed, written once per process.
#include <vector>

#include "fuzz_common.h"
#include "io/model_file.h"
#include "io/safetensors.h"

using namespace ctrust;

static std::string folder() {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch() + "/hf";
    std::filesystem::create_directories(d);
    static std::vector<float> z(64, 0.5f);
    std::vector<SafetensorsWriteTensor> t = {{"model.embed_tokens.weight", "F32", {4, 4}, z.data()},
                                             {"model.norm.weight", "F32", {4}, z.data()}};
    for (const char* n : {"input_layernorm.weight", "post_attention_layernorm.weight"})
      t.push_back({std::string("model.layers.0.") + n, "F32", {4}, z.data()});
    for (const char* n : {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                          "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"})
      t.push_back({std::string("model.layers.0.") + n, "F32", {4, 4}, z.data()});
    write_safetensors(d + "/model.safetensors", t, {});
    fuzz::write_text(d + "/tokenizer.json",
                     R"({"model": {"type": "BPE", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3}, "merges": []}})");
    return d;
  }();
  return dir;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string d = folder();
  fuzz::write_input("hf/config.json", data, size);
  fuzz::expect_clean([&] { (void)load_hf_model(d); });
  return 0;
}
