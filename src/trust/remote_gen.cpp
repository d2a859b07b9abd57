#include "trust/remote_gen.h"

#include <mutex>

#include "base/error.h"

namespace ctrust {

RemoteGenerateFn remote_generate(const OpenAIBackend& backend) {
  return [&backend](const std::vector<GenRequest>& reqs, const std::vector<std::string>& prompts,
                    const std::function<void(size_t, int, const std::string&)>& done) {
    if (prompts.size() != reqs.size()) fail("remote generation: {} prompts for {} requests", prompts.size(), reqs.size());
    std::vector<std::pair<size_t, int>> jobs;
    for (size_t q = 0; q < reqs.size(); q++)
      for (int j = 0; j < std::max(1, reqs[q].samples); j++) jobs.push_back({q, j});
    std::mutex mu;
    parallel_for(jobs.size(), backend.options().max_inflight, [&](size_t k) {
      const auto [q, j] = jobs[k];
      const GenerateOptions& g = reqs[q].opt;
      SamplingParams p;
      p.max_tokens = g.max_tokens;
      p.temperature = g.temperature;
      p.top_p = g.top_p;
      p.seed = g.seed + uint64_t(j);
      p.stop = g.stop_strings;
      std::string text = backend.complete(prompts[q], p);
      std::lock_guard<std::mutex> lk(mu);
      done(q, j, text);
    });
  };
}

}  // namespace ctrust
