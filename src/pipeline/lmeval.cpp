#include "pipeline/lmeval.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/file.h"
#include "pipeline/fingerprint.h"
#include "pipeline/runs.h"

namespace ctrust {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// A log-likelihood as lm-eval writes it: "-5.25" (0.4.3+), -5.25, or [ll, is_greedy].
double parse_ll(const json& v, const std::string& where) {
  if (v.is_array() && !v.empty()) return parse_ll(v[0], where);
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    size_t used = 0;
    double x = 0;
    try {
      x = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s.size()) fail("{}: '{}' is not a number", where, s);
    if (!std::isfinite(x)) fail("{}: log-likelihood '{}' is not a finite number", where, s);
    return x;
  }
  fail("{}: expected a log-likelihood, found {}", where, first_line(v.dump()));
}

bool parse_greedy(const json& v) {
  if (!v.is_array() || v.size() < 2) return false;
  const json& g = v[1];
  if (g.is_boolean()) return g.get<bool>();
  if (g.is_string()) return g.get<std::string>() == "True" || g.get<std::string>() == "true";
  return false;
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

// Continuations of the requests in order: arguments as {"gen_args_i": {"arg_0", "arg_1"}} or [[ctx, cont]].
std::vector<std::string> continuations(const json& args) {
  std::vector<std::string> out;
  if (args.is_object()) {
    std::map<int, std::string> byidx;
    for (const auto& [k, v] : args.items()) {
      if (k.rfind("gen_args_", 0) != 0 || !v.is_object() || !v.contains("arg_1") || !v["arg_1"].is_string()) continue;
      try {
        byidx[std::stoi(k.substr(9))] = v["arg_1"].get<std::string>();
      } catch (const std::exception&) {
      }
    }
    for (auto& [i, s] : byidx) out.push_back(s);
  } else if (args.is_array()) {
    for (const auto& a : args)
      if (a.is_array() && a.size() >= 2 && a[1].is_string()) out.push_back(a[1].get<std::string>());
  }
  return out;
}

std::string py_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", x);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<RunInfo> select_runs(Store& s, const std::string& sel) {
  if (auto id = run_id_of(sel))  // digits: a run id, else (no such run) a name
    if (auto r = s.get_run(*id)) return {*r};
  std::map<std::string, RunInfo> newest;
  for (auto& r : s.list_runs())
    if (r.name == sel) newest[r.task] = r;
  if (newest.empty()) fail("{}: no run {} '{}'", s.path(), all_digits(sel) ? "with id or name" : "named", sel);
  std::vector<RunInfo> out;
  for (auto& [t, r] : newest) out.push_back(r);
  return out;
}

}  // namespace

std::string lm_eval_task_from_filename(const std::string& path) {
  std::string stem = fs::path(path).filename().string();
  if (stem.size() > 6 && stem.substr(stem.size() - 6) == ".jsonl") stem.resize(stem.size() - 6);
  if (stem.rfind("samples_", 0) != 0) return "";
  stem = stem.substr(8);
  // lm-eval appends "_<date>T<time>"; ctrust's export "_ctrust-run<id>".
  const size_t u = stem.rfind('_');
  if (u == std::string::npos || u == 0) return "";
  const std::string tail = stem.substr(u + 1);
  const bool date = tail.size() >= 10 && std::isdigit(static_cast<unsigned char>(tail[0])) && tail[4] == '-';
  if (!date && tail.rfind("ctrust-run", 0) != 0) return "";
  return stem.substr(0, u);
}

