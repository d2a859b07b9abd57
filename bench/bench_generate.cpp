// Generation speed: generated tokens/s of plain generate() (one prompt after the other) against batched
// decoding (model/batch.h) at each batch size, greedy, on the same prompts; peak RSS after each mode.
// Every sequence generates exactly --gen tokens (EOS is not a stop), so the modes do the same work; the time
// includes the prompts' prefill. The batched outputs are checked against the plain ones.
//   bench_generate MODEL [--tok TOKENIZER.bin] [--prompts 16] [--gen 64] [--batch 1,8] [--threads 1] [--reps 1]
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench_util.h"
#include "model/batch.h"
#include "model/model.h"

using namespace ctrust;
using namespace ctrust::bench;

static std::vector<int> int_list(const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  for (std::string t; std::getline(ss, t, ',');) out.push_back(std::atoi(t.c_str()));
  return out;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--tok TOKENIZER] [--prompts N] [--gen N] [--batch 1,8] [--threads 1] "
                         "[--reps N]\n", argv[0]);
    return 2;
  }
  std::string path = argv[1];
  LoadOptions lo;
  int n_prompts = 16, n_gen = 64, reps = 1, threads = 1;
  std::vector<int> batches{1, 8};
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--tok") lo.tokenizer_path = v;
    else if (a == "--prompts") n_prompts = std::atoi(v.c_str());
    else if (a == "--gen") n_gen = std::atoi(v.c_str());
    else if (a == "--reps") reps = std::atoi(v.c_str());
    else if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--batch") batches = int_list(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    omp_set_num_threads(threads);
    auto m = open_model(path, lo);
    // Prompts of different lengths (about 10 to 120 tokens): a sentence repeated 1..n times.
    const std::string base = "Please answer the question about the following short story. Once upon a time a "
                             "little girl found a shiny stone in the garden. ";
    std::vector<GenRequest> reqs;
    int64_t prompt_tokens = 0;
    for (int i = 0; i < n_prompts; ++i) {
      std::string text;
      for (int r = 0; r <= i % 5; ++r) text += base;
      text += "Question " + std::to_string(i) + ":";
      GenRequest q;
      q.prompt = m->tok.encode(text, true, false);
      if ((int)q.prompt.size() + n_gen > m->cfg.n_ctx) q.prompt.resize(std::max(1, m->cfg.n_ctx - n_gen));
      q.opt.max_tokens = n_gen;
      q.opt.stop_at_eos = false;
      prompt_tokens += (int64_t)q.prompt.size();
      reqs.push_back(q);
    }
    std::printf("model %s: %d layers, dim %d, vocab %d; %d prompts (%lld prompt tokens), %d tokens each, %d thread(s)\n",
                path.c_str(), m->cfg.n_layers, m->cfg.dim, m->cfg.n_vocab, n_prompts, (long long)prompt_tokens, n_gen,
                threads);
    std::printf("%-14s %-16s %-12s %-14s %s\n", "mode", "generated tok/s", "seconds", "peak RSS MB", "same tokens");
    std::vector<std::vector<int32_t>> plain;
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      plain.clear();
      const double t0 = now();
      for (const auto& q : reqs) plain.push_back(generate(*m, q.prompt, q.opt));
      best = std::min(best, now() - t0);
    }
    int64_t gen_tokens = 0;
    for (const auto& p : plain) gen_tokens += (int64_t)p.size();
    std::printf("%-14s %-16.1f %-12.2f %-14.1f %s\n", "generate", gen_tokens / best, best, peak_rss_mb(), "-");
    for (int b : batches) {
      BatchOptions bo;
      bo.max_batch = b;
      std::vector<std::vector<std::vector<int32_t>>> out;
      best = 1e30;
      for (int r = 0; r < reps; ++r) {
        const double t0 = now();
        out = generate_batch(*m, reqs, bo);
        best = std::min(best, now() - t0);
      }
      int same = 0;
      for (size_t i = 0; i < reqs.size(); ++i) same += out[i][0] == plain[i];
      std::printf("%-14s %-16.1f %-12.2f %-14.1f %d/%zu\n", ("batch " + std::to_string(b)).c_str(),
                  gen_tokens / best, best, peak_rss_mb(), same, reqs.size());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_generate: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
