// Trust generation through a served model (backend/openai.h): TrustOptions::generate for run_trust. Each sample
// of a request is one completion request with the request's sampling settings (temperature, top_p, max_tokens,
// the template's and the task's stop strings, seed = the request's seed + sample index, as the engine's samples);
// at most max_inflight requests are in flight. docs/remote.md.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "backend/openai.h"
#include "model/batch.h"

namespace ctrust {

using RemoteGenerateFn =
    std::function<void(const std::vector<GenRequest>&, const std::vector<std::string>&,
                       const std::function<void(size_t, int, const std::string&)>&)>;

RemoteGenerateFn remote_generate(const OpenAIBackend& backend);

}  // namespace ctrust
