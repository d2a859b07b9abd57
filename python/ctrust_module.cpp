// The Python module `ctrust` (docs/python.md): bindings only. Each function converts its arguments into the
// pipeline's options, calls the same library function as the CLI command of the same name (src/cli/), and converts
// the result struct's to_json() into Python objects: what a function returns is what `ctrust <command> --json`
// prints. ctrust::Error becomes ctrust.Error; long calls run without the GIL; Ctrl-C stops eval and trust at their
// next stored item or commit (everything stored stays, and the same call resumes).
#include <Python.h>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "base/progress.h"
#include "base/split.h"
#include "compress/calib.h"
#include "io/config_json.h"
#include "model/model.h"
#include "pipeline/compress_run.h"
#include "pipeline/runs.h"
#include "pipeline/trust_runs.h"
#include "report/compress_report.h"
#include "report/trust_text.h"
#include "report/html.h"
#include "report/tables.h"
#include "trust/chat.h"
#include "trust/data.h"
#include "trust/presets.h"
#include "trust/run.h"

namespace nb = nanobind;
using namespace nb::literals;
using json = nlohmann::json;

namespace ctrust::py {
namespace {

// ---- JSON <-> Python ----

nb::object str_of(const std::string& s) {  // invalid UTF-8 (a partial token) becomes U+FFFD, never an exception
  return nb::steal(PyUnicode_DecodeUTF8(s.data(), (Py_ssize_t)s.size(), "replace"));
}

nb::object to_py(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return nb::none();
    case json::value_t::boolean: return nb::bool_(j.get<bool>());
    case json::value_t::number_integer: return nb::int_(j.get<int64_t>());
    case json::value_t::number_unsigned: return nb::int_(j.get<uint64_t>());
    case json::value_t::number_float: return nb::float_(j.get<double>());
    case json::value_t::string: return str_of(j.get_ref<const std::string&>());
    case json::value_t::array: {
      nb::list l;
      for (const json& e : j) l.append(to_py(e));
      return l;
    }
    case json::value_t::object: {
      nb::dict d;
      for (const auto& [k, v] : j.items()) d[str_of(k)] = to_py(v);
      return d;
    }
    default: return nb::none();  // binary / discarded: never produced by to_json()
  }
}

json from_py(nb::handle o, const std::string& where) {
  if (o.is_none()) return nullptr;
  if (nb::isinstance<nb::bool_>(o)) return nb::cast<bool>(o);
  if (nb::isinstance<nb::int_>(o)) return nb::cast<int64_t>(o);
  if (nb::isinstance<nb::float_>(o)) return nb::cast<double>(o);
  if (nb::isinstance<nb::str>(o)) return nb::cast<std::string>(o);
  if (nb::isinstance<nb::dict>(o)) {
    json j = json::object();
    for (auto [k, v] : nb::borrow<nb::dict>(o)) {
      if (!nb::isinstance<nb::str>(k)) fail("{}: keys must be strings", where);
      const std::string key = nb::cast<std::string>(k);
      j[key] = from_py(v, where + "." + key);
    }
    return j;
  }
  if (nb::isinstance<nb::list>(o) || nb::isinstance<nb::tuple>(o)) {
    json j = json::array();
    for (nb::handle e : o) j.push_back(from_py(e, where));
    return j;
  }
  fail("{}: a value of type {} cannot be given (expected dict, list, str, int, float, bool or None)", where,
       Py_TYPE(o.ptr())->tp_name);
}

// A list of names given as a list or as "a,b,c".
std::vector<std::string> name_list(nb::handle o, const char* what) {
  std::vector<std::string> out;
  if (o.is_none()) return out;
  if (nb::isinstance<nb::str>(o)) return split_list(nb::cast<std::string>(o));
  try {
    return nb::cast<std::vector<std::string>>(o);
  } catch (const nb::cast_error&) {
    fail("{}: expected a string or a list of strings", what);
  }
}

// ---- Ctrl-C during a call that runs without the GIL ----
// Checked at the library's own stopping points (a commit of eval, a stored trust record): the Python signal handler
// has only set a flag, so PyErr_CheckSignals (with the GIL) runs it; KeyboardInterrupt is then pending in this
// thread and the C++ exception below unwinds the library call, after which the binding re-raises it.
struct PythonSignal {};
void check_signals() {
  nb::gil_scoped_acquire g;
  if (PyErr_CheckSignals() != 0) throw PythonSignal{};
}
template <typename F>
auto without_gil(F&& f) {
  try {
    nb::gil_scoped_release r;
    return f();
  } catch (const PythonSignal&) {
    throw nb::python_error();  // the KeyboardInterrupt set by PyErr_CheckSignals
  }
}

// ---- Model ----

struct PyModel {
  std::unique_ptr<Model> m;
  std::string path, compute;
};

ComputeMode compute_of(const std::string& s) { return compute_mode_from_name(s); }

std::unique_ptr<PyModel> load(const std::string& path, const std::string& compute, const std::string& tokenizer) {
  const ComputeMode mode = compute_of(compute);
  auto pm = std::make_unique<PyModel>();
  pm->path = path;
  pm->compute = compute;
  pm->m = without_gil([&] { return open_model(path, LoadOptions{tokenizer, mode}); });
  return pm;
}

nb::ndarray<nb::numpy, float, nb::ndim<2>> logits(const PyModel& pm, const std::vector<int32_t>& ids) {
  const Model& m = *pm.m;
  const size_t n = ids.size(), V = (size_t)m.cfg.n_vocab;
  auto* out = new std::vector<float>(n * V);
  nb::capsule owner(out, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  without_gil([&] {
    KVCache c = make_cache(m, (int)n);  // Error for an empty list
    forward(m, c, ids.data(), (int)n, out->data());
    return 0;
  });
  return nb::ndarray<nb::numpy, float, nb::ndim<2>>(out->data(), {n, V}, owner);
}

// One tensor as the f32 compute mode holds it (dequantized; a matrix [rows][cols], a vector [1][n]), by GGUF name.
nb::ndarray<nb::numpy, float, nb::ndim<2>> tensor(const PyModel& pm, const std::string& name) {
  const Tensor& t = pm.m->file.get(name);  // Error naming the file and the tensor if missing
  const size_t rows = size_t(t.rows()), cols = size_t(t.cols());
  auto* out = new std::vector<float>(rows * cols);
  nb::capsule owner(out, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  tensor_rows_f32(t, 0, t.rows(), out->data());
  return nb::ndarray<nb::numpy, float, nb::ndim<2>>(out->data(), {rows, cols}, owner);
}

// A model argument: a Model (used as loaded) or a path (loaded with `compute`).
struct ModelArg {
  std::unique_ptr<PyModel> owned;
  const PyModel* pm = nullptr;
};
ModelArg model_arg(nb::handle model, const std::string& compute, const std::string& tokenizer) {
  ModelArg a;
  if (nb::isinstance<PyModel>(model)) {
    a.pm = nb::cast<const PyModel*>(model);
  } else if (nb::isinstance<nb::str>(model) || nb::hasattr(model, "__fspath__")) {
    const std::string path = nb::cast<std::string>(nb::str(model));
    if (!std::filesystem::exists(path)) fail("{}: model not found", path);
    a.owned = load(path, compute, tokenizer);
    a.pm = a.owned.get();
  } else {
    fail("model: expected a ctrust.Model or a path");
  }
  return a;
}

std::string path_arg(nb::handle o) { return nb::cast<std::string>(nb::str(o)); }

// ---- evaluate / runs / compare ----

nb::object evaluate(nb::handle model, nb::handle tasks_arg, const std::string& db, const std::string& name, int limit,
                    const std::string& sample, uint64_t seed, int fewshot, int ctx, const std::string& compute,
                    const std::string& tokenizer, bool progress) {
  // As `ctrust eval`: everything that can be checked without the model first.
  const std::vector<std::string> tasks = name_list(tasks_arg, "tasks");
  if (tasks.empty()) fail("evaluate: give at least one task");
  for (const std::string& t : tasks) load_task_spec(t);
  if (sample != "stratified" && sample != "first") fail("sample '{}': expected stratified or first", sample);
  without_gil([&] { Store probe(db); return 0; });  // may wait for a lock (10 s busy timeout)
  ModelArg ma = model_arg(model, compute, tokenizer);
  EvalOptions opt;
  opt.db = db;
  opt.name = name;
  opt.limit = limit;
  opt.limit_mode = sample == "first" ? LimitMode::First : LimitMode::Stratified;
  opt.seed = seed;
  opt.num_fewshot = fewshot;
  opt.max_ctx = ctx;
  opt.progress = progress;
  opt.on_commit = [](int64_t, int64_t) { check_signals(); };
  json all = json::array();
  for (const std::string& t : tasks)
    all.push_back(without_gil([&] { return eval_run(*ma.pm->m, ma.pm->path, t, opt).to_json(); }));
  return to_py(json{{"runs", all}});
}

nb::object runs(const std::string& db) {
  return to_py(without_gil([&] { return to_json(list_runs(db)); }));
}

nb::object compare(const std::string& a, const std::string& b, const std::string& db) {
  return to_py(without_gil([&] {
    // Two trust runs: the trust comparison (as `ctrust compare`); two evaluation runs: the item comparison.
    if (std::filesystem::exists(db)) {
      Store store(db, StoreMode::ReadOnly);
      const bool ta = is_trust_run(store, a), tb = is_trust_run(store, b);
      if (ta != tb)
        fail("compare: '{}' is {} trust run but '{}' is {}; compare trust runs with trust runs", a,
             ta ? "a" : "not a", b, tb ? "one" : "not");
      if (ta) return compare_trust_runs(db, a, b).to_json();
    }
    return compare_runs(db, a, b).to_json();
  }));
}

// ---- trust ----

nb::object trust(nb::handle model, nb::handle perspectives, const std::string& preset, int limit,
                 std::optional<int> samples, int max_new_tokens, uint64_t seed, int bootstrap, uint64_t bootstrap_seed,
                 const std::string& chat_template, std::optional<std::string> system_prompt, int batch,
                 const std::string& data, const std::string& recipe, const std::string& db, const std::string& name,
                 const std::string& compute, const std::string& tokenizer, bool progress) {
  TrustOptions opt;  // as `ctrust trust` (src/cli/trust_cmds.cpp)
  opt.perspectives = name_list(perspectives, "perspectives");
  check_trust_perspectives(opt.perspectives);
  opt.paths = trust_paths(data.empty() ? shared_data_dir() + "/data" : data);
  if (!preset.empty()) apply_preset(trust_preset(preset), opt);
  if (limit > 0) {
    opt.limit = limit;
    opt.limits.clear();
  }
  opt.max_new_tokens = max_new_tokens;
  if (samples) opt.max_samples = *samples;
  opt.bootstrap = bootstrap;
  opt.bootstrap_seed = bootstrap_seed;
  opt.seed = seed;
  opt.chat_template = chat_template;
  opt.batch = batch;
  opt.default_system = system_prompt;
  if (!chat_template.empty()) chat_template_by_name(chat_template);
  TrustStoreOptions so;
  so.db = db;
  so.name = name;
  so.recipe = recipe;
  so.scorer_id = "ctrust-tox";
  without_gil([&] { Store probe(db); return 0; });
  ModelArg ma = model_arg(model, compute, tokenizer);
  ProgressLine line(10);
  opt.on_item = [](const TrustRecord&) { check_signals(); };
  if (progress)
    opt.on_progress = [&line, last = std::string()](const std::string& p, const std::string& t, int done,
                                                     int total) mutable {
      const std::string label = p + " " + t;
      if (!last.empty() && label != last) line.finish();
      last = label;
      line.show(fmt::format("[{}] {}/{}", label, done, total), done == total);
    };
  json j = without_gil([&] { return trust_run(*ma.pm->m, ma.pm->path, opt, so).to_json(); });
  if (progress) line.finish();
  if (!preset.empty()) j["preset"] = trust_preset_json(trust_preset(preset));
  return to_py(j);
}

nb::object trust_report_(nb::handle runs_arg, const std::string& db, const std::string& data, int bootstrap,
                         uint64_t bootstrap_seed, nb::handle mmlu_arg) {
  const std::vector<std::string> sel = name_list(runs_arg, "runs"), mmlu = name_list(mmlu_arg, "mmlu");
  TrustStatsOptions so;
  so.data = data;
  so.bootstrap.resamples = bootstrap;
  so.bootstrap.seed = bootstrap_seed;
  return to_py(without_gil([&] { return trust_report(db, sel, so, mmlu).to_json(); }));
}

// ---- report ----

nb::object report(nb::handle runs_arg, const std::string& db, std::optional<std::string> output,
                  const std::string& data, int bootstrap, uint64_t bootstrap_seed) {
  const std::vector<std::string> sel = name_list(runs_arg, "runs");
  if (output) check_output_path(*output);
  ReportOptions o;  // as `ctrust report` (src/cli/report_cmds.cpp)
  o.db = db;
  o.bootstrap.resamples = bootstrap;
  o.bootstrap.seed = bootstrap_seed;
  o.trust.data = data;
  o.trust.bootstrap = o.bootstrap;
  return to_py(without_gil([&] {
    const Report r = build_report(sel, o);
    if (output) {
      const std::string html = render_html(r);
      AtomicFile f(*output);
      if (std::fwrite(html.data(), 1, html.size(), f.fp()) != html.size()) fail("{}: write failed", *output);
      f.commit();
    }
    return r.to_json();
  }));
}

// ---- compress ----

nb::object compress(const std::string& model, const std::string& out, nb::handle recipe_arg,
                    const std::string& tokenizer, std::optional<std::string> calib, const std::string& imatrix,
                    bool progress, nb::kwargs options) {
  // The recipe: a dict or a recipe file (the format of `ctrust compress --recipe`), keyword options on top of it
  // (the same keys: method="gptq", bits=4, group=64, ...).
  json j = json::object();
  if (nb::isinstance<nb::dict>(recipe_arg)) j = from_py(recipe_arg, "recipe");
  else if (!recipe_arg.is_none()) j = recipe_to_json(recipe_from_file(path_arg(recipe_arg)));  // every key
  for (auto [k, v] : options) j[nb::cast<std::string>(k)] = from_py(v, nb::cast<std::string>(k));
  if (!j.contains("method")) fail("compress: give method=... or a recipe");
  Recipe r = recipe_from_user_json(j);
  r.calib_hash.clear();  // filled by the calibration step
  r.ctrust_version = CTRUST_VERSION;
  if (!imatrix.empty()) {
    r.imatrix_file = imatrix;
    r.imatrix_hash = file_hash(imatrix);
  }
  if (recipe_needs_calibration(r)) {
    if (calib) r.calib_file = *calib;
    if (r.calib_file.empty()) r.calib_file = default_calibration_file();
  }
  if (!r.calib_chat.empty() && r.calib_chat != "auto") chat_template_by_name(r.calib_chat);
  validate_recipe(r);
  check_output_path(out);
  CompressRunOptions o;
  o.model = model;
  o.tokenizer = tokenizer;
  o.out = out;
  o.calib_chat = r.calib_chat;
  o.imatrix = r.imatrix_file;
  ProgressLine line(10);
  if (progress) o.progress = [&line](const std::string& msg) { line.show(msg); };
  json rep = without_gil([&] { return compress_report_json(compress_run(r, o), model, out); });
  if (progress) line.finish();
  return to_py(rep);
}

}  // namespace
}  // namespace ctrust::py

NB_MODULE(ctrust, m) {
  using namespace ctrust;
  using namespace ctrust::py;
  m.doc() = "ctrust: how a compressed LLM differs from its baseline (docs/python.md)";
  m.attr("__version__") = CTRUST_VERSION;
  nb::exception<ctrust::Error>(m, "Error");

  nb::class_<PyModel>(m, "Model", "A loaded model (ctrust.load)")
      .def_prop_ro("path", [](const PyModel& p) { return p.path; })
      .def_prop_ro("compute", [](const PyModel& p) { return p.compute; })
      .def_prop_ro("config", [](const PyModel& p) { return to_py(model_config_json(p.m->cfg)); },
                   "The configuration (the \"config\" of `ctrust info --json`)")
      .def_prop_ro("n_vocab", [](const PyModel& p) { return p.m->cfg.n_vocab; })
      .def_prop_ro("bos", [](const PyModel& p) { return p.m->tok.bos(); })
      .def_prop_ro("eos", [](const PyModel& p) { return p.m->tok.eos(); })
      .def(
          "tokenize",
          [](const PyModel& p, const std::string& text, bool bos, bool special) {
            return p.m->tok.encode(text, bos, special);
          },
          "text"_a, "bos"_a = true, "special"_a = false,
          "Token ids of a text, as `ctrust tokenize` (bos: BOS when the tokenizer adds one; special: parse "
          "special-token text such as <|im_start|>)")
      .def(
          "detokenize", [](const PyModel& p, const std::vector<int32_t>& ids) { return str_of(p.m->tok.decode(ids)); },
          "ids"_a, "The text of token ids (llama.cpp's detokenize; invalid UTF-8 of a partial character as U+FFFD)")
      .def("tensor", &tensor, "name"_a,
           "A tensor by its GGUF name (blk.0.attn_q.weight, ...) as the f32 compute mode holds it: float32 [rows, cols] "
           "(GGUF llama q/k rows in llama.cpp's interleaved RoPE order)")
      .def("logits", &logits, "ids"_a,
           "Logits of every position of a token sequence (one forward pass from an empty cache): float32 [n, vocab]")
      .def("__repr__", [](const PyModel& p) {
        return "<ctrust.Model " + p.path + " " + p.m->cfg.arch + " compute=" + p.compute + ">";
      });

  m.def("load", &load, "path"_a, "compute"_a = "f32", "tokenizer"_a = "",
        "Load a model (GGUF file, Hugging Face folder, llama2.c .bin); compute: f32 (dequantized) or native");
  m.def("set_threads", [](int n) {
    if (n < 1) fail("set_threads: {} must be at least 1", n);
    omp_set_num_threads(n);
  }, "n"_a, "Threads of the computations (as -t/--threads)");
  m.def("evaluate", &evaluate, "model"_a, "tasks"_a, nb::kw_only(), "db"_a = "ctrust.db", "name"_a = "",
        "limit"_a = 0, "sample"_a = "stratified", "seed"_a = 0, "fewshot"_a = -1, "ctx"_a = 2048,
        "compute"_a = "f32", "tokenizer"_a = "", "progress"_a = true,
        "`ctrust eval`: evaluate on tasks, every item stored in db (resumes); returns what --json prints");
  m.def("runs", &runs, "db"_a = "ctrust.db", "`ctrust runs --json`: the stored runs");
  m.def("compare", &compare, "a"_a, "b"_a, nb::kw_only(), "db"_a = "ctrust.db",
        "`ctrust compare A B --json`: two evaluation runs (flips, KL, McNemar, CIs) or two trust runs");
  m.def("trust", &trust, "model"_a, nb::kw_only(), "perspectives"_a = nb::none(), "preset"_a = "", "limit"_a = 0,
        "samples"_a = nb::none(), "max_new_tokens"_a = TrustOptions{}.max_new_tokens, "seed"_a = TrustOptions{}.seed,
        "bootstrap"_a = TrustOptions{}.bootstrap, "bootstrap_seed"_a = TrustOptions{}.bootstrap_seed, "chat_template"_a = "", "system_prompt"_a = nb::none(), "batch"_a = TrustOptions{}.batch,
        "data"_a = "", "recipe"_a = "", "db"_a = "ctrust.db", "name"_a = "", "compute"_a = "native",
        "tokenizer"_a = "", "progress"_a = true,
        "`ctrust trust`: the DecodingTrust perspectives, every answer stored in db (resumes)");
  m.def("trust_report", &trust_report_, "runs"_a, nb::kw_only(), "db"_a = "ctrust.db", "data"_a = "",
        "bootstrap"_a = 1000, "bootstrap_seed"_a = 42, "mmlu"_a = nb::none(), "`ctrust trust-report --json`");
  m.def("report", &report, "runs"_a, nb::kw_only(), "db"_a = "ctrust.db", "output"_a = nb::none(), "data"_a = "",
        "bootstrap"_a = 1000, "bootstrap_seed"_a = 42,
        "`ctrust report`: the report's tables (as --json); with output=FILE.html also the HTML page");
  m.def("compress", &compress, "model"_a, "output"_a, "recipe"_a = nb::none(), nb::kw_only(), "tokenizer"_a = "",
        "calib"_a = nb::none(), "imatrix"_a = "", "progress"_a = true, "options"_a,
        "`ctrust compress`: recipe (a dict or a recipe file) and/or keyword options with the recipe file's keys "
        "(method='gptq', bits=4, group=64, ...); returns what --json prints");
}
