#include "pipeline/perplexity_run.h"

#include <chrono>

#include "base/file.h"

namespace ctrust {

nlohmann::json PerplexityRunResult::to_json() const {
  return {{"model", model}, {"compute", compute}, {"file", file}, {"ctx", ctx}, {"n_chunks", ppl.n_chunks},
          {"n_scored", ppl.n_scored}, {"ppl", ppl.ppl}, {"ppl_stderr", ppl.ppl_stderr}, {"seconds", seconds},
          {"tokens_per_s", tokens_per_s()}};
}

PerplexityRunResult perplexity_run(const Model& m, const std::string& model_path, const std::string& file, int ctx,
                                   int max_chunks, const std::function<void(int, int, double, double)>& progress) {
  using clock = std::chrono::steady_clock;
  PerplexityRunResult r;
  r.model = model_path;
  r.compute = compute_mode_name(compute_mode(m));
  r.file = file;
  r.ctx = ctx;
  const std::string text = read_regular_file(file, "text file");
  const auto t0 = clock::now();
  auto since = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
  const std::vector<int32_t> tokens = perplexity_tokens(m, text);
  r.n_tokens = tokens.size();
  r.ppl = perplexity(m, tokens, ctx, max_chunks, [&](int done, int total, double ppl) {
    if (progress) progress(done, total, ppl, since());
  });
  r.seconds = since();
  return r;
}

}  // namespace ctrust
