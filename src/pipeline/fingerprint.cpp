#include "pipeline/fingerprint.h"

#include <filesystem>

#include "backend/openai.h"

namespace ctrust {

void set_run_model(RunInfo& run, const Model& m, const std::string& model_path, const std::string& name,
                   const std::string& recipe, const OpenAIBackend* remote) {
  run.name = name.empty() ? std::filesystem::path(model_path).stem().string() : name;
  run.model_path = model_path;
  if (remote) {  // the served model: its name, the recipe and the local tokenizer identify it
    run.model_path = remote->options().base_url + " " + remote->options().model;
    const std::string id = "openai:" + remote->options().model + ":" + recipe + ":" + tokenizer_fingerprint(m);
    run.model_fp = hex64(hash_bytes(id.data(), id.size()));
  } else {
    run.model_fp = model_fingerprint(m, recipe);
  }
  run.tokenizer_fp = tokenizer_fingerprint(m);
}

std::string model_fingerprint(const Model& m, std::string_view recipe) {
  uint64_t h = hash_bytes(recipe.data(), recipe.size(), 1);
  for (const auto& [name, t] : m.file.tensors) {
    h = hash_bytes(name.data(), name.size(), h);
    h = hash_bytes(t.ne.data(), t.ne.size() * sizeof(int64_t), h);
    if (t.data) {
      h = hash_bytes(t.data, size_t(t.numel()) * sizeof(float), h);
    } else if (t.raw) {  // native mode: the weight in its storage type (its bytes determine its f32 values)
      const uint32_t type = uint32_t(t.src_type);
      h = hash_bytes(&type, sizeof(type), h);
      h = hash_bytes(t.raw, t.raw_bytes, h);
    }
  }
  for (const auto& L : m.layers) {
    for (const BlockLinear& b : kBlockLinears) {
      const Linear& l = L.*b.member;
      const int mode[2] = {int(l.mode), 0};
      h = hash_bytes(mode, sizeof(mode), h);
      h = hash_bytes(&l.threshold, sizeof(float), h);
    }
  }
  const ModelConfig& c = m.cfg;
  const double cf[4] = {c.norm_eps, c.rope_theta, c.rope_freq_scale, double(c.rope)};
  h = hash_bytes(cf, sizeof(cf), h);
  return hex64(h);
}

std::string tokenizer_fingerprint(const Model& m) { return hex64(m.tok.fingerprint()); }

std::string file_recipe(const Model& m) {
  for (const auto& kv : m.file.meta)
    if (kv.key == "ctrust.recipe" && kv.value.type == GgufType::STRING) return kv.value.s;
  return "";
}

}  // namespace ctrust
