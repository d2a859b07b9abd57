// Scale projection inputs: writes a GGUF file with the shape of Llama-2-7B or Llama-2-13B and random Q4_K
// weights, for measuring load time, peak RSS, prefill and decode on models of the seed papers' size
// (bench/scale_projection.sh runs ctrust's bench_engine and llama.cpp's llama-bench on it).
//   bench_scale 7b|13b OUT.gguf [--seed 0] [--json]
// Shapes (Llama-2 config.json): 7B dim 4096, 32 layers, 32 heads, FFN 11008; 13B dim 5120, 40 layers, 40 heads,
// FFN 13824; vocab 32000, context 4096, RMS eps 1e-5, rope base 10000, untied output.
// Weights: every 2-D tensor (embedding and output included) is Q4_K; the norms are F32 ones. A Q4_K block
// (144 bytes) is f16 d, f16 dmin, 12 bytes of packed 6-bit scales/mins and 128 bytes of 4-bit quants: d is drawn
// from [2e-5, 8e-5] and dmin = 7.5 d * [0.8, 1.2] (so a weight d*sc*q - dmin*m has mean about 0 and magnitude
// about 0.02, like a trained layer's), the other 140 bytes are random (every bit pattern is a valid scale/quant).
// To keep memory small the writer draws one pool of 2^20 random blocks (151 MB) and each tensor is a window of
// it at a random block offset; the speed of the kernels does not depend on the values.
// Tokenizer: a minimal SentencePiece ("llama") vocabulary of 32000 entries: <unk>, <s>, </s>, the 256 byte tokens
// <0x00>..<0xFF> (llama.cpp looks up <0x0A> at load) and "▁w<i>" pieces; enough for both loaders, not for text.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench_util.h"
#include "io/gguf.h"

using namespace ctrust;
using namespace ctrust::bench;

