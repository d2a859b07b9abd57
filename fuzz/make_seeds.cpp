// Writes the seed corpora of the fuzz targets into OUT/<target>/ from the repository's test files and
// small excerpts of the real models and data in ../shared (nothing large is committed). Used by scripts/fuzz.sh:
//   make_seeds OUT
#include <bzlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../tests/hf_fixture.h"
#include "base/error.h"
#include "eval/task.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using namespace ctrust;
using json = nlohmann::ordered_json;

static std::string out_root;
static int n_written = 0;

static void put(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(out_root + "/" + target);
  std::ofstream(out_root + "/" + target + "/" + name, std::ios::binary) << bytes;
  n_written++;
}
static std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
static void copy_in(const std::string& target, const std::string& path) {
  if (fs::is_regular_file(path)) put(target, fs::path(path).filename().string(), slurp(path));
}
static std::string first_lines(const std::string& text, int n) {
  size_t pos = 0;
  for (int i = 0; i < n && pos != std::string::npos; i++) {
    pos = text.find('\n', pos);
    if (pos != std::string::npos) pos++;
  }
  return text.substr(0, pos == std::string::npos ? text.size() : pos);
}
static std::string bz2(const std::string& s) {
  std::string out(s.size() + s.size() / 100 + 700, '\0');
  unsigned len = unsigned(out.size());
  if (BZ2_bzBuffToBuffCompress(out.data(), &len, const_cast<char*>(s.data()), unsigned(s.size()), 9, 0, 0) != BZ_OK)
    fail("bzip2 failed");
  out.resize(len);
  return out;
}

