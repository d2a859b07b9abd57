// Evaluation speed: items/s of ctrust's scorer on the first N items of a task, after one warm-up item;
// tokens/s counts every token the engine runs. Scorers: `batched` (ItemScorer, what `ctrust eval` uses: one
// masked forward packs the contexts and choices of several items, context kept across items) or `seq` (score_item: shared context
// once, KV cache truncated back to it for every choice). Compare with scripts/ref/bench_llamacpp_eval.py on
// the same items (docs/benchmarks.md).
//   bench_eval MODEL [--task hellaswag] [--n 100] [--fewshot K] [--limit PER_SUBTASK] [--threads 1] [--ctx 2048]
//              [--scorer batched|seq] [--batch 16] [--dump REQUESTS.json] [--compute f32|native]
//              [--sample first|stratified] [--seed S]
// --batch: items per score_batch call (as `ctrust eval`); --dump: the measured items' token sequences;
// --sample stratified: --limit draws ctrust eval's seeded stratified sample of each subtask (default: the first
// items, as the recorded figures used). "rows" counts the logit rows (output head + log-softmax) computed.
#include <omp.h>

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench_util.h"
#include "eval/score.h"
#include "eval/task.h"
#include "model/model.h"
#include "ops/linear.h"

using namespace ctrust;
using namespace ctrust::bench;

// CPU seconds of the process (all its threads): under load the wall time also counts other processes' turns.
static double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}


int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--task T] [--n N] [--fewshot K] [--limit L] [--threads T] [--ctx C]\n",
                 argv[0]);
    return 2;
  }
  std::string path = argv[1], task = "hellaswag", dump, scorer = "batched", compute = "f32", sample = "first";
  uint64_t seed = 0;
  int n = 100, fewshot = -1, limit = 0, threads = 1, ctx = 2048, batch = 16;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--task") task = v;
    else if (a == "--n") n = std::atoi(v.c_str());
    else if (a == "--fewshot") fewshot = std::atoi(v.c_str());
    else if (a == "--limit") limit = std::atoi(v.c_str());
    else if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--ctx") ctx = std::atoi(v.c_str());
    else if (a == "--dump") dump = v;
    else if (a == "--scorer") scorer = v;
    else if (a == "--batch") batch = std::max(1, std::atoi(v.c_str()));
    else if (a == "--compute") compute = v;
    else if (a == "--sample") sample = v;
    else if (a == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    omp_set_num_threads(threads);
    auto m = open_model(path, LoadOptions{"", compute_mode_from_name(compute)});
    if (sample != "first" && sample != "stratified") fail("--sample: first or stratified, not '{}'", sample);
    TaskSpec spec = load_task_spec(task);
    if (fewshot >= 0) spec.num_fewshot = fewshot;
    TaskData td = load_task(spec, limit, sample == "first" ? LimitMode::First : LimitMode::Stratified, seed);
    if (int(td.items.size()) > n + 1) td.items.resize(size_t(n) + 1);
    if (td.items.size() < 2) fail("{}: too few items", task);
    if (scorer != "batched" && scorer != "seq") fail("--scorer: batched or seq, not '{}'", scorer);
    const int n_ctx = std::min(ctx, m->cfg.n_ctx > 0 ? m->cfg.n_ctx : ctx);
    KVCache cache = make_cache(*m, n_ctx);
    ItemScorer batched(*m, n_ctx);
    auto score = [&](const TaskItem& it) {
      return scorer == "batched" ? batched.score(it) : score_item(*m, cache, it);
    };
    score(td.items[0]);  // warm-up (page in the weights)
    const int64_t run0 = batched.tokens_run(), rows0 = batched.rows_out();
    nlohmann::json dumped = nlohmann::json::array();
    int64_t tokens = 0;
    int correct = 0, correct_norm = 0;
    std::vector<double> ll_first;  // the first measured item's choice log-likelihoods (vs llama.cpp's)
    for (size_t i = 1; i < td.items.size(); i++) {
      const TaskItem& it = td.items[i];
      // Tokens of the seq protocol: the shared prefix once, then each choice's remainder.
      std::vector<Request> rs;
      for (size_t c = 0; c < it.continuations.size(); c++)
        rs.push_back(make_request(m->tok, it.contexts[std::min(c, it.contexts.size() - 1)], it.continuations[c]));
      size_t common = rs[0].tokens.size();
      for (const auto& r : rs) {
        size_t k = 0;
        while (k < common && k < r.tokens.size() && r.tokens[k] == rs[0].tokens[k]) k++;
        common = std::min(common, k);
      }
      common = std::min(common, size_t(rs[0].tokens.size() - 1));
      tokens += int64_t(common);
      for (const auto& r : rs) tokens += int64_t(r.tokens.size() - common);
      if (!dump.empty()) {
        nlohmann::json d = {{"gold", it.gold}, {"choices", nlohmann::json::array()}};
        for (const auto& r : rs) d["choices"].push_back({{"tokens", r.tokens}, {"ctx_len", r.ctx_len}});
        dumped.push_back(d);
      }
    }
    // Timed: scoring only (tokenization included, as in a real run).
    const double t0 = now(), c0 = cpu_now();
    if (scorer == "batched") {  // as ctrust eval: `batch` items per score_batch call
      for (size_t i = 1; i < td.items.size(); i += size_t(batch)) {
        std::vector<const TaskItem*> group;
        for (size_t j = i; j < std::min(td.items.size(), i + size_t(batch)); j++) group.push_back(&td.items[j]);
        for (const ItemScore& s : batched.score_batch(group)) {
          if (ll_first.empty()) ll_first = s.ll;
          correct += s.correct;
          correct_norm += s.correct_norm;
        }
      }
    } else {
      for (size_t i = 1; i < td.items.size(); i++) {
        ItemScore s = score(td.items[i]);
        if (ll_first.empty()) ll_first = s.ll;
        correct += s.correct;
        correct_norm += s.correct_norm;
      }
    }
    const double dt = now() - t0, cpu = cpu_now() - c0;
    const int items = int(td.items.size()) - 1;
    if (scorer == "batched") tokens = batched.tokens_run() - run0;  // what the batched scorer really ran
    if (!dump.empty()) {
      std::ofstream f(dump);
      f << nlohmann::json({{"task", task}, {"num_fewshot", spec.num_fewshot}, {"items", dumped}}).dump() << "\n";
      if (!f) fail("{}: cannot write", dump);
    }
    const int64_t rows = batched.rows_out() - rows0;
    std::printf("{\"model\": \"%s\", \"compute\": \"%s\", \"blas_core\": \"%s\", \"scorer\": \"%s\", \"task\": \"%s\", \"num_fewshot\": %d, \"threads\": %d, "
                "\"items\": %d, \"seconds\": %.3f, \"cpu_seconds\": %.3f, \"items_per_s\": %.3f, \"tokens\": %lld, \"rows\": %lld, "
                "\"tokens_per_s\": %.1f, \"acc\": %.4f, \"acc_norm\": %.4f, \"ll_first\": %s}\n",
                path.c_str(), compute.c_str(), blas_core_name(), scorer.c_str(), task.c_str(), spec.num_fewshot, threads, items, dt, cpu, items / dt,
                (long long)tokens, (long long)(scorer == "batched" ? rows : -1),
                double(tokens) / dt, double(correct) / items, double(correct_norm) / items,
                nlohmann::json(ll_first).dump().c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
