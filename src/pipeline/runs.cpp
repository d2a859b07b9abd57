#include "pipeline/runs.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>

#include "base/error.h"
#include "base/progress.h"
#include "eval/remote_score.h"
#include "eval/score.h"
#include "pipeline/fingerprint.h"
#include "pipeline/worker.h"

using nlohmann::json;

namespace ctrust {

namespace {

// The eval run's progress (base/progress.h). The rate counts only items scored by this process (items resumed
// from the store cost nothing), and the clock starts at the first scored item.
struct Progress {
  bool on = false;
  std::string label;
  int64_t total = 0;
  int64_t resumed = 0;  // items already in the store (counted before the loop)
  ProgressLine line{10};
  void start() { line.restart(); }
  // scored: items scored by this process so far
  void show(int64_t scored) {
    if (on) line.show(progress_line(label, scored, resumed, total, line.seconds()), scored + resumed == total);
  }
};

}  // namespace

std::string progress_line(const std::string& label, int64_t scored, int64_t resumed, int64_t total, double seconds) {
  const int64_t done = scored + resumed;
  std::string s = fmt::format("{}: {}/{} items", label, done, total);
  if (resumed > 0) s += fmt::format(" ({} resumed)", resumed);
  return s + rate_eta(scored, total - done, seconds, "items");
}

namespace {

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

double extra_num(const json& extra, const char* key, double def) {
  auto it = extra.find(key);
  if (it == extra.end()) return def;
  if (it->is_boolean()) return it->get<bool>() ? 1.0 : 0.0;
  if (it->is_number()) return it->get<double>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number()) return (*it)[0].get<double>();
  return def;
}

// exp of the mean NLL: per item (loglikelihood) or per scored token (perplexity).
double ppl_of(const std::vector<const StoredItem*>& items, const std::string& scoring) {
  if (items.empty()) return -1;
  if (scoring == "loglikelihood") {
    double s = 0;
    for (auto* it : items) s += it->ll.empty() ? 0 : it->ll[0];
    return std::exp(-s / double(items.size()));
  }
  if (scoring == "perplexity") {
    double s = 0, n = 0;
    for (auto* it : items) {
      s += it->ll.empty() ? 0 : it->ll[0];
      n += extra_num(it->extra, "n_tokens", 0);
    }
    return n > 0 ? std::exp(-s / n) : -1;
  }
  return -1;
}

TaskSummary summarize_group(const std::string& name, const std::vector<const StoredItem*>& items,
                            const std::string& scoring) {
  TaskSummary t;
  t.task = name;
  t.n = int64_t(items.size());
  if (items.empty()) return t;
  double acc = 0, norm = 0, mean = 0, mc2 = 0;
  int64_t n_mc2 = 0;
  for (auto* it : items) {
    acc += it->correct;
    norm += extra_num(it->extra, "correct_norm", it->correct);
    mean += extra_num(it->extra, "correct_mean", it->correct);
    if (it->extra.contains("mc2")) mc2 += extra_num(it->extra, "mc2", 0), n_mc2++;
    if (extra_num(it->extra, "truncated", 0) > 0) t.n_truncated++;
  }
  const double n = double(items.size());
  t.acc = acc / n;
  t.acc_norm = norm / n;
  t.acc_mean = mean / n;
  if (n_mc2 > 0) t.mc2 = mc2 / double(n_mc2);
  t.ppl = ppl_of(items, scoring);
  return t;
}

}  // namespace

json TaskSummary::to_json() const {
  json j = {{"task", task}, {"n", n}, {"acc", acc}, {"acc_norm", acc_norm}, {"acc_mean", acc_mean}};
  if (ppl >= 0) j["ppl"] = ppl;
  if (mc2 >= 0) j["mc2"] = mc2;
  j["n_truncated"] = n_truncated;
  return j;
}

std::vector<TaskSummary> summarize(const RunInfo& run, const std::vector<StoredItem>& items) {
  std::map<std::string, std::vector<const StoredItem*>> groups;
  std::vector<const StoredItem*> all;
  for (const auto& it : items) {
    groups[it.task].push_back(&it);
    all.push_back(&it);
  }
  std::vector<TaskSummary> out;
  if (groups.size() > 1 || (groups.size() == 1 && groups.begin()->first != run.task))
    out.push_back(summarize_group(run.task, all, run.scoring));
  for (const auto& [name, g] : groups) out.push_back(summarize_group(name, g, run.scoring));
  return out;
}

