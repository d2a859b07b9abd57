// llama.cpp interoperability of compressed files: tests/golden/compress_llamacpp.json (made by
// scripts/ref/make_compress_golden.py with llama-cpp-python) holds llama.cpp's perplexity of GPTQ models written
// by ctrust as packed GGUF Q4_1 / Q4_0 / Q8_0 (group 32), both on the packed file (llama.cpp's quantized dot
// products round activations to 8 bits) and on an F32 copy of the same weights. These tests recompress with the
// same recipe and seed and check what is deterministic on every machine exactly: the tensors are packed in the
// expected type, the text tokenizes as llama.cpp tokenized it, and the written file reloads to the very weights
// compressed in memory (the same perplexity to 1e-9).
//
// GPTQ's weights themselves depend on the CPU's floating-point path: OpenBLAS picks AVX-512 or AVX2 kernels at
// run time, the calibration activations and the Hessian differ in their last bits, and GPTQ's error feedback
// turns a different rounding of one weight into different later weights. So:
//  * weights bit-identical to the golden file (FNV-1a 64 of the tensor data): ctrust's perplexity agrees with
//    llama.cpp's to 1e-5 relative on the F32 copy (same arithmetic) and to kTolNative on the packed file;
//  * weights that differ (another machine): the perplexity is compared with the golden figures within
//    kTolGptqFloatPath, derived from the measured spread of GPTQ's perplexity across floating-point paths
//    (docs/correctness.md, "Golden files on other machines").
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "compress/driver.h"
#include "eval/score.h"
#include "io/export.h"
#include "io/gguf.h"
#include "model/perplexity.h"
#include "test_paths.h"

using namespace ctrust;
namespace fs = std::filesystem;