namespace {

struct Shape {
  const char* name;
  int dim, n_layers, n_heads, ffn;
};
constexpr int kVocab = 32000, kCtx = 4096;
constexpr size_t kQ4KBlock = 144;
constexpr int64_t kPoolBlocks = int64_t(1) << 20;

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) {
      std::fprintf(stderr, "usage: %s 7b|13b OUT.gguf [--seed N] [--json]\n", argv[0]);
      return 2;
    }
    const std::string which = argv[1], out = argv[2];
    uint64_t seed = 0;
    bool json = false;
    for (int i = 3; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--json") json = true;
      else if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
      else fail("unknown option {}", a);
    }
    Shape s;
    if (which == "7b") s = {"Llama-2-7B-shaped (random Q4_K)", 4096, 32, 32, 11008};
    else if (which == "13b") s = {"Llama-2-13B-shaped (random Q4_K)", 5120, 40, 40, 13824};
    else fail("unknown shape '{}' (7b or 13b)", which);

    const double t0 = now();
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> pool((size_t)kPoolBlocks * kQ4KBlock);
    std::uniform_real_distribution<float> ud(2e-5f, 8e-5f), um(0.8f, 1.2f);
    for (int64_t b = 0; b < kPoolBlocks; ++b) {
      uint8_t* blk = pool.data() + (size_t)b * kQ4KBlock;
      const float d = ud(rng);
      const uint16_t hd = ggml_fp32_to_fp16(d), hm = ggml_fp32_to_fp16(7.5f * d * um(rng));
      std::memcpy(blk, &hd, 2);
      std::memcpy(blk + 2, &hm, 2);
      for (size_t i = 4; i < kQ4KBlock; i += 8) {
        const uint64_t r = rng();
        std::memcpy(blk + i, &r, std::min<size_t>(8, kQ4KBlock - i));
      }
    }
    std::vector<float> ones((size_t)s.dim, 1.0f);
    std::vector<GgufWriteTensor> tensors;
    int64_t n_params = 0;
    auto q4k = [&](const std::string& name, int64_t in, int64_t rows) {
      const int64_t nb = in * rows / 256;
      if (nb > kPoolBlocks) fail("tensor {} needs {} blocks, more than the pool's {}", name, nb, kPoolBlocks);
      const int64_t off = std::uniform_int_distribution<int64_t>(0, kPoolBlocks - nb)(rng);
      tensors.push_back({name, {in, rows}, GgmlType::Q4_K, nullptr, pool.data() + (size_t)off * kQ4KBlock});
      n_params += in * rows;
    };
    auto norm = [&](const std::string& name) {
      tensors.push_back({name, {s.dim}, GgmlType::F32, ones.data(), nullptr});
      n_params += s.dim;
    };
    q4k("token_embd.weight", s.dim, kVocab);
    for (int l = 0; l < s.n_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      norm(p + "attn_norm.weight");
      q4k(p + "attn_q.weight", s.dim, s.dim);
      q4k(p + "attn_k.weight", s.dim, s.dim);
      q4k(p + "attn_v.weight", s.dim, s.dim);
      q4k(p + "attn_output.weight", s.dim, s.dim);
      norm(p + "ffn_norm.weight");
      q4k(p + "ffn_gate.weight", s.dim, s.ffn);
      q4k(p + "ffn_up.weight", s.dim, s.ffn);
      q4k(p + "ffn_down.weight", s.ffn, s.dim);
    }
    norm("output_norm.weight");
    q4k("output.weight", s.dim, kVocab);

    std::vector<std::string> toks;
    std::vector<float> scores;
    std::vector<int32_t> types;
    toks.reserve(kVocab);
    for (const char* sp : {"<unk>", "<s>", "</s>"}) toks.push_back(sp);
    types = {2, 3, 3};  // UNKNOWN, CONTROL, CONTROL
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      toks.push_back(buf);
      types.push_back(6);  // BYTE
    }
    while ((int)toks.size() < kVocab) {
      toks.push_back("\xE2\x96\x81w" + std::to_string(toks.size()));
      types.push_back(1);  // NORMAL
    }
    scores.resize(kVocab, 0.0f);
    for (int i = 259; i < kVocab; ++i) scores[i] = -(float)i;
    const std::string a = "llama";
    std::vector<GgufKV> kv = {
        {"general.architecture", GgufValue::str(a)},
        {"general.name", GgufValue::str(s.name)},
        {"general.file_type", GgufValue::u32(15)},  // LLAMA_FTYPE_MOSTLY_Q4_K_M (closest label)
        {a + ".context_length", GgufValue::u32(kCtx)},
        {a + ".embedding_length", GgufValue::u32(s.dim)},
        {a + ".block_count", GgufValue::u32(s.n_layers)},
        {a + ".feed_forward_length", GgufValue::u32(s.ffn)},
        {a + ".rope.dimension_count", GgufValue::u32(s.dim / s.n_heads)},
        {a + ".attention.head_count", GgufValue::u32(s.n_heads)},
        {a + ".attention.head_count_kv", GgufValue::u32(s.n_heads)},
        {a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(1e-5f)},
        {a + ".rope.freq_base", GgufValue::f32(10000.0f)},
        {a + ".vocab_size", GgufValue::u32(kVocab)},
        {"tokenizer.ggml.model", GgufValue::str("llama")},
        {"tokenizer.ggml.tokens", GgufValue::str_array(toks)},
        {"tokenizer.ggml.scores", GgufValue::f32_array(scores)},
        {"tokenizer.ggml.token_type", GgufValue::i32_array(types)},
        {"tokenizer.ggml.bos_token_id", GgufValue::u32(1)},
        {"tokenizer.ggml.eos_token_id", GgufValue::u32(2)},
        {"tokenizer.ggml.unknown_token_id", GgufValue::u32(0)},
        {"tokenizer.ggml.add_bos_token", GgufValue::boolean(true)},
        {"tokenizer.ggml.add_eos_token", GgufValue::boolean(false)},
    };
    std::fprintf(stderr, "[bench_scale] writing %s: %s, %.2f B parameters\n", out.c_str(), s.name, n_params / 1e9);
    write_gguf(out, kv, tensors);
    const double secs = now() - t0;
    if (json)
      std::printf("{\"path\":\"%s\",\"shape\":\"%s\",\"params\":%lld,\"seconds\":%.1f}\n", out.c_str(), which.c_str(),
                  (long long)n_params, secs);
    else
      std::printf("wrote %s (%s, %lld parameters) in %.1f s\n", out.c_str(), s.name, (long long)n_params, secs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctrust: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
