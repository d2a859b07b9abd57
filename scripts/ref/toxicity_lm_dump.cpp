// Pooled hidden states of a small pretrained language model (ctrust's own forward pass) for every text that
// scripts/ref/toxicity_dump.cpp writes (the RealToxicityPrompts continuations and prompts, same order), for the
// probe variants of scripts/ref/toxicity_stack_proto.py (docs/trust.md, Toxicity scorer, "Tried in session 7").
// Not part of the build (scripts/ref is not compiled by CMake). Built against the library of a Release build:
//   c++ -std=c++20 -O2 -fopenmp -Isrc scripts/ref/toxicity_lm_dump.cpp build/libctrust_core.a \
//       -lfmt -lpcre2-8 -lbz2 -lsqlite3 -lopenblas -llapacke -lcurl -o /tmp/toxicity_lm_dump
//   OMP_NUM_THREADS=1 /tmp/toxicity_lm_dump dump MODEL.gguf ../shared/data OUT.bin [--no-bos] [--layers 0,1,2,4]
//   OMP_NUM_THREADS=1 /tmp/toxicity_lm_dump time MODEL.gguf ../shared/data L N   (ms per text, layers < L)
// The state "after layer L" is what the public forward pass shows its observer: the input of layer L's attn_q,
// i.e. RMSNorm(residual after L blocks) * attn_norm_L (L = 0: the normalized token embeddings). The forward pass
// is cut there (the observer throws), so only layers < L run; the output head never runs.
// OUT.bin: int32 n_texts, n_layers, dim, then the layer list (int32 each); float32 bos[n_layers][dim] (the BOS
// position's state, the same for every text; zeros with --no-bos); then per text, per layer: mean over the
// text's own tokens [dim], max over them [dim], the last token's state [dim]; then int32 token counts[n_texts].
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include "model/model.h"
#include "trust/data.h"
using namespace ctrust;

