#include "pipeline/generate_run.h"

#include <chrono>
#include <cstdlib>

#include <omp.h>

#include "base/error.h"
#include "trust/chat.h"

namespace ctrust {

nlohmann::json GenerateRunResult::to_json() const {
  nlohmann::json j = {{"prompt", prompt}, {"compute", compute}, {"text", text}, {"tokens", tokens},
                      {"n_tokens", tokens.size()}, {"seconds", seconds}, {"tokens_per_s", tokens_per_s()},
                      {"threads", threads}};
  if (!chat_template.empty()) j["chat_template"] = chat_template;
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  j["omp_wait_policy"] = wait ? wait : "";
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  j["gomp_spincount"] = spin ? spin : "";
  return j;
}

GenerateRunResult generate_run(const Model& m, const std::string& model_path, const GenerateRunOptions& o,
                               const std::function<void(const std::string&)>& on_text) {
  const Tokenizer& tok = m.tok;
  GenerateRunResult r;
  r.prompt = o.prompt;
  r.compute = compute_mode_name(compute_mode(m));
  GenerateOptions opt = o.gen;
  std::vector<int32_t> prompt;
  std::string shown = o.prompt;  // what is shown before the generated text
  if (o.chat || !o.chat_template.empty()) {
    const ChatTemplate t = o.chat_template.empty() ? detect_chat_template(tok.data().chat_template)
                                                   : chat_template_by_name(o.chat_template);
    r.chat_template = t.name;
    const std::string rendered = render_chat(t, {{"user", o.prompt}}, true);
    prompt = tok.encode(rendered, tok.adds_bos() && t.bos_text.empty(), true);
    opt.stop_strings.insert(opt.stop_strings.end(), t.stop_strings.begin(), t.stop_strings.end());
    shown.clear();
  } else {
    prompt = tok.encode(o.prompt, true);
  }
  if (prompt.empty()) {
    if (tok.bos() < 0) fail("{}: empty prompt and the model has no BOS token to start from", model_path);
    prompt.push_back(tok.bos());
  }
  StopStringStream stream(opt.stop_strings);
  if (on_text) on_text(shown);
  const auto t0 = std::chrono::steady_clock::now();
  r.tokens = generate(m, prompt, opt, [&](int32_t id) {
    if (on_text) {
      const std::string s = stream.push(tok.piece(id));
      if (!s.empty()) on_text(s);
    }
    return true;
  });
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.threads = omp_get_max_threads();
  r.text = cut_at_stop_strings(tok.decode(r.tokens), opt.stop_strings);
  if (on_text) on_text(stream.finish());
  return r;
}

}  // namespace ctrust