std::vector<TaskSummary> summarize_run(const std::string& db, const RunInfo& run) {
  return summarize(run, Store(db).items(run.id));
}

json to_json(const RunInfo& r) {
  return {{"id", r.id}, {"name", r.name}, {"model_path", r.model_path}, {"model_fp", r.model_fp},
          {"tokenizer_fp", r.tokenizer_fp}, {"task", r.task}, {"scoring", r.scoring}, {"settings", r.settings},
          {"version", r.version}, {"created", r.created}, {"n_items", r.n_items}};
}

json to_json(const std::vector<RunInfo>& runs) {
  json a = json::array();
  for (const auto& r : runs) a.push_back(to_json(r));
  return {{"runs", a}};
}

json EvalResult::to_json() const {
  json t = json::array();
  for (const auto& s : tasks) t.push_back(s.to_json());
  return {{"run", ctrust::to_json(run)}, {"n_total", n_total}, {"n_skipped", n_skipped}, {"n_scored", n_scored},
          {"tasks", t}};
}

std::vector<RunInfo> list_runs(const std::string& db) {
  Store s(db, StoreMode::ReadOnly);
  return s.list_runs();
}

EvalResult eval_run(const Model& m, const std::string& model_path, const std::string& task,
                    const EvalOptions& opt) {
  TaskSpec spec = load_task_spec(task);
  if (opt.num_fewshot >= 0) spec.num_fewshot = opt.num_fewshot;
  if (opt.batch < 1) fail("eval: batch must be at least 1 (got {})", opt.batch);
  int n_ctx = opt.max_ctx;
  if (m.cfg.n_ctx > 0) n_ctx = std::min(n_ctx, m.cfg.n_ctx);
  if (n_ctx < 8) fail("eval: context length {} is too small", n_ctx);
  int chunk = 0;
  if (spec.scoring == Scoring::Perplexity) {
    chunk = spec.n_ctx > 0 ? spec.n_ctx : std::min(n_ctx, 512);
    if (m.cfg.n_ctx > 0 && chunk > m.cfg.n_ctx)
      fail("{}: perplexity chunk of {} tokens exceeds the model's context of {}", spec.decl_path, chunk,
           m.cfg.n_ctx);
  }

  json decl = spec.raw;
  decl["num_fewshot"] = spec.num_fewshot;
  EvalResult res;
  RunInfo& run = res.run;
  set_run_model(run, m, model_path, opt.name, opt.recipe, opt.remote);
  run.task = spec.name;
  run.scoring = scoring_name(spec.scoring);
  // The recipe: the one given, else the one the file carries (a model written by ctrust compress).
  run.settings = {{"declaration", decl}, {"limit", opt.limit},
                  {"recipe", opt.recipe.empty() ? file_recipe(m) : opt.recipe}};
  // How a limit chose the items (absent without a limit, so full runs keep the settings they always had; runs
  // stored before sampling existed have a limit and no "sample": they took the first N).
  if (opt.limit > 0) {
    run.settings["sample"] = limit_mode_name(opt.limit_mode);
    if (opt.limit_mode == LimitMode::Stratified) run.settings["seed"] = opt.seed;
  }
  // The compute mode, only when native: runs made in the f32 mode keep the settings they always had (resume).
  if (compute_mode(m) == ComputeMode::Native) run.settings["compute"] = compute_mode_name(ComputeMode::Native);
  if (opt.remote) {
    run.settings["compute"] = "remote";
    run.settings["backend"] = opt.remote->settings();
  }
  std::optional<RemoteScorer> remote;
  if (opt.remote) remote.emplace(*opt.remote, m.tok, n_ctx);
  if (spec.scoring == Scoring::Perplexity) run.settings["chunk"] = chunk;
  else run.settings["max_ctx"] = n_ctx;

  // Data first: a missing or malformed data file must not leave an empty run in the store.
  TaskData td = load_task(spec, opt.limit, opt.limit_mode, opt.seed);
  Store store(opt.db);
  store.open_run(run);
  const auto done = store.done_items(run.id);

  Progress prog;
  prog.on = opt.progress && !opt.worker.on;  // a worker logs its units instead (another worker's items are not its)
  prog.label = spec.name;
  std::vector<StoredItem> pending;
  int64_t stored = int64_t(done.size());
  const WorkUnit* unit = nullptr;  // --worker: the unit being scored (its items are written under its lease)
  std::string worker_id = opt.worker.id.empty() ? default_worker_id() : opt.worker.id;
  auto last_commit = std::chrono::steady_clock::now();
  auto since_commit = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - last_commit).count();
  };
  auto commit = [&]() {
    last_commit = std::chrono::steady_clock::now();
    if (pending.empty()) return;
    if (unit) {
      if (!store.backend().add_unit_items(run.id, unit->name, worker_id, opt.worker.lease_seconds, pending)) {
        pending.clear();
        throw LeaseLost("its lease expired and another worker claimed it; nothing more was written");
      }
    } else {
      store.add_items(run.id, pending);
    }
    stored += int64_t(pending.size());
    res.n_scored += int64_t(pending.size());
    pending.clear();
    if (opt.on_commit) opt.on_commit(stored, res.n_total);
  };

  // The items (or perplexity chunks) to score: indices [first, end) of the task's list, those not in `have`.
  std::function<void(int64_t, int64_t, const std::unordered_set<std::string>&)> score_range;
  std::vector<int32_t> chunk_tokens;
  if (spec.scoring == Scoring::Perplexity) {
    chunk_tokens = perplexity_tokens(m, td.text);
    int n_chunks = perplexity_chunks(chunk_tokens.size(), chunk);
    if (opt.limit > 0) n_chunks = std::min(n_chunks, opt.limit);
    if (n_chunks == 0)
      fail("{}: text has {} tokens, fewer than one chunk of {}", td.data_path, chunk_tokens.size(), chunk);
    res.n_total = n_chunks;
    prog.total = n_chunks;
    for (int c = 0; c < n_chunks; c++) prog.resumed += done.count(item_key(spec.name, std::to_string(c)));
    score_range = [&](int64_t first, int64_t end, const std::unordered_set<std::string>& have) {
      std::optional<PplChunkRunner> runner;  // one KV cache and logits buffer for every chunk
      for (int64_t c = first; c < end; c++) {
        const std::string id = std::to_string(c);
        if (have.count(item_key(spec.name, id))) {
          res.n_skipped++;
          continue;
        }
        if (!remote && !runner) runner.emplace(m, chunk);
        ChunkScore cs = remote ? remote->score_chunk(chunk_tokens, chunk, int(c))
                               : score_chunk(*runner, m, chunk_tokens, int(c));
        StoredItem it;
        it.task = spec.name;
        it.item_id = id;
        it.ll = {-cs.nll_sum};
        it.pred = it.gold = 0;
        it.correct = false;
        it.extra = {{"n_tokens", {cs.n_scored}}};
        pending.push_back(std::move(it));
        // Committed by count and by time: an interrupted run keeps what was scored more than a few seconds ago.
        if (int(pending.size()) >= opt.batch || since_commit() >= opt.commit_seconds) commit();
        prog.show(res.n_scored + int64_t(pending.size()));
      }
      commit();
    };
  } else {
    res.n_total = int64_t(td.items.size());
    prog.total = res.n_total;
    for (const auto& item : td.items) prog.resumed += done.count(item_key(item.task, item.id));
    score_range = [&](int64_t first, int64_t end, const std::unordered_set<std::string>& have) {
      std::optional<ItemScorer> scorer;
      if (!remote) scorer.emplace(m, n_ctx);
      // Items are scored a batch at a time (the scorer packs as many as fit into each forward pass) and committed
      // together. The batch starts at 1 item and doubles up to opt.batch (1, 2, 4, ..., then opt.batch each
      // time): the first items are stored at once, an interrupted run loses at most one batch, and which items
      // share a forward depends only on the items to score, never on timing. In the f32 mode scores do not depend
      // on the batch (to 1e-4 nats, EvalBatched.ScorerEqualsUnbatched*); in the native mode packing moves last
      // bits that can flip 8-bit activation roundings (docs/tasks.md), so the same command must pack the same way
      // on a loaded and on a quiet machine.
      std::vector<const TaskItem*> todo;
      int batch = 1;
      auto flush = [&]() {
        if (todo.empty()) return;
        std::vector<ItemScore> scores = remote ? remote->score_batch(todo) : scorer->score_batch(todo);
        batch = std::min(std::max(1, opt.batch), 2 * batch);
        for (size_t k = 0; k < todo.size(); k++) {
          const TaskItem& item = *todo[k];
          const ItemScore& s = scores[k];
          StoredItem it;
          it.task = item.task;
          it.item_id = item.id;
          it.ll = s.ll;
          it.pred = s.pred;
          it.gold = item.gold;
          it.correct = s.correct;
          it.extra = s.extra();
          pending.push_back(std::move(it));
        }
        todo.clear();
        commit();
        prog.show(res.n_scored);
      };
      for (int64_t i = first; i < end; i++) {
        const TaskItem& item = td.items[size_t(i)];
        if (have.count(item_key(item.task, item.id))) {
          res.n_skipped++;
          continue;
        }
        todo.push_back(&item);
        if (int(todo.size()) >= batch) flush();
      }
      flush();
    };
  }
  prog.start();
  if (!opt.worker.on) {
    score_range(0, res.n_total, done);
  } else {
    // Units: ranges of unit_items items in the task's order (the same list in every worker: same data, --limit,
    // --sample and --seed).
    if (opt.worker.unit_items < 1) fail("--unit-items must be at least 1 (got {})", opt.worker.unit_items);
    std::vector<WorkUnit> units;
    for (int64_t f = 0; f < res.n_total; f += opt.worker.unit_items) {
      const int64_t n = std::min(opt.worker.unit_items, res.n_total - f);
      units.push_back({fmt::format("{}:{}-{}", spec.name, f, f + n - 1), f, n});
    }
    WorkerOptions w = opt.worker;
    w.id = worker_id;
    res.n_skipped = 0;
    const UnitsOutcome out = run_units(store, opt.db, run.id, units, w,
              [&](const WorkUnit& u) {
                ScopedUnit current(unit, u);
                pending.clear();
                // Items stored before (an earlier worker of the unit that died, or a run made without --worker).
                score_range(u.first, u.first + u.count, store.done_items(run.id));
              },
              [&](const std::string& line) {
                if (opt.progress) fmt::print(stderr, "{}\n", line);
              });
    res.complete = out.complete;
  }
  commit();
  if (!res.complete) return res;  // other workers still hold units: the caller comes back for the summaries
  auto all = store.items(run.id);
  run.n_items = int64_t(all.size());
  res.tasks = summarize(run, all);
  return res;
}