namespace {

// The golden files were made from the raw text (make_compress_golden.py passes --calib-raw).
CalibOptions raw_calib(const Recipe& r) {
  CalibOptions o;
  o.n = r.n_samples;
  o.len = r.seq_len;
  o.seed = r.seed;
  o.clean = false;
  return o;
}

// Relative tolerances (see docs/compression.md, "llama.cpp interoperability").
constexpr double kTolF32 = 1e-5;     // ctrust vs llama.cpp on the F32 copy (measured <= 4e-7)
constexpr double kTolNative = 3e-3;  // ctrust vs llama.cpp on the packed file (measured <= 9e-4)
// GPTQ's perplexity on another floating-point path vs the golden one: measured with OpenBLAS's AVX2 kernels
// (OPENBLAS_CORETYPE=Haswell) against its AVX-512 ones (which made the golden file) on the same machine:
// SmolLM2 32.8333 vs 33.2327 (-1.20%; issue 16 got the same 32.8333 on an AVX2 machine), stories260K q8_0
// +8.7e-6 (q4_0, q4_1 bit-identical). 3% = 2.5x the largest measured spread.
constexpr double kTolGptqFloatPath = 0.03;

nlohmann::json golden() {
  std::ifstream in(test::golden_dir() + "/compress_llamacpp.json");
  if (!in) return nullptr;
  return nlohmann::json::parse(in);
}

std::string text_prefix(size_t bytes) {
  std::ifstream in(test::shared_dir() + "/data/wikitext-2-raw/wiki.test.raw", std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string t = ss.str();
  t.resize(std::min(t.size(), bytes));
  return t;
}

// FNV-1a 64 over the tensor-data section (from the first tensor's data to the end of the file).
std::string data_hash(const std::string& path) {
  GgufFile g = read_gguf(path);
  const uint8_t* start = g.map->data() + g.map->size();
  for (const GgufTensorInfo& t : g.tensors) start = std::min(start, t.data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (const uint8_t* p = start; p < g.map->data() + g.map->size(); ++p) h = (h ^ *p) * 0x100000001b3ull;
  return fmt::format("{:016x}", h);
}

// variants: the golden variants to run (all when empty).
void check_set(const std::string& set, const std::string& model_path, const std::vector<std::string>& variants = {}) {
  const nlohmann::json all = golden();
  ASSERT_FALSE(all.is_null()) << "missing tests/golden/compress_llamacpp.json";
  if (!all["sets"].contains(set)) GTEST_SKIP() << set << " is not in the golden file";
  if (!fs::exists(model_path)) GTEST_SKIP() << model_path << " not found (scripts/setup.sh fetches it)";
  const nlohmann::json& s = all["sets"][set];
  const std::string text = text_prefix(all["text_bytes"].get<size_t>());
  const int n_ctx = s["n_ctx"], n_chunks = s["n_chunks"];
  for (const auto& [variant, v] : s["variants"].items()) {
    if (!variants.empty() && std::find(variants.begin(), variants.end(), variant) == variants.end()) continue;
    SCOPED_TRACE(set + " " + variant);
    auto m = open_model(model_path);
    Recipe r;
    r.method = Method::GPTQ;
    r.group = 32;
    const auto opts = v["options"].get<std::vector<std::string>>();
    for (size_t i = 0; i < opts.size(); ++i) {
      if (opts[i] == "--bits") r.bits = std::stoi(opts[++i]);
      else if (opts[i] == "--sym") r.sym = true;
      else if (opts[i] == "--asym") r.sym = false;
      else FAIL() << "unexpected option " << opts[i];
    }
    const auto extra = s["extra"].get<std::vector<std::string>>();
    for (size_t i = 0; i + 1 < extra.size(); i += 2) {
      ASSERT_EQ(extra[i], "--skip");
      r.skip = extra[i + 1];
    }
    r.n_samples = s["nsamples"];
    r.seq_len = s["seqlen"];
    r.seed = s["seed"];
    Calibration calib = load_calibration(m->tok, default_calibration_file(), raw_calib(r));
    CompressReport rep = compress_model(*m, r, &calib);
    const GgmlType want = variant == "q4_1" ? GgmlType::Q4_1 : variant == "q4_0" ? GgmlType::Q4_0 : GgmlType::Q8_0;
    for (const TensorReport& t : rep.tensors) EXPECT_EQ(t.stored, want) << t.name;
    const std::string out = test::scratch_dir() + "/golden_gptq_" + set + "_" + variant + ".gguf";
    SaveOptions so;
    so.extra_meta = recipe_metadata(rep.recipe);
    save_gguf(m->file, out, so);
    std::vector<int32_t> toks = perplexity_tokens(*m, text);
    const auto head = v["tokens_head"].get<std::vector<int32_t>>();
    ASSERT_GE(toks.size(), head.size());
    EXPECT_TRUE(std::equal(head.begin(), head.end(), toks.begin())) << "tokenization differs from llama.cpp";
    const double ppl_memory = perplexity(*m, toks, n_ctx, n_chunks).ppl;
    m.reset();

    const std::string hash = data_hash(out);
    const bool same = hash == v["data_fnv1a64"].get<std::string>();
    ::testing::Test::RecordProperty(set + "_" + variant + "_bit_identical", same ? "yes" : "no");
    auto q = open_model(out);
    const double ppl = perplexity(*q, toks, n_ctx, n_chunks).ppl;
    // The packed file holds exactly the weights GPTQ produced (any machine).
    EXPECT_NEAR(ppl / ppl_memory, 1.0, 1e-9) << "reloaded " << ppl << " in memory " << ppl_memory;
    const double f32 = v["llamacpp_f32"], native = v["llamacpp_native"], golden = v["ctrust"];
    std::fprintf(stderr, "%s %s: weights %s (hash %s, golden %s); ppl %.6f, golden ctrust %.6f (ratio %.6f), "
                 "llama.cpp F32 copy %.6f, packed %.6f\n", set.c_str(), variant.c_str(),
                 same ? "bit-identical" : "differ", hash.c_str(), v["data_fnv1a64"].get<std::string>().c_str(), ppl,
                 golden, ppl / golden, f32, native);
    if (same) {
      EXPECT_NEAR(ppl / f32, 1.0, kTolF32) << "ctrust " << ppl << " llama.cpp F32 copy " << f32;
      EXPECT_NEAR(ppl / native, 1.0, kTolNative) << "ctrust " << ppl << " llama.cpp packed " << native;
      EXPECT_NEAR(ppl / golden, 1.0, 1e-5);  // ctrust's own golden value up to BLAS summation order
    } else {
      // Another floating-point path: other GPTQ weights, so llama.cpp's figures (made on the golden weights) are
      // met only within the measured spread of GPTQ itself.
      EXPECT_NEAR(ppl / f32, 1.0, kTolGptqFloatPath) << "ctrust " << ppl << " llama.cpp F32 copy " << f32;
      EXPECT_NEAR(ppl / native, 1.0, kTolGptqFloatPath + kTolNative) << "ctrust " << ppl << " llama.cpp packed "
                                                                       << native;
    }
  }
}

}  // namespace

TEST(CompressGolden, Stories260kGptqPackedRunsInLlamaCpp) { check_set("stories260k", test::stories_gguf()); }

// SmolLM2: the Q4_1 variant only (a whole-model GPTQ and two perplexity runs per variant, ~1 min of CPU each);
// the Q4_0 and Q8_0 packers are checked on stories260K above, and the SmolLM2 goldens of all three stay in the file
// (scripts/ref/make_compress_golden.py).
TEST(CompressGolden, SmolLM2GptqPackedRunsInLlamaCpp) { check_set("smollm2", test::smollm_q4_1(), {"q4_1"}); }