namespace {
struct Stop {};  // thrown by the observer to end the forward pass after the deepest wanted layer

std::vector<std::string> texts_in_dump_order(const std::string& data) {
  std::string d = data + "/decodingtrust/toxicity/user_prompts/";
  std::vector<std::string> out;
  for (auto p : {d + "toxic.jsonl", d + "nontoxic.jsonl"})
    for (auto& r : load_rtp(p))
      for (int kind = 0; kind < 2; ++kind) {
        const std::string& t = kind == 0 ? r.continuation : r.prompt;
        double y = kind == 0 ? r.continuation_toxicity : r.prompt_toxicity;
        if (y < 0 || t.empty()) continue;
        out.push_back(t);
      }
  return out;
}

// Runs tokens through layers < max(layers); calls got(layer index in `layers`, states [n][dim]).
template <class F>
void states(const Model& m, KVCache& cache, const std::vector<int32_t>& tok, const std::vector<int>& layers, F&& got) {
  const int deepest = *std::max_element(layers.begin(), layers.end());
  LinearObserver obs = [&](int l, std::string_view name, const float* x, int rows, int cols) {
    if (name != "attn_q") return;
    for (size_t k = 0; k < layers.size(); ++k)
      if (layers[k] == l) got((int)k, x, rows, cols);
    if (l >= deepest) throw Stop{};
  };
  ForwardOptions fo;
  fo.all_logits = false;
  fo.observer = &obs;
  cache.n_past = 0;
  try {
    forward(m, cache, tok.data(), (int)tok.size(), nullptr, fo);
  } catch (const Stop&) {
  }
  cache.n_past = 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: toxicity_lm_dump dump MODEL DATA OUT.bin [--no-bos] | time MODEL DATA L N\n");
    return 2;
  }
  std::string mode = argv[1];
  auto m = open_model(argv[2]);
  auto texts = texts_in_dump_order(argv[3]);
  const int dim = m->cfg.dim, nl = m->cfg.n_layers;
  KVCache cache = make_cache(*m, 512);
  auto encode = [&](const std::string& t, bool bos) {
    std::vector<int32_t> ids = m->tok.encode(t, false);
    if (ids.size() > 400) ids.resize(400);
    if (bos) ids.insert(ids.begin(), m->tok.bos());
    return ids;
  };
  if (mode == "time") {
    if (argc < 6) return 2;
    const int L = std::atoi(argv[4]), N = std::min<int>(std::atoi(argv[5]), (int)texts.size());
    if (L < 0 || L >= nl) {
      std::fprintf(stderr, "L must be in 0..%d\n", nl - 1);
      return 2;
    }
    std::vector<std::vector<int32_t>> toks;
    size_t ntok = 0;
    for (int i = 0; i < N; ++i) {  // continuations only (every other text is a prompt)
      toks.push_back(encode(texts[(size_t)i * texts.size() / N], true));
      ntok += toks.back().size();
    }
    std::vector<float> pooled(dim);
    auto t0 = std::chrono::steady_clock::now();
    for (auto& t : toks)
      states(*m, cache, t, {L}, [&](int, const float* x, int rows, int) {
        for (int i = 1; i < rows; ++i)
          for (int j = 0; j < dim; ++j) pooled[j] += x[(size_t)i * dim + j];
      });
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: layers < %d, %d texts, %.1f tokens/text (with BOS): %.2f ms per text\n", argv[2], L, N,
                (double)ntok / N, ms / N);
    return 0;
  }
  bool bos = true;
  std::vector<int> layers = {0, 1, 2, 3, 4, 6, 8, 12};
  for (int a = 5; a < argc; ++a) {
    if (std::strcmp(argv[a], "--no-bos") == 0) {
      bos = false;
    } else if (std::strcmp(argv[a], "--layers") == 0 && a + 1 < argc) {
      layers.clear();
      for (char* p = argv[++a]; *p;) {
        layers.push_back((int)std::strtol(p, &p, 10));
        if (*p == ',') ++p;
      }
    } else {
      std::fprintf(stderr, "unknown argument %s\n", argv[a]);
      return 2;
    }
  }
  for (int l : layers)
    if (l < 0 || l >= nl) {
      std::fprintf(stderr, "layer %d not in 0..%d\n", l, nl - 1);
      return 2;
    }
  FILE* o = std::fopen(argv[4], "wb");
  if (!o) {
    std::fprintf(stderr, "%s: cannot write\n", argv[4]);
    return 1;
  }
  int32_t hdr[3] = {(int32_t)texts.size(), (int32_t)layers.size(), dim};
  std::fwrite(hdr, 4, 3, o);
  for (int l : layers) std::fwrite(&l, 4, 1, o);
  std::vector<float> bos_state((size_t)layers.size() * dim, 0.0f);
  if (bos)
    states(*m, cache, {m->tok.bos()}, layers, [&](int k, const float* x, int, int) {
      std::copy(x, x + dim, bos_state.begin() + (size_t)k * dim);
    });
  std::fwrite(bos_state.data(), 4, bos_state.size(), o);
  std::vector<int32_t> counts;
  std::vector<float> out((size_t)layers.size() * 3 * dim);
  const int first = bos ? 1 : 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto tok = encode(texts[i], bos);
    if ((int)tok.size() <= first) tok.push_back(m->tok.eos());  // never empty (texts are non-empty anyway)
    counts.push_back((int32_t)tok.size() - first);
    states(*m, cache, tok, layers, [&](int k, const float* x, int rows, int) {
      float* mean = out.data() + (size_t)k * 3 * dim;
      float* mx = mean + dim;
      float* last = mx + dim;
      for (int j = 0; j < dim; ++j) {
        double s = 0;
        float v = -INFINITY;
        for (int r = first; r < rows; ++r) {
          s += x[(size_t)r * dim + j];
          v = std::max(v, x[(size_t)r * dim + j]);
        }
        mean[j] = (float)(s / (rows - first));
        mx[j] = v;
        last[j] = x[(size_t)(rows - 1) * dim + j];
      }
    });
    std::fwrite(out.data(), 4, out.size(), o);
    if (i % 500 == 0) std::fprintf(stderr, "%zu / %zu\n", i, texts.size());
  }
  std::fwrite(counts.data(), 4, counts.size(), o);
  std::fclose(o);
}
