#include "backend/openai.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"

namespace ctrust {

using json = nlohmann::json;

namespace {

// The base URL with /v1 (the completions API's prefix) and the server's root (tokenize endpoints live there).
std::string api_base(const std::string& u) {
  std::string b = u;
  while (!b.empty() && b.back() == '/') b.pop_back();
  if (b.size() < 3 || b.compare(b.size() - 3, 3, "/v1") != 0) b += "/v1";
  return b;
}
std::string root_of(const std::string& u) {
  std::string b = api_base(u);
  return b.substr(0, b.size() - 3);
}

// Bytes of s with invalid UTF-8 sequences removed (Python's decode(errors="ignore"), which llama-cpp-python
// applies to every token's text).
std::string valid_utf8(const std::string& s) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + size_t(len) <= n;
    for (int k = 1; ok && k < len; k++) ok = (p[i + size_t(k)] & 0xC0) == 0x80;
    if (ok) {
      out.append(s, i, size_t(len));
      i += size_t(len);
    } else {
      i++;
    }
  }
  return out;
}

double as_logprob(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_object() && v.contains("logprob") && v["logprob"].is_number()) return v["logprob"].get<double>();
  return std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

std::string server_error(const std::string& url, const HttpResponse& r) {
  if (r.status == 0)
    return fmt::format("cannot reach the server at {} ({}; {} attempt{})", url, r.error, r.attempts,
                       r.attempts == 1 ? "" : "s");
  std::string msg;
  try {
    const json j = json::parse(r.body);
    if (j.contains("error")) {
      const json& e = j["error"];
      msg = e.is_object() && e.contains("message") ? e["message"].dump() : e.dump();
    } else if (j.contains("detail")) {
      msg = j["detail"].dump();
    } else if (j.contains("message")) {
      msg = j["message"].dump();
    }
  } catch (const std::exception&) {
  }
  if (msg.empty()) msg = r.body.substr(0, 300);
  if (msg.size() > 400) msg = msg.substr(0, 400) + "...";
  return fmt::format("server at {} answered HTTP {}{}: {}", url, r.status,
                     r.attempts > 1 ? fmt::format(" after {} attempts", r.attempts) : "", msg);
}

OpenAIBackend::OpenAIBackend(OpenAIOptions opt) : opt_(std::move(opt)), http_(opt_.http) {
  if (opt_.base_url.empty()) fail("--backend openai needs --base-url URL (e.g. http://127.0.0.1:8000/v1)");
  if (opt_.base_url.rfind("http://", 0) != 0 && opt_.base_url.rfind("https://", 0) != 0)
    fail("--base-url '{}' is not an http:// or https:// URL", opt_.base_url);
  if (opt_.model.empty()) fail("--backend openai needs --served-model NAME (the model's name on the server)");
  if (opt_.max_inflight < 1 || opt_.max_inflight > 1024)
    fail("--max-inflight must be between 1 and 1024 (got {})", opt_.max_inflight);
}

json OpenAIBackend::post(const std::string& path, const json& body, const char* what) const {
  const std::string url = url_join(api_base(opt_.base_url), path);
  HttpResponse r = http_.post_json(url, body.dump());
  if (r.status < 200 || r.status >= 300) fail("{}: {}", what, server_error(url, r));
  try {
    return json::parse(r.body);
  } catch (const std::exception&) {
    fail("{}: the server at {} answered HTTP {} with a body that is not JSON: {}", what, url, r.status,
         r.body.substr(0, 200));
  }
}

