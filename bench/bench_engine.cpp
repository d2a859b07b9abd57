// Engine speed: prefill tokens/s (one forward of a P-token prompt, last logits only) and decode tokens/s
// (G greedy steps through the KV cache), at each thread count; peak RSS.
//   bench_engine MODEL [--tok TOKENIZER.bin] [--prompt 512] [--gen 128] [--threads 1,2] [--reps 2]
//                [--compute native|f32] [--isa ref|avx2|avx512] [--json]
// --json: one JSON object on stdout instead of the table (load_s, rss, and per thread count prefill/decode tok/s).
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench_util.h"
#include "model/model.h"
#include "ops/linear.h"
#include "ops/qmatmul.h"

using namespace ctrust;
using namespace ctrust::bench;


int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--tok TOKENIZER] [--prompt N] [--gen N] [--threads 1,2] [--reps N]\n",
                 argv[0]);
    return 2;
  }
  std::string path = argv[1];
  LoadOptions lo;
  int n_prompt = 512, n_gen = 128, reps = 2;
  std::vector<int> threads{1, 2};
  std::string isa;
  bool json = false;
  for (int i = 2; i < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--json") {
      json = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "option %s needs a value\n", a.c_str());
      return 2;
    }
    std::string v = argv[i + 1];
    if (a == "--tok") lo.tokenizer_path = v;
    else if (a == "--prompt") n_prompt = std::atoi(v.c_str());
    else if (a == "--gen") n_gen = std::atoi(v.c_str());
    else if (a == "--reps") reps = std::atoi(v.c_str());
    else if (a == "--compute") lo.compute = compute_mode_from_name(v);
    else if (a == "--isa") isa = v;
    else if (a == "--threads") {
      threads.clear();
      std::stringstream ss(v);
      for (std::string t; std::getline(ss, t, ',');) threads.push_back(std::atoi(t.c_str()));
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    if (isa == "ref") set_kernel_isa(KernelIsa::Ref);
    else if (isa == "avx2") set_kernel_isa(KernelIsa::Avx2);
    else if (isa == "avx512") set_kernel_isa(KernelIsa::Avx512);
    else if (!isa.empty()) fail("unknown --isa {}", isa);
    const double rss0 = peak_rss_mb();
    double t0 = now();
    auto m = open_model(path, lo);
    const double t_load = now() - t0;
    double f32_mb = 0;
    for (const auto& [name, t] : m->file.tensors) f32_mb += t.numel() * 4.0 / (1 << 20);
    const double rss_load = peak_rss_mb();
    const int n_ctx = std::min(m->cfg.n_ctx, n_prompt + n_gen);
    n_prompt = std::min(n_prompt, n_ctx - 1);
    n_gen = n_ctx - n_prompt;
    std::vector<int32_t> prompt(n_prompt);
    for (int i = 0; i < n_prompt; ++i) prompt[i] = (int32_t)((i * 7919LL + 13) % m->cfg.n_vocab);
    if (m->tok.bos() >= 0) prompt[0] = m->tok.bos();
    if (!json) std::printf("model %s: %d layers, dim %d, vocab %d; load %.2f s; f32 weights %.1f MB; compute %s, kernels %s, "
                           "OpenBLAS core %s\n",
                path.c_str(), m->cfg.n_layers, m->cfg.dim, m->cfg.n_vocab, t_load, f32_mb,
                compute_mode_name(compute_mode(*m)), kernel_isa_name(kernel_isa()), blas_core_name());
    if (!json) std::printf("%-8s %-22s %-22s\n", "threads", "prefill tok/s", "decode tok/s");
    std::string rows;
    KVCache cache = make_cache(*m, n_ctx);
    ForwardState st;  // the activations, kept across the runs as a generator keeps them
    std::vector<float> logits(m->cfg.n_vocab);
    ForwardOptions last;
    last.all_logits = false;
    for (int nt : threads) {
      omp_set_num_threads(nt);
      double best_p = 0, best_d = 0;
      for (int r = 0; r < reps; ++r) {
        cache.n_past = 0;
        t0 = now();
        forward(*m, st, cache, prompt.data(), n_prompt, logits.data(), last);
        best_p = std::max(best_p, n_prompt / (now() - t0));
        t0 = now();
        for (int g = 0; g < n_gen; ++g) {
          int32_t tok = (int32_t)(std::max_element(logits.begin(), logits.end()) - logits.begin());
          forward(*m, st, cache, &tok, 1, logits.data(), last);
        }
        best_d = std::max(best_d, n_gen / (now() - t0));
      }
      if (!json)
        std::printf("%-8d %-22.1f %-22.1f (prompt %d, gen %d, best of %d)\n", nt, best_p, best_d, n_prompt, n_gen,
                    reps);
      char buf[256];
      std::snprintf(buf, sizeof buf, "%s{\"threads\":%d,\"prefill_tok_s\":%.4g,\"decode_tok_s\":%.4g}",
                    rows.empty() ? "" : ",", nt, best_p, best_d);
      rows += buf;
    }
    const double rss = peak_rss_mb();
    const double file_mb =
        std::filesystem::is_regular_file(path) ? (double)std::filesystem::file_size(path) / (1 << 20) : 0.0;
    if (json) {
      std::printf("{\"model\":\"%s\",\"compute\":\"%s\",\"kernels\":\"%s\",\"blas_core\":\"%s\",\"prompt\":%d,\"gen\":%d,\"reps\":%d,"
                  "\"load_s\":%.3f,\"rss_after_load_mb\":%.1f,\"peak_rss_mb\":%.1f,\"file_mb\":%.1f,\"rows\":[%s]}\n",
                  path.c_str(), compute_mode_name(compute_mode(*m)), kernel_isa_name(kernel_isa()), blas_core_name(), n_prompt, n_gen,
                  reps, t_load, rss_load, rss, file_mb, rows.c_str());
      return 0;
    }
    std::printf("peak RSS: %.1f MB after load, %.1f MB at the end (%.2fx the f32 weights, %.2fx the %.1f MB file; "
                "KV cache %.1f MB; %.1f MB before load)\n",
                rss_load, rss, rss / f32_mb, rss / file_mb, file_mb,
                (cache.k.size() + cache.v.size()) * 4.0 / (1 << 20), rss0);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_engine: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
