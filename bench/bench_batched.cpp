// Batched generation throughput in llama-batched-bench's terms, for the side-by-side script
// (bench/vs_llamacpp.sh). For each batch size B: B sequences, each a PP-token prompt and TG generated tokens.
//   forward_batch  exactly llama-batched-bench's workload (tools/batched-bench/batched-bench.cpp): the B prompts
//                  in one batched prefill (last logits only), then TG steps that append one token to every
//                  sequence (forward_batch, model/batch.h); reports T_PP, S_PP = B*PP/T_PP, T_TG,
//                  S_TG = B*TG/T_TG and S = B*(PP+TG)/(T_PP+T_TG), llama-batched-bench's columns.
//   generate_batch the same B prompts through generate_batch() (greedy, EOS not a stop, max_batch = B): what
//                  `ctrust generate`/`trust` run; reports generated tok/s = B*TG / wall time (prefill included).
// Prompts: distinct token sequences (as llama-batched-bench without -pps, each sequence its own prompt).
//   bench_batched MODEL [--pp 128] [--tg 32] [--batch 8,32,64] [--threads 2] [--reps 1] [--compute native|f32]
//                 [--json]    (default compute: native, as `ctrust generate`/`trust`)
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench_util.h"
#include "model/batch.h"
#include "model/model.h"
#include "ops/linear.h"

using namespace ctrust;
using namespace ctrust::bench;