// ---------------------------------------------------------------------------------------------------
// Comparison

json TaskComparison::to_json() const {
  json j = {{"n", m.n},
            {"acc_a", m.acc_a},
            {"acc_b", m.acc_b},
            {"delta_acc", m.delta_acc},
            {"c2w", m.c2w},
            {"w2c", m.w2c},
            {"flips", m.flips},
            {"all_flips", m.all_flips},
            {"agreement", m.agreement},
            {"kl_ab", m.kl_ab},
            {"kl_ba", m.kl_ba},
            {"mcnemar_p", m.mcnemar_p},
            {"delta_acc_ci", {m.delta_acc_ci[0], m.delta_acc_ci[1]}},
            {"flips_ci", {m.flips_ci[0], m.flips_ci[1]}},
            {"kl_ab_ci", {m.kl_ab_ci[0], m.kl_ab_ci[1]}}};
  if (only_a || only_b) {
    j["only_a"] = only_a;
    j["only_b"] = only_b;
  }
  if (ppl_a >= 0) j["ppl_a"] = ppl_a;
  if (ppl_b >= 0) j["ppl_b"] = ppl_b;
  return j;
}

json Comparison::to_json() const {
  json t = json::object();
  for (const auto& [name, c] : tasks) t[name] = c.to_json();
  return {{"tasks", t}, {"runs_a", ctrust::to_json(runs_a)["runs"]}, {"runs_b", ctrust::to_json(runs_b)["runs"]},
          {"notes", notes}};
}