std::vector<StoredItem> read_lm_eval_samples(const std::string& path, const std::string& item_task) {
  require_regular_file(path, "lm-eval samples file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open lm-eval samples file", path);
  std::vector<StoredItem> items;
  std::set<std::string> seen;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (trim(line).empty()) continue;
    const std::string where = fmt::format("{}:{}", path, lineno);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      fail("{}: invalid JSON ({})", where, first_line(e.what()));
    }
    if (!j.is_object()) fail("{}: expected a JSON object per line", where);
    StoredItem it;
    it.task = item_task;
    const auto id = j.find("doc_id");
    if (id == j.end()) fail("{}: no doc_id (not an lm-eval --log_samples file?)", where);
    if (id->is_number_integer()) it.item_id = std::to_string(id->get<int64_t>());
    else if (id->is_string()) it.item_id = id->get<std::string>();
    else fail("{}: doc_id must be an integer or a string", where);
    if (!seen.insert(it.item_id).second) fail("{}: doc_id {} appears twice", where, it.item_id);

    const json* resps = nullptr;
    bool filtered = false;
    if (auto f = j.find("filtered_resps"); f != j.end() && f->is_array()) resps = &*f, filtered = true;
    else if (auto r = j.find("resps"); r != j.end() && r->is_array()) resps = &*r;
    if (!resps || resps->empty()) fail("{}: no filtered_resps/resps with log-likelihoods", where);
    std::vector<bool> greedy;
    for (size_t i = 0; i < resps->size(); i++) {
      const json& r = filtered ? (*resps)[i] : ((*resps)[i].is_array() && !(*resps)[i].empty() ? (*resps)[i][0] : (*resps)[i]);
      it.ll.push_back(parse_ll(r, fmt::format("{}: response {}", where, i)));
      greedy.push_back(parse_greedy(r));
    }
    const int n = int(it.ll.size());
    it.pred = int(std::max_element(it.ll.begin(), it.ll.end()) - it.ll.begin());

    // The gold answer: an index (number, ["0"], digits) that must name a choice, or the text of one
    // continuation. Partial scoring (WinoGrande) logs the continuation every choice shares as its target:
    // only then does the stored acc say which choice was gold (a two-choice item, or acc 1 = the argmax).
    const auto acc = j.find("acc");
    const bool has_acc = acc != j.end() && acc->is_number();
    const auto t = j.find("target");
    const std::string tdump = t == j.end() ? "(missing)" : first_line(t->dump());
    auto bad_target = [&](const char* why) {
      fail("{}: target {} {} (the item has {} choices)", where, tdump, why, n);
    };
    int gold = -1;
    auto index_gold = [&](int64_t g) {
      if (g < 0 || g >= n) bad_target("is not a choice index");
      gold = int(g);
    };
    if (t == j.end() || t->is_null()) {
      bad_target("is missing");
    } else if (t->is_number_integer()) {
      index_gold(t->get<int64_t>());
    } else if (t->is_array() && !t->empty() && (*t)[0].is_number_integer()) {
      index_gold((*t)[0].get<int64_t>());
    } else if (t->is_string()) {
      const std::string s = t->get<std::string>();
      if (all_digits(s)) {
        if (s.size() > 9) bad_target("is not a choice index");
        index_gold(std::stoll(s));
      } else {
        const auto conts = j.contains("arguments") ? continuations(j["arguments"]) : std::vector<std::string>{};
        int matches = 0;
        for (size_t i = 0; i < conts.size(); i++)
          if (trim(conts[i]) == trim(s)) gold = int(i), matches++;
        if (matches == 0) bad_target("matches no choice's continuation");
        if (matches > 1) {
          if (matches != n || int(conts.size()) != n) bad_target("matches several but not all continuations");
          if (!has_acc || !(acc->get<double>() > 0.5 || n == 2))
            bad_target("is the continuation all choices share, and the stored acc does not name the gold choice");
          gold = acc->get<double>() > 0.5 ? it.pred : 1 - it.pred;
        }
      }
    } else {
      bad_target("is neither a choice index nor a continuation");
    }
    it.gold = gold;
    it.correct = it.pred == gold;
    if (has_acc && (acc->get<double>() > 0.5) != it.correct)
      fail("{}: stored acc {} disagrees with the log-likelihoods (argmax {}, gold {})", where, acc->get<double>(),
           it.pred, gold);
    it.extra = {{"source", "lm-eval"}, {"greedy", greedy}};
    if (auto an = j.find("acc_norm"); an != j.end() && an->is_number()) it.extra["correct_norm"] = an->get<double>() > 0.5;
    items.push_back(std::move(it));
  }
  if (items.empty()) fail("{}: no samples", path);
  return items;
}

json LmEvalImport::to_json() const {
  return {{"run", ctrust::to_json(run)}, {"n_items", n_items}, {"item_tasks", item_tasks}};
}

LmEvalImport import_lm_eval(const std::vector<std::string>& files, const LmEvalImportOptions& opt) {
  if (files.empty()) fail("import-lm-eval: no files");
  if (opt.name.empty()) fail("import-lm-eval: a run name is required");
  if (opt.task.empty()) fail("import-lm-eval: the ctrust task name is required");
  LmEvalImport res;
  RunInfo& run = res.run;
  run.name = opt.name;
  run.task = opt.task;
  run.model_path = opt.model.empty() ? files[0] : opt.model;
  run.scoring = "multiple_choice";
  try {
    run.scoring = scoring_name(load_task_spec(opt.task).scoring);
  } catch (const Error&) {
    // not a ctrust task: keep multiple_choice
  }
  std::vector<std::vector<StoredItem>> per_file;
  uint64_t h = 0;
  json names = json::array();
  for (const std::string& f : files) {
    std::string sub = lm_eval_task_from_filename(f);
    if (sub.empty() || sub.rfind(opt.task, 0) != 0) sub = opt.task;
    check_task_name(sub, f);  // it names export's files
    per_file.push_back(read_lm_eval_samples(f, sub));
    res.item_tasks.push_back(sub);
    for (const auto& it : per_file.back()) {
      h = hash_bytes(it.item_id.data(), it.item_id.size(), h);
      h = hash_bytes(it.ll.data(), it.ll.size() * sizeof(double), h);
    }
    names.push_back(fs::path(f).filename().string());
  }
  run.model_fp = "lm-eval-" + hex64(h);
  run.settings = {{"source", "lm-evaluation-harness --log_samples"}, {"files", names}};
  Store store(opt.db);
  store.open_run(run);
  for (const auto& items : per_file) {
    store.add_items(run.id, items);
    res.n_items += int64_t(items.size());
  }
  run.n_items = int64_t(store.items(run.id).size());
  return res;
}

