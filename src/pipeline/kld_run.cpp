#include "pipeline/kld_run.h"

#include <filesystem>

#include <fmt/format.h>

#include "backend/openai.h"
#include "base/error.h"
#include "base/file.h"
#include "eval/remote_score.h"

namespace ctrust {

double KldSaved::llama_cpp_bytes() const {
  return double(n_tokens) * (2 * ((n_vocab + 1) / 2) + 4) * 2 + double(text_tokens) * 4;
}

nlohmann::json KldSaved::to_json() const {
  if (served)
    return {{"base", base}, {"saved", path}, {"top_k", top_k}, {"n_chunks", n_chunks}, {"n_tokens", n_tokens}};
  return {{"base", base}, {"file", file}, {"saved", path}, {"top_k", top_k}, {"n_ctx", n_ctx},
          {"n_chunks", n_chunks}, {"n_tokens", n_tokens}, {"bytes", bytes}};
}

nlohmann::json KldRunResult::to_json() const {
  nlohmann::json j = stats ? stats->to_json() : nlohmann::json::object();
  j["base"] = base_json;
  if (!backend.is_null()) j["backend"] = backend;
  j["model"] = model;
  j["file"] = file;
  j["compute"] = compute;
  return j;
}

namespace {

KldSaved saved_of(const KldBase& kb, const KldRunOptions& o, const std::string& base, bool served, int k) {
  KldSaved s;
  s.base = base;
  s.file = o.file;
  s.path = o.save_base;
  s.served = served;
  s.top_k = k;
  s.n_ctx = o.ctx;
  s.n_chunks = kb.n_chunks;
  s.n_vocab = kb.n_vocab;
  s.n_tokens = kb.n_scored();
  s.text_tokens = int64_t(kb.tokens.size());
  s.bytes = served ? 0 : std::filesystem::file_size(o.save_base);
  return s;
}

KldOptions kld_options(const KldRunOptions& o) {
  KldOptions k;
  k.n_ctx = o.ctx;
  k.max_chunks = o.chunks;
  if (o.progress) k.progress = o.progress();
  return k;
}

LoadOptions load_options(const KldRunOptions& o) { return LoadOptions{o.tokenizer, compute_mode_from_name(o.compute)}; }

// The served model is the base. The server returns top-k log-probabilities only, so the KL is the top-k lower
// bound (as a saved baseline); `model` is the local model compared with it, whose tokenizer builds the chunks
// (checked against the server's).
KldRunResult kld_run_remote(const KldRunOptions& o, const std::function<void(const KldSaved&)>& on_saved) {
  if (!o.base.empty() || !o.load_base.empty())
    fail("kld: with --backend openai the served model is the base: drop --base / --load-base");
  if (o.file.empty()) fail("kld: -f/--file is required");
  if (o.save_base.empty() && o.model.empty()) fail("kld: -m/--model is required (unless --save-base)");
  if (!o.save_base.empty()) check_output_path(o.save_base);
  const std::string text = read_regular_file(o.file, "text file");
  std::unique_ptr<Model> b = o.model.empty() ? o.open_tokenizer() : open_model(o.model, load_options(o));
  auto backend = o.connect(b->tok);
  KldOptions opt = kld_options(o);
  const int k = o.top_k > 0 ? o.top_k : 20;
  if (o.notice)
    o.notice(fmt::format("kld: the server returns top-{} log-probabilities only: KL is computed on the top-{} tokens "
                         "+ the rest, a lower bound of the full-vocabulary KL\n", k, k));
  KldBase kb = make_kld_base_remote(*backend, b->tok, b->cfg.n_vocab, text, k, opt);
  KldRunResult r;
  r.base = o.served_model + " (served, top-" + std::to_string(k) + ")";
  r.base_json = o.served_model;
  r.model = o.model;
  r.file = o.file;
  r.compute = o.compute;
  if (!o.save_base.empty()) {
    save_kld_base(kb, o.save_base);
    r.saved = saved_of(kb, o, o.served_model, true, k);
    if (on_saved) on_saved(*r.saved);
    if (o.model.empty()) return r;
  }
  opt = kld_options(o);
  r.stats = kl_divergence(kb, *b, text, opt);
  r.backend = backend->settings();
  if (!o.save_tokens.empty()) save_kld_tokens(kld_tokens(*r.stats, r.base, o.model), o.save_tokens);
  return r;
}

}  // namespace

KldRunResult kld_run(const KldRunOptions& o, const std::function<void(const KldSaved&)>& on_saved) {
  if (!o.save_tokens.empty()) {  // local and served base alike
    if (o.model.empty()) fail("kld: --save-tokens needs -m/--model (the per-token results of the comparison)");
    check_output_path(o.save_tokens);
  }
  if (o.remote()) return kld_run_remote(o, on_saved);
  if (o.base.empty() == o.load_base.empty()) fail("kld: give either --base MODEL or --load-base FILE");
  if (!o.load_base.empty() && !o.save_base.empty()) fail("kld: --save-base and --load-base exclude each other");
  if (o.save_base.empty() && o.model.empty()) fail("kld: -m/--model is required (unless --save-base)");
  if (o.load_base.empty() && o.file.empty()) fail("kld: -f/--file is required (unless --load-base)");
  if (!o.save_base.empty()) check_output_path(o.save_base);
  KldOptions opt = kld_options(o);
  const std::string text = o.file.empty() ? std::string() : read_regular_file(o.file, "text file");
  KldRunResult r;
  r.base = r.base_json = o.load_base.empty() ? o.base : o.load_base;
  r.model = o.model;
  r.file = o.file;
  r.compute = o.compute;
  if (!o.save_base.empty()) {
    auto base = open_model(o.base, load_options(o));
    const int k = o.top_k > 0 ? o.top_k : 256;
    KldBase kb = make_kld_base(*base, text, k, opt);
    save_kld_base(kb, o.save_base);
    r.saved = saved_of(kb, o, o.base, false, k);
    if (on_saved) on_saved(*r.saved);
    if (o.model.empty()) return r;
  }
  auto b = open_model(o.model, load_options(o));
  if (!o.load_base.empty()) {
    r.stats = kl_divergence(load_kld_base(o.load_base), *b, text, opt);
  } else {
    auto base = open_model(o.base, load_options(o));
    opt.top_k = o.top_k;
    r.stats = kl_divergence(*base, *b, text, opt);
  }
  if (!o.save_tokens.empty()) save_kld_tokens(kld_tokens(*r.stats, r.base, o.model), o.save_tokens);
  return r;
}

}  // namespace ctrust