TaskComparison compare_item_sets(const std::vector<StoredItem>& a, const std::vector<StoredItem>& b,
                                 const std::string& scoring, const BootstrapOptions& opt) {
  std::map<std::string, const StoredItem*> in_b;
  for (const auto& it : b) in_b[item_key(it.task, it.item_id)] = &it;
  std::vector<ItemResult> ra, rb;
  std::vector<const StoredItem*> pa, pb;
  TaskComparison c;
  for (const auto& it : a) {
    auto f = in_b.find(item_key(it.task, it.item_id));
    if (f == in_b.end()) {
      c.only_a++;
      continue;
    }
    const std::string id = it.task + "/" + it.item_id;
    ra.push_back(ItemResult{id, it.ll, it.pred, it.gold, it.correct});
    rb.push_back(ItemResult{id, f->second->ll, f->second->pred, f->second->gold, f->second->correct});
    if (it.gold != f->second->gold)
      fail("item {}: gold answer {} in run a but {} in run b (different data?)", id, it.gold, f->second->gold);
    pa.push_back(&it);
    pb.push_back(f->second);
    in_b.erase(f);
  }
  c.only_b = int64_t(in_b.size());
  c.m = compare_items(ra, rb, opt);
  c.ppl_a = ppl_of(pa, scoring);
  c.ppl_b = ppl_of(pb, scoring);
  return c;
}

