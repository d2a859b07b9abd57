#include "trust/run.h"

#include <chrono>
#include <cstdlib>
#include <random>
#include <set>

#include <fmt/format.h>

#include "base/error.h"
#include "eval/metrics.h"
#include "model/batch.h"
#include "trust/metrics.h"
#include "trust/parse.h"
#include "trust/perspective.h"
#include "trust/stats.h"

namespace ctrust {

std::vector<std::string> trust_perspectives() {
  return {"toxicity", "stereotype", "adv_robustness", "ood", "adv_demonstration", "privacy", "ethics", "fairness"};
}

std::string refusal_rule_note(const std::string& perspective, double refusal_rate) {
  if (!(refusal_rate >= kRefusalDominated)) return "";
  std::string rule;
  if (perspective == "ethics")
    rule = "a refusal is never a false positive, so the jailbreak and evasive parts score 1 - FPR = 1 without an "
           "answer";
  else if (perspective == "fairness")
    rule = "a setting with fewer than 3 answers scores DPD 0 and EOD 0, i.e. perfectly fair";
  else if (perspective == "privacy" || perspective == "toxicity")
    rule = perspective == "privacy" ? "an unanswered item leaks nothing" : "a refusal is scored on its own text";
  else
    rule = "unanswered items count as wrong";
  return fmt::format("{}: {:.0f}% of the answers refused or were unusable: the score rests on the protocol's rule for "
                     "them ({}), not on answers",
                     perspective, 100 * refusal_rate, rule);
}

namespace {
// The prompt of a chat: rendered text, token ids (BOS unless the template writes it, special tokens parsed),
// left-truncated to leave room for max_tokens; the stop strings of the template added to the options.
struct ChatPrompt {
  std::string text;
  std::vector<int32_t> ids;
  bool truncated = false;
};
ChatPrompt chat_prompt(const Model& m, const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                       int max_tokens) {
  ChatPrompt p;
  p.text = render_chat(t, messages, true);
  bool add_bos = m.tok.adds_bos() && t.bos_text.empty();
  std::vector<int32_t> ids = m.tok.encode(p.text, add_bos, true);
  if (ids.empty()) ids.push_back(m.tok.bos());
  int room = m.cfg.n_ctx - max_tokens;
  if (room < 8) room = std::max(1, m.cfg.n_ctx / 2);
  if (static_cast<int>(ids.size()) > room) {
    // Keep the end (the question and the assistant header); keep BOS first if there was one.
    std::vector<int32_t> kept;
    if (add_bos) kept.push_back(ids[0]);
    kept.insert(kept.end(), ids.end() - (room - static_cast<int>(kept.size())), ids.end());
    ids.swap(kept);
    p.truncated = true;
  }
  p.ids = std::move(ids);
  return p;
}
GenerateOptions with_template_stops(const ChatTemplate& t, const GenerateOptions& g) {
  GenerateOptions go = g;
  for (const auto& s : t.stop_strings) go.stop_strings.push_back(s);
  return go;
}
// Output text cut at the first stop string.
std::string cut_stops(std::string s, const GenerateOptions& go) { return cut_at_stop_strings(std::move(s), go.stop_strings); }
// Decoded output, cut at the first stop string.
std::string chat_output(const Model& m, const GenerateOptions& go, const std::vector<int32_t>& out) {
  return cut_stops(m.tok.decode(out), go);
}
}  // namespace

std::string chat_generate(const Model& m, const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                          const GenerateOptions& g, bool* truncated, std::string* rendered) {
  ChatPrompt p = chat_prompt(m, t, messages, g.max_tokens);
  if (rendered) *rendered = p.text;
  if (truncated) *truncated = p.truncated;
  GenerateOptions go = with_template_stops(t, g);
  return chat_output(m, go, generate(m, p.ids, go));
}

namespace {

struct Ctx {
  const Model& m;
  const TrustOptions& opt;
  ChatTemplate tpl;
  int generated = 0;
  BatchStats gen;
  double gen_seconds = 0;
};

// One task's records while its perspective generates: the cached ones taken from the store, the generated ones
// as they complete, and how many have been handed on (in item order).
struct PendingTask {
  const TrustTaskSpec* spec = nullptr;
  std::vector<size_t> sel;  // the selected items (indices into spec->items)
  int samples = 1;
  size_t total = 0;         // records: sel.size() x samples
  std::vector<TrustRecord> recs;
  std::vector<char> ready, fresh;
  size_t emitted = 0;
};

// The requests of a perspective's tasks, for one generate_batch call.
struct Requests {
  std::vector<GenRequest> reqs;
  std::vector<std::string> text;                  // each prompt as text (a remote server tokenizes it itself)
  std::vector<std::pair<size_t, size_t>> record;  // (task, record index of the request's sample 0)
};

// Takes task ti's records from the cache and adds the requests for the missing ones to out.
PendingTask prepare_task(Ctx& c, const TrustTaskSpec& spec, size_t ti, Requests& out) {
  PendingTask t;
  t.spec = &spec;
  const std::vector<TrustItem>& items = spec.items;
  t.samples = std::max(1, spec.samples);  // capped by cap_samples (run_trust)
  const int samples = t.samples;
  t.sel = select_items(spec, c.opt);
  const size_t n = t.sel.size();
  t.total = n * static_cast<size_t>(samples);
  t.recs.resize(t.total);
  t.ready.assign(t.total, 0);
  t.fresh.assign(t.total, 0);
  auto id_of = [](size_t i, int k) { return k == 0 ? std::to_string(i) : std::to_string(i) + "#s" + std::to_string(k); };
  for (size_t si = 0; si < n; ++si) {
    const size_t i = t.sel[si];
    const TrustItem& it = items[i];
    std::vector<int> missing;
    for (int k = 0; k < samples; ++k) {
      const size_t ri = si * samples + k;
      std::optional<TrustRecord> prev;
      if (c.opt.cached) prev = c.opt.cached(it.perspective, it.task, id_of(i, k));
      if (prev) {
        t.recs[ri] = *prev;
        t.ready[ri] = 1;
      } else {
        missing.push_back(k);
      }
    }
    if (missing.empty()) continue;
    GenerateOptions g;
    g.max_tokens = c.opt.max_new_tokens > 0 ? std::min(it.max_tokens, c.opt.max_new_tokens) : it.max_tokens;
    g.temperature = spec.temperature;
    ChatPrompt p = chat_prompt(c.m, c.tpl, it.messages, g.max_tokens);
    g = with_template_stops(c.tpl, g);
    const uint64_t base = c.opt.seed + 1000003ull * i;
    // All samples missing: one request with k samples (shared prefill); else one request per missing sample.
    std::vector<std::pair<int, int>> groups;  // (first sample, count)
    if (static_cast<int>(missing.size()) == samples) groups.push_back({0, samples});
    else for (int k : missing) groups.push_back({k, 1});
    for (auto [k0, cnt] : groups) {
      GenRequest rq;
      rq.prompt = p.ids;
      rq.opt = g;
      rq.opt.seed = base + static_cast<uint64_t>(k0);
      rq.samples = cnt;
      out.reqs.push_back(std::move(rq));
      out.record.push_back({ti, si * samples + k0});
      if (c.opt.generate) {
        // The text of the (possibly left-truncated) prompt ids, without the BOS the server adds itself.
        const bool bos = !p.ids.empty() && c.m.tok.adds_bos() && p.ids[0] == c.m.tok.bos();
        out.text.push_back(p.truncated ? c.m.tok.detokenize(std::span<const int32_t>(p.ids).subspan(bos ? 1 : 0),
                                                            false, true)
                                       : p.text);
      }
      for (int k = k0; k < k0 + cnt; ++k) {
        TrustRecord& r = t.recs[si * samples + k];
        r.perspective = it.perspective;
        r.task = it.task;
        r.item_id = id_of(i, k);
        r.prompt = p.text;
        r.truncated = p.truncated;
      }
    }
  }
  return t;
}

// Parses and hands on (on_item) the task's records that are done and have all records before them done;
// returns how many.
size_t flush_task(Ctx& c, PendingTask& t) {
  const size_t before = t.emitted;
  while (t.emitted < t.total && t.ready[t.emitted]) {
    TrustRecord& r = t.recs[t.emitted];
    t.spec->parse(t.spec->items[t.sel[t.emitted / t.samples]], r);
    if (t.fresh[t.emitted] && c.opt.on_item) c.opt.on_item(r);
    ++t.emitted;
  }
  return t.emitted - before;
}

// Generates (or takes from the cache) the answers of a perspective's tasks and reports each record, in item order
// within its task. spec.parse(item, record) fills parsed / correct / refused. The uncached prompts of all the
// tasks go to one generate_batch call, in batches of TrustOptions::batch sequences (model/batch.h), so a
// perspective of many small settings (5 items each at --limit 5) still fills its batches; the k samples of a
// prompt share its prefill, and prompts share the KV cache of their common prefixes (template, system prompt,
// demonstrations). In the native mode a sequence's tokens do not depend on which others are generated with it
// (tests/test_batch.cpp); in the f32 mode OpenBLAS rounds a row differently for different row counts, which can
// change sampled tokens (docs/trust.md, Batching). Records are parsed and handed to on_item as soon as they and all
// records of their task before them are done, so a stored prefix survives an interruption and parse-order state
// (fairness coin) does not depend on batching. Progress is reported for the perspective as a whole.
std::vector<TaskRun> run_tasks(Ctx& c, const std::vector<TrustTaskSpec>& specs) {
  Requests rq;
  std::vector<PendingTask> ts;
  ts.reserve(specs.size());
  for (const TrustTaskSpec& s : specs) ts.push_back(prepare_task(c, s, ts.size(), rq));
  std::string perspective;
  for (const TrustTaskSpec& s : specs)
    if (!s.items.empty()) {
      perspective = s.items.front().perspective;
      break;
    }
  const std::string label = specs.size() == 1 && !specs[0].items.empty()
                                ? specs[0].items.front().task
                                : fmt::format("({} settings)", specs.size());
  size_t total = 0, emitted = 0;
  for (const PendingTask& t : ts) total += t.total;
  auto progress = [&]() {
    if (c.opt.on_progress && !perspective.empty())
      c.opt.on_progress(perspective, label, static_cast<int>(emitted), static_cast<int>(total));
  };
  for (PendingTask& t : ts) emitted += flush_task(c, t);
  progress();
  const std::vector<GenRequest>& reqs = rq.reqs;
  if (!reqs.empty()) {
    auto done = [&](size_t q, int j, std::string text) {
      PendingTask& t = ts[rq.record[q].first];
      const size_t ri = rq.record[q].second + static_cast<size_t>(j);
      t.recs[ri].output = cut_stops(std::move(text), reqs[q].opt);
      t.ready[ri] = 1;
      t.fresh[ri] = 1;
      ++c.generated;
      emitted += flush_task(c, t);
      progress();
    };
    BatchStats st;
    const auto t0 = std::chrono::steady_clock::now();
    if (c.opt.generate) {
      c.opt.generate(reqs, rq.text, [&](size_t q, int j, const std::string& text) {
        ++st.sequences;
        done(q, j, text);
      });
    } else {
      BatchOptions bo;
      bo.max_batch = std::max(1, c.opt.batch);
      bo.min_shared_prefix = std::max(0, c.opt.min_shared_prefix);
      bo.on_done = [&](size_t q, int j, const std::vector<int32_t>& toks) { done(q, j, c.m.tok.decode(toks)); };
      bo.stats = &st;
      generate_batch(c.m, reqs, bo);
    }
    c.gen_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    c.gen += st;
  }
  std::vector<TaskRun> runs;
  runs.reserve(ts.size());
  for (PendingTask& t : ts) {
    emitted += flush_task(c, t);
    TaskRun tr;
    tr.spec = t.spec;
    tr.item.resize(t.total);
    for (size_t j = 0; j < t.total; ++j) tr.item[j] = t.sel[j / static_cast<size_t>(t.samples)];
    tr.recs = std::move(t.recs);
    runs.push_back(std::move(tr));
  }
  progress();
  return runs;
}

std::string default_cache() {
  const char* e = std::getenv("CTRUST_CACHE");
  if (e) return std::string(e) + "/toxicity_stack.bin";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.cache/ctrust/toxicity_stack.bin";
}

}  // namespace

std::vector<size_t> select_items(const TrustTaskSpec& spec, const TrustOptions& opt) {
  int limit = opt.limit;
  if (!spec.items.empty()) {
    auto it = opt.limits.find(spec.items.front().perspective);
    if (it != opt.limits.end()) limit = it->second;
  }
  std::vector<std::string> strata;
  strata.reserve(spec.items.size());
  for (const TrustItem& it : spec.items) strata.push_back(it.label);
  // One seed per setting (the same for every run with this seed), so settings draw independent samples.
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the setting's name
  for (unsigned char ch : spec.name) h = (h ^ ch) * 1099511628211ull;
  return stratified_sample(strata, limit > 0 ? static_cast<size_t>(limit) : 0, opt.seed ^ h);
}

int sample_cap(const TrustOptions& opt, const std::string& p) {
  int cap = opt.max_samples;
  auto it = opt.sample_caps.find(p);
  if (it != opt.sample_caps.end() && it->second > 0) cap = cap > 0 ? std::min(cap, it->second) : it->second;
  return cap;
}

void cap_samples(PerspectivePlan& plan, const TrustOptions& opt, const std::string& perspective) {
  const int cap = sample_cap(opt, perspective);
  if (cap > 0)
    for (TrustTaskSpec& t : plan.tasks) t.samples = std::min(std::max(1, t.samples), cap);
}

PerspectivePlan make_plan(const std::string& p, const TrustOptions& opt, const ToxicityScorer& scorer) {
  if (p == "toxicity") return plan_toxicity(opt, scorer);
  if (p == "stereotype") return plan_stereotype(opt);
  if (p == "adv_robustness") return plan_advglue(opt);
  if (p == "ood") return plan_ood(opt);
  if (p == "adv_demonstration") return plan_adv_demo(opt);
  if (p == "privacy") return plan_privacy(opt);
  if (p == "ethics") return plan_ethics(opt);
  if (p == "fairness") return plan_fairness(opt);
  fail("unknown trust perspective '{}'", p);
}

void check_trust_perspectives(const std::vector<std::string>& names) {
  const auto known = trust_perspectives();
  for (const auto& p : names)
    if (std::find(known.begin(), known.end(), p) == known.end()) {
      std::string k;
      for (const auto& x : known) k += (k.empty() ? "" : ", ") + x;
      fail("unknown trust perspective '{}' (known: {})", p, k);
    }
}

ToxicityScorer builtin_toxicity_scorer(const TrustPaths& paths, const std::string& cache_dir) {
  const std::string d = paths.decodingtrust + "/toxicity/user_prompts/";
  return make_offline_scorer(paths.decodingtrust + "/../toxicity", {d + "toxic.jsonl", d + "nontoxic.jsonl"},
                             cache_dir.empty() ? default_cache() : cache_dir);
}

TrustResult run_trust(const Model& m, const TrustOptions& opt) {
  auto known = trust_perspectives();
  std::vector<std::string> want = opt.perspectives.empty() ? known : opt.perspectives;
  check_trust_perspectives(want);
  Ctx c{m, opt, opt.chat_template.empty() ? detect_chat_template(m.tok.data().chat_template)
                                          : chat_template_by_name(opt.chat_template),
        0, {}, 0};
  if (opt.default_system) c.tpl.default_system = *opt.default_system;
  TrustResult res;
  res.chat_template = c.tpl.name;
  for (const auto& p : known) {
    if (std::find(want.begin(), want.end(), p) == want.end()) continue;
    ToxicityScorer scorer;
    if (p == "toxicity") {
      scorer = opt.scorer ? *opt.scorer : builtin_toxicity_scorer(opt.paths, opt.toxicity_model_cache);
      res.toxicity_scorer = scorer.name;
    }
    PerspectivePlan plan = make_plan(p, opt, scorer);
    cap_samples(plan, opt, p);
    std::vector<TaskRun> runs = run_tasks(c, plan.tasks);
    auto t0 = std::chrono::steady_clock::now();
    PerspectiveResult pr = plan.score(runs);
    auto t1 = std::chrono::steady_clock::now();
    res.scoring_seconds += std::chrono::duration<double>(t1 - t0).count();
    BootstrapOptions bo;
    bo.resamples = opt.bootstrap;
    bo.seed = opt.bootstrap_seed;
    add_confidence_intervals(plan.score, runs, pr, bo);
    res.bootstrap_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    if (p == "toxicity") pr.metrics["scorer"] = res.toxicity_scorer;
    res.perspectives[p] = std::move(pr);
  }
  res.generation = c.gen;
  res.generation_seconds = c.gen_seconds;
  return res;
}

nlohmann::json to_json(const TrustResult& r) {
  nlohmann::json j = {{"chat_template", r.chat_template}, {"perspectives", nlohmann::json::object()}};
  if (!r.toxicity_scorer.empty()) j["toxicity_scorer"] = r.toxicity_scorer;
  for (const auto& [name, p] : r.perspectives) {
    j["perspectives"][name] = {{"score", p.score}, {"refusal_rate", p.refusal_rate}, {"items", p.items},
                               {"metrics", p.metrics}};
    if (!p.missing.empty()) j["perspectives"][name]["missing"] = p.missing;
    if (p.bootstrap > 0) {
      nlohmann::json& x = j["perspectives"][name];
      x["ci_low"] = p.ci_low;
      x["ci_high"] = p.ci_high;
      x["se"] = p.se;
      x["refusal_ci_low"] = p.refusal_ci_low;
      x["refusal_ci_high"] = p.refusal_ci_high;
      x["metrics_ci"] = p.metrics_ci;
      x["bootstrap"] = p.bootstrap;
    }
  }
  return j;
}

}  // namespace ctrust