void OpenAIBackend::probe(bool needs_logprobs) {
  const std::string url = url_join(api_base(opt_.base_url), "/models");
  HttpResponse r = http_.get(url);
  if (r.status < 200 || r.status >= 300) fail("openai backend: {}", server_error(url, r));
  json models;
  try {
    models = json::parse(r.body);
  } catch (const std::exception&) {
    fail("openai backend: {} is not an OpenAI-compatible server (GET /models did not answer JSON)", url);
  }
  std::vector<std::string> ids;
  std::string owner;
  if (models.contains("data") && models["data"].is_array())
    for (const json& m : models["data"]) {
      if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
      ids.push_back(m["id"].get<std::string>());
      if (ids.back() == opt_.model && m.contains("owned_by") && m["owned_by"].is_string())
        owner = m["owned_by"].get<std::string>();
    }
  if (std::find(ids.begin(), ids.end(), opt_.model) == ids.end()) {
    std::string list;
    for (const auto& s : ids) list += (list.empty() ? "'" : ", '") + s + "'";
    fail("openai backend: the server at {} does not serve a model named '{}' (it serves {}); pass one of them "
         "to --served-model", opt_.base_url, opt_.model, list.empty() ? "none" : list);
  }
  kind_ = owner == "vllm" ? "vllm" : owner == "llamacpp" ? "llama.cpp" : owner == "me" ? "llama-cpp-python" : "unknown";
  if (!opt_.force_mode.empty()) {
    if (opt_.force_mode != "prompt_logprobs" && opt_.force_mode != "echo-tokens" && opt_.force_mode != "echo-text")
      fail("openai backend: unknown log-probability mode '{}'", opt_.force_mode);
    mode_ = opt_.force_mode;
    return;
  }
  if (!needs_logprobs) {
    mode_ = "none";
    return;
  }
  // Probes, cheapest to most widely supported. A server that rejects a probe (4xx) simply lacks that mode.
  // A server that cannot reach us fails at once; one that rejects a probe (4xx, or 5xx for a parameter it does not
  // support, as llama-server does for echo) lacks that mode: its message is kept for the final error.
  std::string refused;
  auto try_post = [&](const json& body) -> std::optional<json> {
    const std::string u = url_join(api_base(opt_.base_url), "/completions");
    HttpResponse pr = http_.post_json(u, body.dump());
    if (pr.status == 0) fail("openai backend: {}", server_error(u, pr));
    if (pr.status < 200 || pr.status >= 300) {
      refused += "; " + server_error(u, pr);
      return std::nullopt;
    }
    try {
      json j = json::parse(pr.body);
      if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) return j["choices"][0];
    } catch (const std::exception&) {
    }
    return std::nullopt;
  };
  const std::vector<int32_t> ids_probe = {1, 2, 3, 4};
  json base = {{"model", opt_.model}, {"max_tokens", 1}, {"temperature", 0}};
  {
    json b = base;
    b["prompt"] = ids_probe;
    b["prompt_logprobs"] = 1;
    auto c = try_post(b);
    if (c && c->contains("prompt_logprobs") && (*c)["prompt_logprobs"].is_array() &&
        (*c)["prompt_logprobs"].size() >= ids_probe.size()) {
      mode_ = "prompt_logprobs";
      return;
    }
  }
  auto echo_ok = [](const std::optional<json>& c, size_t min_entries) {
    return c && c->contains("logprobs") && (*c)["logprobs"].is_object() &&
           (*c)["logprobs"].contains("token_logprobs") && (*c)["logprobs"]["token_logprobs"].is_array() &&
           (*c)["logprobs"]["token_logprobs"].size() >= min_entries;
  };
  {
    json b = base;
    b["prompt"] = ids_probe;
    b["echo"] = true;
    b["logprobs"] = 1;
    if (echo_ok(try_post(b), ids_probe.size())) {
      mode_ = "echo-tokens";
      return;
    }
  }
  {
    json b = base;
    b["prompt"] = "The capital of France is Paris, and the capital of Italy is Rome.";
    b["echo"] = true;
    b["logprobs"] = 1;
    if (echo_ok(try_post(b), 4)) {
      mode_ = "echo-text";
      return;
    }
  }
  fail("openai backend: the server at {} ({}) returns no log-probabilities of the prompt (tried vLLM's "
       "prompt_logprobs and echo with logprobs, as token ids and as text); log-likelihood scoring (eval, kld) needs "
       "them. Generation (trust) works without them.{}", opt_.base_url, kind_, refused);
}

json OpenAIBackend::settings() const {
  return {{"backend", "openai"}, {"base_url", opt_.base_url}, {"served_model", opt_.model}, {"logprobs", mode_},
          {"server", kind_}};
}