static std::vector<RunInfo> select_runs(Store& s, const std::string& sel) {
  // Digits select a run by id; if there is no such run they may still be the name of a run stored
  // before all-digit names were refused.
  if (auto id = run_id_of(sel))
    if (auto r = s.get_run(*id)) return {*r};
  std::map<std::string, RunInfo> newest;  // per task
  std::set<std::string> names;
  for (auto& r : s.list_runs()) {
    names.insert(r.name);
    // Trust runs (task "trust", trust_runs.cpp) are compared by compare_trust_runs, not item by item here.
    if (r.name == sel && r.task != "trust") newest[r.task] = r;  // ids ascend: the last one wins
  }
  if (newest.empty()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    fail("{}: no run {} '{}' (runs: {})", s.path(), all_digits(sel) ? "with id or name" : "named", sel,
         known.empty() ? "none" : known);
  }
  std::vector<RunInfo> out;
  for (auto& [t, r] : newest) out.push_back(r);
  return out;
}

Comparison compare_runs(const std::string& db, const std::string& sel_a, const std::string& sel_b,
                        const BootstrapOptions& opt) {
  Store s(db, StoreMode::ReadOnly);
  Comparison cmp;
  cmp.runs_a = select_runs(s, sel_a);
  cmp.runs_b = select_runs(s, sel_b);
  for (const auto& ra : cmp.runs_a) {
    auto rb = std::find_if(cmp.runs_b.begin(), cmp.runs_b.end(), [&](const RunInfo& r) { return r.task == ra.task; });
    if (rb == cmp.runs_b.end()) {
      cmp.notes.push_back(fmt::format("{}: only in a (run {})", ra.task, ra.id));
      continue;
    }
    if (ra.scoring != rb->scoring)
      cmp.notes.push_back(fmt::format("{}: scored as {} in a but {} in b", ra.task, ra.scoring, rb->scoring));
    // The recipe says how each model was made (it differs whenever a compressed model is compared with its
    // base); only the task settings matter here.
    json sa = ra.settings, sb = rb->settings;
    sa.erase("recipe");
    sb.erase("recipe");
    sa.erase("compute");  // its own warning below
    sb.erase("compute");
    sa.erase("backend");  // a remote run's server: part of its compute mode ("remote")
    sb.erase("backend");
    if (sa != sb)
      cmp.notes.push_back(fmt::format("{}: runs {} and {} have different task settings", ra.task, ra.id, rb->id));
    if (run_compute_mode(ra.settings) != run_compute_mode(rb->settings))
      cmp.notes.push_back(fmt::format("{}: WARNING: run {} was computed in the {} mode and run {} in the {} mode; "
                                      "differences include the arithmetic (docs/correctness.md), not only the model",
                                      ra.task, ra.id, run_compute_mode(ra.settings), rb->id,
                                      run_compute_mode(rb->settings)));
    const auto ia = s.items(ra.id), ib = s.items(rb->id);
    std::map<std::string, std::pair<std::vector<StoredItem>, std::vector<StoredItem>>> groups;
    for (const auto& it : ia) groups[it.task].first.push_back(it);
    for (const auto& it : ib) groups[it.task].second.push_back(it);
    for (auto& [name, g] : groups) {
      TaskComparison c = compare_item_sets(g.first, g.second, ra.scoring, opt);
      if (c.only_a || c.only_b)
        cmp.notes.push_back(fmt::format("{}: item sets differ ({} only in a, {} only in b); compared {} common items",
                                        name, c.only_a, c.only_b, c.m.n));
      cmp.tasks[name] = c;
    }
    if (groups.size() > 1 || (groups.size() == 1 && groups.begin()->first != ra.task))
      cmp.tasks[ra.task] = compare_item_sets(ia, ib, ra.scoring, opt);
  }
  for (const auto& rb : cmp.runs_b)
    if (std::none_of(cmp.runs_a.begin(), cmp.runs_a.end(), [&](const RunInfo& r) { return r.task == rb.task; }))
      cmp.notes.push_back(fmt::format("{}: only in b (run {})", rb.task, rb.id));
  return cmp;
}

}  // namespace ctrust
