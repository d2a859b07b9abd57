// Decode attention kernels at one query row (attention()'s n <= 2 path), single-threaded, per ISA: the grouped
// scores (attention_scores_heads_isa), softmax of the group's rows (softmax_rows_isa: the vector expf, the rows' sums interleaved), the grouped weighted sum
// (attention_weighted_sum_heads_isa), and attention() itself (one decode row, all kv heads; it takes
// kernel_isa(), set per ISA here). Default shape: SmolLM2-135M (9 query heads over 3 kv heads, head size 64).
// "main" is the combination main had before the AVX-512 kernels (AVX2 scores and weighted sum, scalar-expf softmax).
// Reports the best of REPS of the thread's CPU time (leaves out the time other processes held the core) per call,
// each repetition timing ITERS calls; every ISA's outputs are compared with the Ref ones (must be identical).
//   bench_attention [CTX=64,256,1024] [REPS=7] [ISAS=ref,avx2,avx512] [HEADS=9] [KV_HEADS=3] [HEAD_DIM=64]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ops/attention.h"
#include "ops/ops.h"
#include "ops/qmatmul.h"
#include "ops/vexp.h"

using namespace ctrust;

namespace {
std::vector<int> ints(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) v.push_back(std::atoi(t.c_str()));
  return v;
}
double thread_cpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
// Best of reps, each timing iters calls of f: microseconds per call.
double best_us(int reps, int iters, const std::function<void()>& f) {
  double best = 1e30;
  f();
  for (int r = 0; r < reps; ++r) {
    const double t0 = thread_cpu();
    for (int i = 0; i < iters; ++i) f();
    best = std::min(best, (thread_cpu() - t0) / iters);
  }
  return best * 1e6;
}
}  // namespace

