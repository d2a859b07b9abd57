#include "pipeline/compress_run.h"

#include <cctype>
#include <chrono>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/error.h"
#include "base/file.h"
#include "compress/imatrix.h"
#include "io/ctrust_types.h"
#include "io/export.h"
#include "io/gguf.h"
#include "model/model.h"
#include "trust/chat.h"

namespace ctrust {

namespace {

CompressSizes sizes_of(const Model& m, const CompressReport& rep, const std::string& in, const std::string& out) {
  CompressSizes s;
  std::error_code ec;
  s.file = std::filesystem::file_size(out, ec);
  if (ec) s.file = 0;
  if (std::filesystem::is_regular_file(in, ec)) s.input_file = std::filesystem::file_size(in, ec);
  if (ec) s.input_file = 0;
  for (const TensorReport& t : rep.tensors) {
    const Tensor& x = m.file.get(t.name);
    s.f32 += uint64_t(x.numel()) * 4;
    s.stored += x.raw ? x.raw_bytes : uint64_t(x.numel()) * 4;
  }
  // SmoothQuant's and LLM.int8()'s inference modes work on f32 weights (materialize_mode_weights), in both modes.
  const bool modes = rep.recipe.method == Method::SmoothQuant || rep.recipe.method == Method::LLMInt8;
  std::set<std::string> moded;
  if (modes)
    for (const TensorReport& t : rep.tensors) moded.insert(t.name);
  for (const auto& [name, t] : m.file.tensors) {
    const uint64_t f = uint64_t(t.numel()) * 4;
    s.mem_f32 += f;
    const bool packed =
        t.raw && t.ne.size() == 2 && t.src_type != GgmlType::F32 && t.perm.empty() && !moded.count(name);
    s.mem_native += packed ? t.raw_bytes : f;
  }
  return s;
}

// A regex matching exactly `name` (PCRE2: every non-alphanumeric character escaped).
std::string exact_regex(const std::string& name) {
  std::string re = "^";
  for (char ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_') re += '\\';
    re += ch;
  }
  return re + "$";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void add_types_from(Recipe& r, const std::string& path) {
  const GgufFile ref = read_gguf(path);
  for (const GgufTensorInfo& t : ref.tensors) {
    if (t.ne.size() != 2) continue;
    const bool plain = t.type == GgmlType::F32 || t.type == GgmlType::F16 || t.type == GgmlType::BF16;
    const std::string type = plain ? "none" : ggml_type_name(t.type);
    if (!plain) check_output_type(type, fmt::format("--types-from {}: tensor {}", path, t.name).c_str());
    r.tensor_types.emplace_back(exact_regex(t.name), type);
  }
}

CompressRunResult compress_run(Recipe& r, const CompressRunOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto model = open_model(o.model, LoadOptions{o.tokenizer});
  Calibration calib;
  const Calibration* cal = nullptr;
  if (recipe_needs_calibration(r)) {
    CalibOptions co;
    co.n = r.n_samples;
    co.len = r.seq_len;
    co.seed = r.seed;
    co.clean = r.calib_clean;
    ChatTemplate tmpl;
    if (!o.calib_chat.empty()) {
      tmpl = o.calib_chat == "auto" ? detect_chat_template(model->tok.data().chat_template)
                                    : chat_template_by_name(o.calib_chat);
      if (tmpl.format == ChatFormat::Raw)
        fail("--calib-chat: {} has no chat template; name one (--calib-chat=NAME: {})", o.model,
             fmt::join(chat_template_names(), ", "));
      r.calib_chat = tmpl.name;
      const bool bos = model->tok.adds_bos() && tmpl.bos_text.empty();
      co.chat = [&](const std::vector<std::string>& turns) {
        std::vector<ChatMessage> msgs;
        for (size_t i = 0; i < turns.size(); ++i) msgs.push_back({i % 2 ? "assistant" : "user", turns[i]});
        return model->tok.encode(render_chat(tmpl, msgs, false), bos, true);
      };
    }
    calib = load_calibration(model->tok, r.calib_file, co);
    r.calib_hash = calib.hash;
    cal = &calib;
  }
  Imatrix imat;
  if (!o.imatrix.empty()) imat = read_imatrix(o.imatrix);
  CompressRunResult res;
  if (o.mix.target_bpw != 0) {
    res.mix.on = true;
    res.mix.plan = plan_mixed_precision(*model, r, o.imatrix.empty() ? nullptr : &imat, o.mix);
  }
  res.report = compress_model(*model, r, cal, o.progress, o.imatrix.empty() ? nullptr : &imat);
  SaveOptions so;
  so.extra_meta = recipe_metadata(res.report.recipe);
  for (GgufKV& kv : linear_mode_metadata(*model)) so.extra_meta.push_back(std::move(kv));
  save_gguf(model->file, o.out, so);
  if (res.mix.on) {
    // The written file against the plan, and the mixed model's KL on the sensitivity sample (additivity check).
    res.mix.written = gguf_tensor_size(o.out);
    auto base = open_model(o.model, LoadOptions{o.tokenizer});
    res.mix.check = calibration_kl(*base, *model, res.mix.plan.calib);
  }
  res.seconds = seconds_since(t0);
  res.sizes = sizes_of(*model, res.report, o.model, o.out);
  return res;
}

ImatrixRunResult imatrix_run(const ImatrixRunOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto model = open_model(o.model, LoadOptions{o.tokenizer});
  const CalibOptions& co = o.calib_opts;
  if (co.n < 1 || co.len < 2) fail("imatrix: --nsamples must be >= 1 and --seqlen >= 2");
  ImatrixRunResult res;
  res.calib_file = o.calib.empty() ? default_calibration_file() : o.calib;
  const Calibration calib = load_calibration(model->tok, res.calib_file, co);
  res.calib_hash = calib.hash;
  Imatrix im = collect_imatrix(*model, calib, o.progress);
  write_imatrix(o.out, im);
  res.entries = im.entries.size();
  res.seconds = seconds_since(t0);
  return res;
}

ConvertRunResult convert_run(const std::string& model, const LoadOptions& lo, const std::string& out,
                             const std::string& type) {
  SaveOptions opt;
  if (type != "keep") opt.type = ggml_type_from_name(type);  // unknown type: error before loading
  check_output_path(out);
  LoadedModel m = load_model(model, lo);
  const auto t0 = std::chrono::steady_clock::now();
  save_gguf(m, out, opt);
  return {model, out, type, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

ExportHfRunResult export_hf_run(const std::string& model, const std::string& out, const HfExportOptions& o) {
  LoadedModel m = load_gguf_model(model);
  const auto t0 = std::chrono::steady_clock::now();
  ExportHfRunResult res{model, export_hf(m, out, o), 0};
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace ctrust