PromptLogprobs OpenAIBackend::parse_echo(const json& choice, const std::vector<int32_t>& tokens, bool bos,
                                         const std::string& text, int top_k, const PieceFn& piece,
                                         const IdFn& id_of) const {
  const size_t n = tokens.size();
  if (!choice.contains("logprobs") || !choice["logprobs"].is_object())
    fail("openai backend: the server returned no logprobs for an echo request (mode {}); it cannot score prompts",
         mode_);
  const json& lp = choice["logprobs"];
  if (!lp.contains("token_logprobs") || !lp["token_logprobs"].is_array())
    fail("openai backend: the server's logprobs have no token_logprobs");
  const json& tl = lp["token_logprobs"];
  const json* tops = lp.contains("top_logprobs") && lp["top_logprobs"].is_array() ? &lp["top_logprobs"] : nullptr;
  const json* strs = lp.contains("tokens") && lp["tokens"].is_array() ? &lp["tokens"] : nullptr;
  // Entry e is prompt token e + off: echo-text drops the BOS llama-cpp-python adds (it echoes text).
  const size_t off = mode_ == "echo-text" && bos ? 1 : 0;
  const size_t n_prompt = n - off;
  if (tl.size() < n_prompt || tl.size() > n_prompt + 1)
    fail("openai backend: the server echoed {} tokens for a prompt of {} tokens (+1 generated): its tokenizer "
         "disagrees with the local one on this prompt ({:.60}...)", tl.size(), n_prompt, text);
  if (mode_ == "echo-text" && strs && piece) {
    for (size_t e = 0; e < n_prompt && e < strs->size(); e++) {
      if (!(*strs)[e].is_string()) continue;
      std::string theirs = valid_utf8((*strs)[e].get<std::string>());
      std::string ours = valid_utf8(piece(tokens[e + off]));
      // The first token's text may lose the space a SentencePiece tokenizer prefixes (llama.cpp's detokenizer
      // drops it at the start of a text).
      if (e == 0 && !ours.empty() && ours[0] == ' ' && (theirs.empty() || theirs[0] != ' ')) ours.erase(0, 1);
      if (theirs != ours)
        fail("openai backend: the server tokenized a prompt differently from the local tokenizer (token {}: "
             "server '{}', local '{}'); use the served model's own tokenizer file with --tokenizer", e + off,
             theirs, ours);
    }
  }
  PromptLogprobs out;
  out.logp.assign(n, std::numeric_limits<double>::quiet_NaN());
  out.top_logp.assign(n, std::numeric_limits<double>::quiet_NaN());
  if (top_k > 0) out.top.resize(n);
  for (size_t e = 0; e < n_prompt; e++) {
    const size_t i = e + off;
    if (i == 0 || tl[e].is_null()) continue;
    out.logp[i] = as_logprob(tl[e]);
    double best = out.logp[i];
    if (tops && e < tops->size() && (*tops)[e].is_object()) {
      for (auto it = (*tops)[e].begin(); it != (*tops)[e].end(); ++it) {
        const double v = as_logprob(it.value());
        if (!std::isfinite(v)) continue;
        best = std::max(best, v);
        // The echo APIs key alternatives by their text: only a text that names exactly one id is kept.
        if (top_k > 0 && id_of) {
          const std::optional<int32_t> id = id_of(it.key());
          if (id) out.top[i].push_back({*id, v});
        }
      }
    }
    out.top_logp[i] = best;
    if (top_k > 0) {
      auto& t = out.top[i];
      std::sort(t.begin(), t.end(), [](auto& a, auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
      t.erase(std::unique(t.begin(), t.end(), [](auto& a, auto& b) { return a.first == b.first; }), t.end());
      if (int(t.size()) > top_k) t.resize(size_t(top_k));
    }
  }
  return out;
}

PromptLogprobs OpenAIBackend::prompt_logprobs(const std::vector<int32_t>& tokens, const std::string& text, bool bos,
                                              int top_k, const PieceFn& piece, const IdFn& id_of) const {
  if (tokens.size() < 2) fail("openai backend: a prompt to score needs at least 2 tokens");
  const int k = std::max(1, top_k);
  json body = {{"model", opt_.model}, {"max_tokens", 1}, {"temperature", 0}};
  if (mode_ == "prompt_logprobs") {
    body["prompt"] = tokens;
    body["prompt_logprobs"] = k;
    json r = post("/completions", body, "openai backend (prompt_logprobs)");
    if (!r.contains("choices") || !r["choices"].is_array() || r["choices"].empty() ||
        !r["choices"][0].contains("prompt_logprobs") || !r["choices"][0]["prompt_logprobs"].is_array())
      fail("openai backend: the server returned no prompt_logprobs (mode prompt_logprobs)");
    const json& pl = r["choices"][0]["prompt_logprobs"];
    if (pl.size() != tokens.size())
      fail("openai backend: the server returned {} prompt log-probabilities for {} prompt tokens", pl.size(),
           tokens.size());
    PromptLogprobs out;
    out.logp.assign(tokens.size(), std::numeric_limits<double>::quiet_NaN());
    out.top_logp = out.logp;
    if (top_k > 0) out.top.resize(tokens.size());
    for (size_t i = 1; i < tokens.size(); i++) {
      const json& d = pl[i];
      if (!d.is_object()) fail("openai backend: prompt_logprobs entry {} is not an object", i);
      const std::string key = std::to_string(tokens[i]);
      if (!d.contains(key)) fail("openai backend: prompt_logprobs entry {} lacks the prompt's token {}", i, tokens[i]);
      out.logp[i] = as_logprob(d[key]);
      double best = out.logp[i];
      for (auto it = d.begin(); it != d.end(); ++it) {
        const double v = as_logprob(it.value());
        if (!std::isfinite(v)) continue;
        best = std::max(best, v);
        if (top_k > 0) {
          int rank = it.value().is_object() && it.value().contains("rank") && it.value()["rank"].is_number_integer()
                         ? it.value()["rank"].get<int>() : 0;
          if (rank >= 1 && rank <= top_k) out.top[i].push_back({int32_t(std::stol(it.key())), v});
        }
      }
      out.top_logp[i] = best;
      if (top_k > 0)
        std::sort(out.top[i].begin(), out.top[i].end(), [](auto& a, auto& b) { return a.second > b.second; });
    }
    return out;
  }
  if (mode_ != "echo-tokens" && mode_ != "echo-text")
    fail("openai backend: the server has no prompt log-probabilities (mode {}); call probe(true) first", mode_);
  body["echo"] = true;
  body["logprobs"] = k;
  if (mode_ == "echo-tokens") body["prompt"] = tokens;
  else body["prompt"] = text;
  json r = post("/completions", body, "openai backend (echo)");
  if (!r.contains("choices") || !r["choices"].is_array() || r["choices"].empty())
    fail("openai backend: the server's completion has no choices");
  return parse_echo(r["choices"][0], tokens, bos, text, top_k, piece, id_of);
}

std::string OpenAIBackend::complete(const std::string& prompt, const SamplingParams& p) const {
  json body = {{"model", opt_.model}, {"prompt", prompt}, {"max_tokens", p.max_tokens},
               {"temperature", p.temperature}, {"top_p", p.top_p}, {"n", 1},
               {"seed", int64_t(p.seed & 0x7fffffffull)}};
  if (!p.stop.empty()) {
    std::vector<std::string> st(p.stop.begin(), p.stop.begin() + std::min<size_t>(4, p.stop.size()));
    body["stop"] = st;
  }
  // llama.cpp's samplers default to top_k 40, min_p 0.05 (and llama-cpp-python to repeat_penalty 1.1); the
  // trust protocols sample from the full distribution (temperature, top_p only), as vLLM does by default.
  if (kind_ == "llama.cpp" || kind_ == "llama-cpp-python") {
    body["top_k"] = 0;
    body["min_p"] = 0.0;
    body["repeat_penalty"] = 1.0;
  }
  json r = post("/completions", body, "openai backend (generation)");
  if (!r.contains("choices") || !r["choices"].is_array() || r["choices"].empty() ||
      !r["choices"][0].contains("text") || !r["choices"][0]["text"].is_string())
    fail("openai backend: the server's completion has no choices[0].text");
  return r["choices"][0]["text"].get<std::string>();
}

std::optional<std::vector<int32_t>> OpenAIBackend::tokenize(const std::string& text, bool add_bos) const {
  struct Way {
    std::string path;
    json body;
  };
  std::vector<Way> ways;
  if (kind_ == "llama-cpp-python") {
    ways.push_back({"/extras/tokenize", {{"model", opt_.model}, {"input", text}}});
  } else {
    // vLLM: {model, prompt, add_special_tokens}; llama-server: {content, add_special, parse_special}.
    ways.push_back({"/tokenize", {{"model", opt_.model}, {"prompt", text}, {"content", text},
                                  {"add_special_tokens", add_bos}, {"add_special", add_bos}, {"parse_special", true}}});
    if (kind_ == "unknown") ways.push_back({"/extras/tokenize", {{"model", opt_.model}, {"input", text}}});
  }
  for (const Way& w : ways) {
    const std::string url = url_join(root_of(opt_.base_url), w.path);
    HttpResponse r = http_.post_json(url, w.body.dump());
    if (r.status == 404 || r.status == 405) continue;
    if (r.status < 200 || r.status >= 300) fail("openai backend (tokenize): {}", server_error(url, r));
    json j;
    try {
      j = json::parse(r.body);
    } catch (const std::exception&) {
      fail("openai backend (tokenize): {} answered a body that is not JSON", url);
    }
    if (!j.contains("tokens") || !j["tokens"].is_array()) fail("openai backend (tokenize): {} returned no tokens", url);
    std::vector<int32_t> ids;
    for (const json& t : j["tokens"]) {
      if (t.is_number_integer()) ids.push_back(t.get<int32_t>());
      else if (t.is_object() && t.contains("id")) ids.push_back(t["id"].get<int32_t>());
      else fail("openai backend (tokenize): {} returned a token that is not an id", url);
    }
    return ids;
  }
  return std::nullopt;
}

}  // namespace ctrust