// A small GGUF: the given metadata and one small tensor of each ggml type ctrust knows (random bytes for
// the types it cannot write), so the fuzzer starts from every dequantization path.
static std::string small_gguf(const std::vector<GgufKV>& kv, const std::string& tmp) {
  std::vector<GgufWriteTensor> ts;
  std::vector<std::vector<uint8_t>> bufs;
  std::mt19937 rng(1);
  for (uint32_t id = 0; id < 40; id++) {
    const GgmlTypeInfo* info = ggml_type_info(id);
    if (!info || !info->can_dequantize) continue;
    const int64_t n = 256;
    bufs.emplace_back(ggml_nbytes(GgmlType(id), n));
    for (auto& b : bufs.back()) b = uint8_t(rng() & 0x3f);  // small exponents: finite f16/bf16 values
    ts.push_back({std::string("t.") + info->name, {n}, GgmlType(id), nullptr, bufs.back().data()});
  }
  write_gguf(tmp, kv, ts);
  return slurp(tmp);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds OUT\n");
    return 2;
  }
  out_root = argv[1];
  const std::string src = test::source_dir(), shared = test::shared_dir();
  const std::string tmp = out_root + "/.tmp";
  fs::create_directories(tmp);
  try {
    // GGUF: the broken-file corpus, stories260K's metadata (SentencePiece vocabulary) and SmolLM2's (byte-level
    // BPE; vocabulary and merges cut to their first entries) with a tensor of every type.
    for (const auto& e : fs::directory_iterator(src + "/tests/data/broken"))
      if (e.path().extension() == ".gguf") copy_in("fuzz_gguf", e.path().string());
    copy_in("fuzz_gguf", src + "/tests/data/hardening/bpe_no_merges.gguf");
    const GgufFile st = read_gguf(test::stories_gguf());
    put("fuzz_gguf", "stories_meta_types.gguf", small_gguf(st.kv, tmp + "/a.gguf"));
    if (fs::exists(test::smollm_q4_1())) {
      GgufFile sm = read_gguf(test::smollm_q4_1());
      std::vector<GgufKV> kv;
      for (auto& e : sm.kv) {
        if (e.key == "tokenizer.ggml.tokens" || e.key == "tokenizer.ggml.token_type") e.value.arr.resize(1000);
        if (e.key == "tokenizer.ggml.merges") e.value.arr.resize(600);
        if (e.key == "tokenizer.chat_template") continue;
        kv.push_back(e);
      }
      put("fuzz_gguf", "smollm2_meta_types.gguf", small_gguf(kv, tmp + "/b.gguf"));
      // tokenizer.json of the same cut vocabulary (byte-level BPE, as transformers writes it).
      json vocab = json::object();
      for (size_t i = 0; i < 1000; i++) vocab[sm.find("tokenizer.ggml.tokens")->arr[i].s] = i;
      json merges = json::array();
      for (size_t i = 0; i < 600; i++) merges.push_back(sm.find("tokenizer.ggml.merges")->arr[i].s);
      json tj = {{"version", "1.0"},
                 {"added_tokens", json::array({{{"id", 0}, {"content", vocab.begin().key()}, {"special", true}}})},
                 {"normalizer", nullptr},
                 {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                 {"decoder", {{"type", "ByteLevel"}}},
                 {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
      put("fuzz_tokenizer_json", "smollm2_cut.json", tj.dump());
    }
    // Hugging Face: stories260K written as transformers would (tokenizer.json with byte fallback), its
    // config.json, the broken folders' files.
    const std::string hf = tmp + "/hf";
    test::write_stories_hf(hf);
    copy_in("fuzz_tokenizer_json", hf + "/tokenizer.json");
    put("fuzz_hf_config", "stories.json", slurp(hf + "/config.json"));
    json tiny = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 4}, {"intermediate_size", 4},
                 {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"num_key_value_heads", 2},
                 {"rms_norm_eps", 1e-5}, {"vocab_size", 4}, {"max_position_embeddings", 16},
                 {"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}};
    put("fuzz_hf_config", "tiny.json", tiny.dump());
    tiny["architectures"] = {"Qwen2ForCausalLM"};
    tiny["head_dim"] = 2;
    put("fuzz_hf_config", "tiny_qwen2.json", tiny.dump());
    for (const auto& e : fs::directory_iterator(src + "/tests/data/broken")) {
      if (!e.is_directory()) continue;
      const std::string n = e.path().filename().string();
      put("fuzz_safetensors", n + ".safetensors", slurp(e.path().string() + "/model.safetensors"));
      put("fuzz_hf_config", n + ".json", slurp(e.path().string() + "/config.json"));
    }
    put("fuzz_hf_config", "hidden_1e300.json", slurp(src + "/tests/data/hardening/hf_hidden_1e300/config.json"));
    {  // a small valid safetensors file with metadata and three dtypes
      std::vector<float> z(64, 0.25f);
      write_safetensors(tmp + "/s.safetensors",
                        {{"a", "F32", {4, 4}, z.data()}, {"b", "F16", {8}, z.data()}, {"c", "BF16", {2, 2}, z.data()}},
                        {{"format", "pt"}});
      put("fuzz_safetensors", "small.safetensors", slurp(tmp + "/s.safetensors"));
    }
    // llama2.c: both real tokenizers; a tiny valid checkpoint (dim 8, 1 layer, vocab 512) and the huge header.
    copy_in("fuzz_llama2c_tokenizer", test::stories_tok());
    copy_in("fuzz_llama2c_tokenizer", shared + "/models/aidreams260K/tok512_dreams.bin");
    {
      const int32_t h[7] = {8, 16, 1, 2, 2, 512, 8};
      const size_t floats = 8 * 512 + (8 + 64 + 2 * 64 + 64 + 8 + 3 * 128) + 8 + 8 * 4;
      std::string b(reinterpret_cast<const char*>(h), sizeof h);
      std::vector<float> w(floats);
      for (size_t i = 0; i < floats; i++) w[i] = float(int(i % 17) - 8) / 16.0f;
      b.append(reinterpret_cast<const char*>(w.data()), w.size() * 4);
      put("fuzz_llama2c_model", "tiny.bin", b);
      int32_t h2[7] = {8, 16, 1, 2, 2, -512, 8};  // untied classifier
      std::string b2(reinterpret_cast<const char*>(h2), sizeof h2);
      b2.append(reinterpret_cast<const char*>(w.data()), w.size() * 4);
      b2.append(std::string(8 * 512 * 4, '\0'));
      put("fuzz_llama2c_model", "tiny_untied.bin", b2);
    }
    copy_in("fuzz_llama2c_model", src + "/tests/data/hardening/llama2c_huge_header.bin");
    // Task declarations: the repository's, pointed at the harness's small data files.
    for (const auto& e : fs::directory_iterator(src + "/tasks")) {
      json j = json::parse(slurp(e.path().string()));
      const std::string f = j.value("format", "");
      j["data"] = f == "jsonl" ? "./data.jsonl" : f == "csv" ? "./data.csv" : f == "csv_folder" ? "./folder" : "./data.txt";
      if (j.contains("fewshot_data")) j["fewshot_data"] = "./folder";
      if (f == "csv_folder") j["fewshot_suffix"] = "_test.csv";
      put("fuzz_task_decl", e.path().filename().string(), j.dump());
    }
    for (const auto& e : fs::directory_iterator(src + "/tests/data/hardening"))
      if (e.path().extension() == ".json") copy_in("fuzz_task_decl", e.path().string());
    // Dataset readers: the first lines of the real files.
    for (const char* f : {"arc/arc_easy.jsonl", "arc/arc_challenge.jsonl", "piqa/piqa.jsonl", "boolq/boolq.jsonl",
                          "winogrande/winogrande.jsonl"}) {
      const std::string p = shared + "/data/" + f;
      if (!fs::exists(p)) continue;
      put("fuzz_data_jsonl", fs::path(p).filename().string(), first_lines(slurp(p), 6));
    }
    put("fuzz_data_bz2", "piqa.jsonl.bz2", bz2(first_lines(slurp(shared + "/data/piqa/piqa.jsonl"), 6)));
    copy_in("fuzz_data_bz2", src + "/tests/data/hardening/empty.jsonl.bz2");
    int k = 0;
    for (const auto& e : fs::directory_iterator(shared + "/data/mmlu/test")) {
      if (k++ == 3) break;
      put("fuzz_data_csv", e.path().filename().string(), first_lines(slurp(e.path().string()), 5));
    }
    if (fs::exists(shared + "/data/truthfulqa/TruthfulQA.csv"))
      put("fuzz_data_csv", "TruthfulQA.csv", first_lines(slurp(shared + "/data/truthfulqa/TruthfulQA.csv"), 5));
    put("fuzz_data_hellaswag", "hellaswag.txt",
        first_lines(read_text_file(shared + "/data/hellaswag/hellaswag_val_full.txt.bz2"), 24));
    // lm-eval samples: the test files and the reproducers.
    for (const auto& dir : {src + "/tests/data/lmeval", src + "/tests/data/hardening"})
      for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".jsonl" && e.path().filename().string().rfind("samples_", 0) == 0)
          copy_in("fuzz_lmeval", e.path().string());
  } catch (const std::exception& e) {
    fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  fs::remove_all(tmp);
  printf("make_seeds: %d seed files in %s\n", n_written, out_root.c_str());
  return 0;
}