static std::vector<int> int_list(const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  for (std::string t; std::getline(ss, t, ',');) {
    const int x = std::atoi(t.c_str());
    if (x <= 0) fail("bad list entry '{}' in '{}' (positive integers separated by commas)", t, v);
    out.push_back(x);
  }
  return out;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--pp 128] [--tg 32] [--batch 8,32,64] [--threads 2] [--reps 1] "
                         "[--compute native|f32] [--json]\n", argv[0]);
    return 2;
  }
  try {
    std::string path = argv[1];
    LoadOptions lo;
    lo.compute = ComputeMode::Native;  // what `ctrust generate` and `trust` use
    int pp = 128, tg = 32, reps = 1, threads = 2;
    bool json = false;
    std::vector<int> batches{8, 32, 64};
    for (int i = 2; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--json") { json = true; continue; }
      if (i + 1 >= argc) fail("option {} needs a value", a);
      std::string v = argv[++i];
      if (a == "--pp") pp = std::atoi(v.c_str());
      else if (a == "--tg") tg = std::atoi(v.c_str());
      else if (a == "--reps") reps = std::atoi(v.c_str());
      else if (a == "--threads") threads = std::atoi(v.c_str());
      else if (a == "--batch") batches = int_list(v);
      else if (a == "--compute") lo.compute = compute_mode_from_name(v);
      else fail("unknown option {}", a);
    }
    if (pp < 1 || tg < 1 || reps < 1 || threads < 1) fail("--pp, --tg, --reps and --threads must be positive");
    omp_set_num_threads(threads);
    const double t_load0 = now();
    auto m = open_model(path, lo);
    const double t_load = now() - t_load0;
    if (pp + tg > m->cfg.n_ctx) fail("--pp {} + --tg {} exceed the model's context {}", pp, tg, m->cfg.n_ctx);
    const int n_vocab = m->cfg.n_vocab;
    // Sequence b's prompt: a deterministic pseudo-random token walk (distinct per sequence), BOS first.
    auto prompt_of = [&](int b) {
      std::vector<int32_t> p(pp);
      for (int i = 0; i < pp; ++i) p[i] = (int32_t)(((int64_t)(b + 1) * 104729 + (int64_t)i * 7919 + 13) % n_vocab);
      if (m->tok.bos() >= 0) p[0] = m->tok.bos();
      return p;
    };
    if (!json)
      std::printf("model %s: %d layers, dim %d, vocab %d; load %.2f s; compute %s (OpenBLAS core %s); PP %d, TG %d, "
                  "%d thread(s), best of %d\n", path.c_str(), m->cfg.n_layers, m->cfg.dim, n_vocab, t_load,
                  compute_mode_name(compute_mode(*m)), blas_core_name(), pp, tg, threads, reps);
    if (!json)
      std::printf("%-6s %-10s %-10s %-10s %-10s %-10s %-14s %-14s\n", "B", "T_PP s", "S_PP t/s", "T_TG s",
                  "S_TG t/s", "S t/s", "gen_batch t/s", "peak RSS MB");
    std::string rows;
    for (int B : batches) {
      std::vector<std::vector<int32_t>> prompts;
      for (int b = 0; b < B; ++b) prompts.push_back(prompt_of(b));
      double best_pp = 1e30, best_tg = 1e30, best_gen = 1e30;
      ForwardState st;  // the activations of forward_batch, kept across the runs
      for (int r = 0; r < reps; ++r) {
        // forward_batch: llama-batched-bench's loop.
        std::vector<KVCache> caches;
        caches.reserve(B);
        for (int b = 0; b < B; ++b) caches.push_back(make_cache(*m, pp + tg));
        std::vector<BatchSeq> seqs(B);
        for (int b = 0; b < B; ++b) seqs[b] = {&caches[b], prompts[b].data(), pp, false};
        std::vector<float> logits((size_t)B * n_vocab);
        double t0 = now();
        forward_batch(*m, st, seqs, logits.data());
        best_pp = std::min(best_pp, now() - t0);
        std::vector<int32_t> next(B);
        t0 = now();
        for (int s = 0; s < tg; ++s) {
          for (int b = 0; b < B; ++b) {
            const float* row = logits.data() + (size_t)b * n_vocab;
            next[b] = (int32_t)(std::max_element(row, row + n_vocab) - row);
            seqs[b] = {&caches[b], &next[b], 1, false};
          }
          forward_batch(*m, st, seqs, logits.data());
        }
        best_tg = std::min(best_tg, now() - t0);
        caches.clear();
        caches.shrink_to_fit();
        // generate_batch: what ctrust's commands run.
        std::vector<GenRequest> reqs(B);
        for (int b = 0; b < B; ++b) {
          reqs[b].prompt = prompts[b];
          reqs[b].opt.max_tokens = tg;
          reqs[b].opt.stop_at_eos = false;
        }
        BatchOptions bo;
        bo.max_batch = B;
        t0 = now();
        auto out = generate_batch(*m, reqs, bo);
        best_gen = std::min(best_gen, now() - t0);
        for (const auto& o : out)
          if (o.size() != 1 || (int)o[0].size() != tg)
            fail("generate_batch returned {} tokens instead of {}", o.empty() ? 0 : o[0].size(), tg);
      }
      const double s_pp = B * (double)pp / best_pp, s_tg = B * (double)tg / best_tg;
      const double s_all = B * (double)(pp + tg) / (best_pp + best_tg), s_gen = B * (double)tg / best_gen;
      const double rss = peak_rss_mb();
      if (!json) {
        std::printf("%-6d %-10.2f %-10.1f %-10.2f %-10.1f %-10.1f %-14.1f %-14.1f\n", B, best_pp, s_pp, best_tg, s_tg,
                    s_all, s_gen, rss);
        std::fflush(stdout);
      } else {
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "%s{\"batch\":%d,\"pp\":%d,\"tg\":%d,\"t_pp\":%.4f,\"s_pp\":%.4g,\"t_tg\":%.4f,\"s_tg\":%.4g,"
                      "\"s\":%.4g,\"t_generate_batch\":%.4f,\"s_generate_batch\":%.4g,\"peak_rss_mb\":%.1f}",
                      rows.empty() ? "" : ",", B, pp, tg, best_pp, s_pp, best_tg, s_tg, s_all, best_gen, s_gen, rss);
        rows += buf;
      }
    }
    if (json)
      std::printf("{\"model\":\"%s\",\"compute\":\"%s\",\"blas_core\":\"%s\",\"threads\":%d,\"load_s\":%.3f,\"rows\":[%s]}\n",
                  path.c_str(), compute_mode_name(compute_mode(*m)), blas_core_name(), threads, t_load, rows.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "ctrust: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