json lm_eval_sample(const StoredItem& it, const TaskItem* item) {
  json j;
  if (all_digits(it.item_id) && it.item_id.size() < 18) j["doc_id"] = std::stoll(it.item_id);
  else j["doc_id"] = it.item_id;
  json doc = {{"task", it.task}};
  json args = json::object();
  if (item && !item->continuations.empty() && !item->contexts.empty()) {
    doc["choices"] = item->choice_texts;
    doc["gold"] = item->gold;
    const size_t n = std::max(item->contexts.size(), item->continuations.size());
    for (size_t i = 0; i < n; i++) {
      const std::string& c = item->contexts.size() == 1 ? item->contexts[0] : item->contexts[std::min(i, item->contexts.size() - 1)];
      const std::string& k = item->continuations.size() == 1 ? item->continuations[0]
                                                             : item->continuations[std::min(i, item->continuations.size() - 1)];
      args["gen_args_" + std::to_string(i)] = {{"arg_0", c}, {"arg_1", k}};
    }
  }
  j["doc"] = doc;
  j["target"] = it.gold;
  j["arguments"] = args;
  json resps = json::array(), filt = json::array();
  const json* greedy = it.extra.contains("greedy") && it.extra["greedy"].is_array() ? &it.extra["greedy"] : nullptr;
  for (size_t i = 0; i < it.ll.size(); i++) {
    const bool g = greedy && i < greedy->size() && (*greedy)[i].is_boolean() && (*greedy)[i].get<bool>();
    json r = json::array({py_float(it.ll[i]), g ? "True" : "False"});
    resps.push_back(json::array({r}));
    filt.push_back(r);
  }
  j["resps"] = resps;
  j["filtered_resps"] = filt;
  j["filter"] = "none";
  j["metrics"] = json::array({"acc", "acc_norm"});
  j["acc"] = it.correct ? 1.0 : 0.0;
  bool norm = it.correct;
  if (auto f = it.extra.find("correct_norm"); f != it.extra.end()) {
    if (f->is_boolean()) norm = f->get<bool>();
    else if (f->is_number()) norm = f->get<double>() > 0.5;
  }
  j["acc_norm"] = norm ? 1.0 : 0.0;
  return j;
}

std::vector<std::string> export_lm_eval(const std::string& db, const std::string& sel, const std::string& out) {
  Store s(db, StoreMode::ReadOnly);
  const std::vector<RunInfo> runs = select_runs(s, sel);
  struct Group {
    const RunInfo* run;
    std::vector<StoredItem> items;
  };
  std::map<std::pair<int64_t, std::string>, Group> groups;
  for (const RunInfo& r : runs) {
    if (r.scoring == "perplexity") fail("export: run {} ({}) is a perplexity run; lm-eval samples hold choices", r.id, r.task);
    for (auto& it : s.items(r.id)) {
      auto& g = groups[{r.id, it.task}];
      g.run = &r;
      g.items.push_back(std::move(it));
    }
  }
  if (groups.empty()) fail("export: the selected runs have no items");
  const bool to_dir = groups.size() > 1 || fs::is_directory(out) || (!out.empty() && out.back() == '/');
  if (to_dir) fs::create_directories(out);
  std::vector<std::string> written;
  std::map<std::string, std::map<std::string, const TaskItem*>> by_key;  // per run task: item key -> item
  std::map<std::string, TaskData> loaded;
  for (auto& [key, g] : groups) {
    const RunInfo& r = *g.run;
    // The task's prompts, when the run was made by ctrust and the data is here (else doc/arguments stay empty).
    if (!r.settings.contains("source") && !loaded.count(r.task)) {
      try {
        TaskSpec spec = load_task_spec(r.task);
        if (r.settings.contains("declaration") && r.settings["declaration"].contains("num_fewshot"))
          spec.num_fewshot = r.settings["declaration"]["num_fewshot"].get<int>();
        const int limit = r.settings.value("limit", 0);
        const LimitMode mode = r.settings.value("sample", std::string("first")) == "stratified" ? LimitMode::Stratified
                                                                                                : LimitMode::First;
        loaded[r.task] = load_task(spec, limit, mode, r.settings.value("seed", uint64_t(0)));
        for (const auto& ti : loaded[r.task].items) by_key[r.task][item_key(ti.task, ti.id)] = &ti;
      } catch (const std::exception&) {
        loaded[r.task] = TaskData{};
      }
    }
    const std::string path =
        to_dir ? (fs::path(out) / fmt::format("samples_{}_ctrust-run{}.jsonl", key.second, r.id)).string() : out;
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) fail("{}: cannot create file", path);
    const auto& items_of = by_key[r.task];
    for (const auto& it : g.items) {
      auto found = items_of.find(item_key(it.task, it.item_id));
      f << lm_eval_sample(it, found == items_of.end() ? nullptr : found->second).dump() << '\n';
    }
    f.flush();
    if (!f) fail("{}: write failed", path);
    written.push_back(path);
  }
  return written;
}

}  // namespace ctrust