int main(int argc, char** argv) {
  const std::vector<int> ctxs = ints(argc > 1 ? argv[1] : "64,256,1024");
  const int reps = argc > 2 ? std::atoi(argv[2]) : 7;
  std::vector<KernelIsa> isas;
  {
    std::stringstream ss(argc > 3 ? argv[3] : "ref,avx2,avx512");
    for (std::string s; std::getline(ss, s, ',');)
      isas.push_back(s == "ref" ? KernelIsa::Ref : s == "avx2" ? KernelIsa::Avx2 : KernelIsa::Avx512);
  }
  const int nh = argc > 4 ? std::atoi(argv[4]) : 9, nkv = argc > 5 ? std::atoi(argv[5]) : 3,
            hd = argc > 6 ? std::atoi(argv[6]) : 64;
  const int group = nh / nkv, kvd = nkv * hd, qd = nh * hd;
  const float scale = 1.0f / std::sqrt((float)hd);
  std::printf("decode attention kernels, %d heads over %d kv heads, head size %d; us per call, best of %d (thread "
              "CPU time); the per-kv-head kernels are timed on kv head 0 (group %d)\n",
              nh, nkv, hd, reps, group);
  std::printf("%6s %-12s %10s %10s %10s %10s %10s\n", "ctx", "kernels", "scores", "softmax*g", "wsum", "decode",
              "identical");
  // The rows: each ISA's three kernels, and "main" = the kernels of main before this change (AVX2 scores and
  // weighted sum, softmax with the C library's scalar expf = softmax_ref).
  struct Row {
    const char* name;
    KernelIsa sc, sm, ws;
  };
  std::vector<Row> rows;
  for (KernelIsa isa : isas)
    if (cpu_has_isa(isa)) rows.push_back({kernel_isa_name(isa), isa, isa, isa});
  rows.push_back({"main", KernelIsa::Avx2, KernelIsa::Ref, KernelIsa::Avx2});
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int ctx : ctxs) {
    std::vector<float> q(qd), k((size_t)ctx * kvd), v((size_t)ctx * kvd);
    for (auto& x : q) x = 2.0f * nd(rng);
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    const int iters = std::max(1, 200000 / ctx);
    std::vector<float> s0, p0, o0, a0;
    for (const Row& row : rows) {
      std::vector<float> s((size_t)group * ctx), p((size_t)group * ctx), o((size_t)group * hd), a(qd);
      const double t_s = best_us(reps, iters, [&] {
        attention_scores_heads_isa(q.data(), hd, group, k.data(), kvd, hd, 0, ctx, scale, s.data(), ctx, row.sc);
      });
      // softmax of the group's rows (from the scores each time: the copy is timed too, the same for every row)
      const double t_p = best_us(reps, iters, [&] {
        std::memcpy(p.data(), s.data(), sizeof(float) * p.size());
        softmax_rows_isa(p.data(), ctx, group, ctx, row.sm);
      });
      const double t_w = best_us(reps, iters, [&] {
        attention_weighted_sum_heads_isa(p.data(), ctx, group, v.data(), kvd, hd, 0, ctx, o.data(), hd, row.ws);
      });
      // One decode row over all kv heads, as attention()'s n <= 2 loop does it (one thread).
      std::vector<float> S((size_t)group * ctx);
      const double t_d = best_us(reps, std::max(1, iters / nkv), [&] {
        for (int g = 0; g < nkv; ++g) {
          attention_scores_heads_isa(q.data() + (size_t)g * group * hd, hd, group, k.data() + (size_t)g * hd, kvd,
                                     hd, 0, ctx, scale, S.data(), ctx, row.sc);
          softmax_rows_isa(S.data(), ctx, group, ctx, row.sm);
          attention_weighted_sum_heads_isa(S.data(), ctx, group, v.data() + (size_t)g * hd, kvd, hd, 0, ctx,
                                           a.data() + (size_t)g * group * hd, hd, row.ws);
        }
      });
      bool same = true;
      if (s0.empty()) {
        s0 = s, p0 = p, o0 = o, a0 = a;
      } else {
        same = std::memcmp(s.data(), s0.data(), sizeof(float) * s.size()) == 0 &&
               std::memcmp(p.data(), p0.data(), sizeof(float) * p.size()) == 0 &&
               std::memcmp(o.data(), o0.data(), sizeof(float) * o.size()) == 0 &&
               std::memcmp(a.data(), a0.data(), sizeof(float) * a.size()) == 0;
      }
      std::printf("%6d %-12s %10.2f %10.2f %10.2f %10.2f %10s\n", ctx, row.name, t_s, t_p, t_w, t_d,
                  same ? "yes" : "NO");
    }
    // attention() itself with the default ISA (kernel_isa()), one decode row
    std::vector<float> a(qd);
    const AttentionShape shape{nh, nkv, hd};
    const double t_a = best_us(reps, std::max(1, iters / nkv),
                               [&] { attention(shape, q.data(), k.data(), v.data(), kvd, ctx - 1, 1, a.data()); });
    std::printf("%6d %-12s %10s %10s %10s %10.2f %10s\n", ctx, "attention()", "", "", "", t_a,
                std::memcmp(a.data(), a0.data(), sizeof(float) * a.size()) == 0 ? "yes" : "NO");
    // attention() over caches that are not in any cache level: one K/V pair per call, cycling through copies
    // that together take >= 512 MB (the trust workers' decode: ~20 sequences x 30 layers of separate caches).
    {
      const size_t per = (size_t)ctx * kvd * 2;
      const int ncopy = (int)std::max<size_t>(2, ((size_t)512 << 20) / (per * 4));
      std::vector<float> big(per * ncopy);
      for (int c = 0; c < ncopy; ++c) {
        std::memcpy(big.data() + per * c, k.data(), sizeof(float) * k.size());
        std::memcpy(big.data() + per * c + k.size(), v.data(), sizeof(float) * v.size());
      }
      for (KernelIsa isa : {KernelIsa::Avx2, KernelIsa::Avx512}) {
        if (!cpu_has_isa(isa)) continue;
        set_kernel_isa(isa);
        int c = 0;
        const double t = best_us(reps, ncopy, [&] {
          const float* kc = big.data() + per * c;
          attention(shape, q.data(), kc, kc + k.size(), kvd, ctx - 1, 1, a.data());
          c = (c + 1) % ncopy;
        });
        std::printf("%6d %-12s %10s %10s %10s %10.2f %10s\n", ctx, isa == KernelIsa::Avx2 ? "cold avx2" : "cold avx512",
                    "", "", "", t, std::memcmp(a.data(), a0.data(), sizeof(float) * a.size()) == 0 ? "yes" : "NO");
      }
    }
  }
  // Decode rows of G sequences whose caches are copies of one prompt prefix (trust: the 25 samples of a prompt),
  // context ctx each, the prefix 3/4 of it: attention() row by row against attention_decode_shared (the prefix
  // read once for all rows), over caches in memory (sets of G caches cycling through >= 512 MB), default ISA.
  const int G = 25;
  std::printf("\n%d decode rows sharing a prefix of 3/4 of the context (caches in memory): us per row\n", G);
  std::printf("%6s %6s %14s %14s %10s\n", "ctx", "prefix", "attention()", "shared", "identical");
  for (int ctx : ctxs) {
    const int P = ctx * 3 / 4;
    const size_t per = (size_t)ctx * kvd;  // one cache's keys (or values)
    const int nset = (int)std::max<size_t>(2, ((size_t)512 << 20) / (per * 2 * G * 4));
    std::vector<float> kv(per * 2 * G * nset), qs((size_t)G * qd), o1((size_t)G * qd), o2((size_t)G * qd);
    for (auto& x : qs) x = 2.0f * nd(rng);
    std::vector<float> prefix((size_t)P * kvd * 2);
    for (auto& x : prefix) x = nd(rng);
    for (size_t i = 0; i < kv.size(); ++i) kv[i] = nd(rng);
    for (int c = 0; c < nset * G; ++c) {
      std::memcpy(kv.data() + per * 2 * c, prefix.data(), sizeof(float) * P * kvd);               // keys
      std::memcpy(kv.data() + per * (2 * c + 1), prefix.data() + (size_t)P * kvd, sizeof(float) * P * kvd);  // values
    }
    const AttentionShape shape{nh, nkv, hd};
    int set = 0;
    auto rows_of = [&](int st, std::vector<float>& out) {
      std::vector<DecodeRow> rows(G);
      for (int r = 0; r < G; ++r) {
        const float* kc = kv.data() + per * 2 * ((size_t)st * G + r);
        rows[r] = DecodeRow{qs.data() + (size_t)r * qd, kc, kc + per, ctx - 1 - (r % 7), out.data() + (size_t)r * qd};
      }
      return rows;
    };
    const double t1 = best_us(reps, nset, [&] {
      for (const DecodeRow& r : rows_of(set, o1)) attention(shape, r.q, r.k, r.v, kvd, r.pos, 1, r.out);
      set = (set + 1) % nset;
    });
    set = 0;
    const double t2 = best_us(reps, nset, [&] {
      const auto rows = rows_of(set, o2);
      attention_decode_shared(shape, rows.data(), G, kvd, P);
      set = (set + 1) % nset;
    });
    std::printf("%6d %6d %14.2f %14.2f %10s\n", ctx, P, t1 / G, t2 / G,
                std::memcmp(o1.data(), o2.data(), sizeof(float) * o1.size()) == 0 ? "yes" : "NO");
  }
  return 0;
}
