// ctrust compress
#include <cctype>
#include <chrono>
#include <filesystem>
#include <set>
#include <unistd.h>

#include <fmt/ranges.h>

#include "base/error.h"
#include "base/file.h"
#include "cli/common.h"
#include "compress/driver.h"
#include "compress/imatrix.h"
#include "compress/mixed.h"
#include "compress/recipe.h"
#include "io/ctrust_types.h"
#include "io/export.h"
#include "model/model.h"
#include "trust/chat.h"

namespace ctrust::cli {
namespace {

using json = nlohmann::json;

struct CompressArgs {
  std::string model, tokenizer, out, method, nm, calib, grid, calib_chat, awq_loss, awq_feed, types_from, imatrix,
      legacy_fit;
  std::vector<std::string> tensor_type;
  Recipe r;
  MixOptions mix;
  std::string mix_levels;
  bool sym = false, asym = false, calib_raw = false;
};

// Sizes in bytes: the files; the compressed tensors as stored and as f32; the tensor data a load of the written
// file holds in memory (f32 compute mode: everything f32; native: matrices stay packed, except act-order ones
// with a column permutation and the Linears of SmoothQuant / LLM.int8() (their modes need f32); 1-D tensors f32).
struct Sizes {
  uint64_t file = 0, input_file = 0, stored = 0, f32 = 0, mem_f32 = 0, mem_native = 0;
};

Sizes sizes_of(const Model& m, const CompressReport& rep, const std::string& in, const std::string& out) {
  Sizes s;
  std::error_code ec;
  s.file = std::filesystem::file_size(out, ec);
  if (ec) s.file = 0;
  if (std::filesystem::is_regular_file(in, ec)) s.input_file = std::filesystem::file_size(in, ec);
  if (ec) s.input_file = 0;
  for (const TensorReport& t : rep.tensors) {
    const Tensor& x = m.file.get(t.name);
    s.f32 += uint64_t(x.numel()) * 4;
    s.stored += x.raw ? x.raw_bytes : uint64_t(x.numel()) * 4;  // LLM.int8() leaves the input's type
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

// --tensor-type RE=TYPE rules, then --types-from FILE: every 2-D tensor of FILE stored in a quantized type gets
// that type (exact name); tensors FILE keeps in F32/F16/BF16 are left alone ("none").
void add_type_rules(CompressArgs& a) {
  for (const std::string& tt : a.tensor_type) {
    const size_t eq = tt.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == tt.size())
      fail("--tensor-type '{}': expected REGEX=TYPE such as 'attn_v=q6_k'", tt);
    a.r.tensor_types.emplace_back(tt.substr(0, eq), tt.substr(eq + 1));
  }
  if (a.types_from.empty()) return;
  const GgufFile ref = read_gguf(a.types_from);
  for (const GgufTensorInfo& t : ref.tensors) {
    if (t.ne.size() != 2) continue;
    const bool plain = t.type == GgmlType::F32 || t.type == GgmlType::F16 || t.type == GgmlType::BF16;
    const std::string type = plain ? "none" : ggml_type_name(t.type);
    if (!plain) check_output_type(type, fmt::format("--types-from {}: tensor {}", a.types_from, t.name).c_str());
    a.r.tensor_types.emplace_back(exact_regex(t.name), type);
  }
}

void cmd_compress(CompressArgs& a, const Common& c) {
  Recipe& r = a.r;
  add_type_rules(a);
  const bool mixed = a.mix.target_bpw != 0;
  if (mixed) {
    if (!a.mix_levels.empty()) {
      a.mix.levels.clear();
      for (size_t p = 0; p <= a.mix_levels.size();) {
        size_t q = a.mix_levels.find(',', p);
        if (q == std::string::npos) q = a.mix_levels.size();
        a.mix.levels.push_back(a.mix_levels.substr(p, q - p));
        p = q + 1;
      }
    }
    // Tensors outside the blocks: Q8_0 unless a rule says otherwise (rules are tried in order).
    r.tensor_types.emplace_back("^token_embd\\.weight$", "q8_0");
    r.tensor_types.emplace_back("^output\\.weight$", "q8_0");
  }
  if (!a.legacy_fit.empty()) {
    if (a.legacy_fit != "ggml" && a.legacy_fit != "gptq") fail("--legacy-fit '{}': expected ggml or gptq", a.legacy_fit);
    r.legacy_ggml_fit = a.legacy_fit == "ggml";
  }
  if (!a.imatrix.empty()) {
    r.imatrix_file = a.imatrix;
    r.imatrix_hash = file_hash(a.imatrix);
  }
  r.method = method_from_name(a.method);
  if (a.sym && a.asym) fail("--sym and --asym exclude each other");
  if (a.sym) r.sym = true;
  if (a.asym) r.sym = false;
  if (!a.grid.empty()) r.minmax = grid_from_name(a.grid);
  if (!a.awq_loss.empty()) r.awq_attn_loss = awq_qkv_loss_from_name(a.awq_loss);
  if (!a.awq_feed.empty()) r.awq_fp_feed = awq_feed_from_name(a.awq_feed);
  if (!a.nm.empty()) {
    int n = 0, m = 0;
    char tail = 0;
    if (std::sscanf(a.nm.c_str(), "%d:%d%c", &n, &m, &tail) != 2 || n < 1 || m < 1)
      fail("--nm '{}': expected N:M such as 2:4", a.nm);
    r.prune_n = n;
    r.prune_m = m;
  }
  if (method_needs_calibration(r.method)) r.calib_file = a.calib.empty() ? default_calibration_file() : a.calib;
  r.calib_clean = !a.calib_raw;
  if (!a.calib_chat.empty() && a.calib_chat != "auto") chat_template_by_name(a.calib_chat);  // unknown: error now
  validate_recipe(r);  // every option problem is reported before the model is even loaded
  check_output_path(a.out);  // an unwritable -o fails now, not after the whole compression

  auto t0 = std::chrono::steady_clock::now();
  auto model = open_model(a.model, LoadOptions{a.tokenizer});
  Calibration calib;
  const Calibration* cal = nullptr;
  if (method_needs_calibration(r.method)) {
    CalibOptions co;
    co.n = r.n_samples;
    co.len = r.seq_len;
    co.seed = r.seed;
    co.clean = r.calib_clean;
    ChatTemplate tmpl;
    if (!a.calib_chat.empty()) {
      tmpl = a.calib_chat == "auto" ? detect_chat_template(model->tok.data().chat_template)
                                    : chat_template_by_name(a.calib_chat);
      if (tmpl.format == ChatFormat::Raw)
        fail("--calib-chat: {} has no chat template; name one (--calib-chat=NAME: {})", a.model,
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
  // Progress on stderr: redrawn on a terminal, a plain line every 10 s otherwise (also with --json: stdout
  // stays clean).
  ProgressLine progress(10);
  Imatrix imat;
  if (!a.imatrix.empty()) imat = read_imatrix(a.imatrix);
  MixPlan plan;
  if (mixed) {
    a.mix.seed = r.seed;
    a.mix.calib_file = a.calib;
    a.mix.calib_clean = r.calib_clean;
    const auto ts = std::chrono::steady_clock::now();
    a.mix.progress = [&](int done, int total) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
      progress.show(fmt::format("sensitivity {}/{} (unit x level), {:.2f}/s, ETA {:.0f} s", done, total, done / el,
                                el / done * (total - done)));
    };
    plan = plan_mixed_precision(*model, r, a.imatrix.empty() ? nullptr : &imat, a.mix);
    progress.finish();
  }
  CompressReport rep = compress_model(*model, r, cal, [&](const std::string& msg) {
    progress.show(fmt::format("[{:.0f} s] {}", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), msg));
  }, a.imatrix.empty() ? nullptr : &imat);
  progress.finish();
  SaveOptions so;
  so.extra_meta = recipe_metadata(rep.recipe);
  for (GgufKV& kv : linear_mode_metadata(*model)) so.extra_meta.push_back(std::move(kv));
  save_gguf(model->file, a.out, so);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Sizes sz = sizes_of(*model, rep, a.model, a.out);
  json mix_json;
  if (mixed) {
    // The written file against the plan, and the mixed model's measured KL on the sensitivity sample (additivity).
    const FixedSize written = gguf_tensor_size(a.out);
    auto base = open_model(a.model, LoadOptions{a.tokenizer});
    const PairKl check = calibration_kl(*base, *model, plan.calib);
    const SensitivityTable& t = plan.table;
    json map = json::array(), front = json::array();
    for (size_t u = 0; u < t.units.size(); ++u) map.push_back({{"unit", t.units[u]}, {"level", t.levels[plan.choice.pick[u]]}});
    for (const MixChoice& f : plan.frontier)
      front.push_back({{"bytes", plan.fixed.bytes + f.bytes}, {"bpw", 8.0 * double(plan.fixed.bytes + f.bytes) / double(plan.fixed.elements)},
                       {"predicted", f.cost}});
    mix_json = {{"target_bpw", a.mix.target_bpw}, {"objective", a.mix.objective}, {"budget_bytes", plan.budget},
                {"fixed_bytes", plan.fixed.bytes}, {"planned_tensor_bytes", plan.total_bytes()},
                {"file_tensor_bytes", written.bytes}, {"elements", written.elements},
                {"bpw", 8.0 * double(written.bytes) / double(written.elements)},
                {"predicted_kl", plan.predicted_kl}, {"predicted_flips", plan.predicted_flips},
                {"measured_calib_kl", check.kl}, {"measured_calib_kl_se", check.kl_se},
                {"measured_calib_flips", check.flips}, {"calib_tokens", check.tokens}, {"table_reused", plan.table_reused},
                {"map", map}, {"frontier", front}, {"table", t.to_json()}};
  }

  if (c.json) {
    json tensors = json::array();
    for (const TensorReport& t : rep.tensors)
      tensors.push_back({{"name", t.name}, {"out", t.out}, {"in", t.in}, {"error", t.error},
                         {"rel_error", t.rel_error}, {"rtn_error", t.rtn_error}, {"sparsity", t.sparsity}, {"awq_alpha", t.awq_alpha},
                         {"stored", ggml_type_name(t.stored)}});
    print_json({{"input", a.model}, {"output", a.out}, {"recipe", recipe_to_json(rep.recipe)},
                {"seconds", secs}, {"compress_seconds", rep.seconds}, {"tensors", tensors},
                {"sizes", {{"file_bytes", sz.file}, {"input_file_bytes", sz.input_file},
                           {"compressed_tensors_stored_bytes", sz.stored}, {"compressed_tensors_f32_bytes", sz.f32},
                           {"memory_bytes_f32_mode", sz.mem_f32}, {"memory_bytes_native_mode", sz.mem_native}}},
                {"mixed", mixed ? mix_json : json()}});
    return;
  }
  double err = 0, rtn = 0, zeros = 0, total = 0;
  int n_err = 0, n_rtn = 0;
  for (const TensorReport& t : rep.tensors) {
    if (t.rel_error >= 0) { err += t.rel_error; ++n_err; }
    if (t.rtn_error >= 0 && t.error >= 0 && t.rel_error > 0) { rtn += t.rel_error * t.rtn_error / t.error; ++n_rtn; }
    zeros += t.sparsity * double(t.out) * t.in;
    total += double(t.out) * t.in;
  }
  // Pruning methods set weights to zero on purpose (sparsity); quantizers only round some weights to the grid's
  // zero, which is reported as such.
  const bool pruning = method_is_pruning(r.method);
  fmt::print("{:<36} {:>6} {:>6} {:>12} {:>12} {:>9} {:>6}\n", "tensor", "out", "in", "rel.error", "RTN rel.err",
             pruning ? "sparsity" : "zeros", "type");
  for (const TensorReport& t : rep.tensors)
    fmt::print("{:<36} {:>6} {:>6} {:>12.6f} {:>12} {:>8.2f}% {:>6}\n", t.name, t.out, t.in, t.rel_error,
               t.rtn_error >= 0 && t.error > 0 ? fmt::format("{:.6f}", t.rel_error * t.rtn_error / t.error) : "-",
               100 * t.sparsity, ggml_type_name(t.stored));
  fmt::print("\n{} tensors compressed with {}", rep.tensors.size(), method_name(r.method));
  if (n_err) fmt::print("; mean relative output error {:.6f}", err / n_err);
  if (n_rtn) fmt::print(" (RTN on the same inputs {:.6f})", rtn / n_rtn);
  if (total > 0 && zeros > 0) {
    if (pruning) fmt::print("; sparsity {:.2f}% (weights pruned)", 100 * zeros / total);
    else fmt::print("; {:.2f}% of the weights rounded to zero (quantization, not pruning)", 100 * zeros / total);
  }
  constexpr double MB = 1e6;
  fmt::print("\nfile {:.1f} MB (input {:.1f} MB); compressed tensors stored in {:.1f} MB ({:.1f} MB as f32); "
             "weights in memory when loaded: {:.1f} MB (f32 compute mode), {:.1f} MB (native)",
             sz.file / MB, sz.input_file / MB, sz.stored / MB, sz.f32 / MB, sz.mem_f32 / MB, sz.mem_native / MB);
  if (mixed) {
    const json& mj = mix_json;
    fmt::print("\nmixed precision (objective {}): ", a.mix.objective);
    for (const json& e : mj["map"]) fmt::print("{}={} ", e["unit"].get<std::string>(), e["level"].get<std::string>());
    fmt::print("\n  tensor bytes {} (planned {}, budget {}): {:.4f} bits per weight (target {})\n",
               mj["file_tensor_bytes"].get<uint64_t>(), mj["planned_tensor_bytes"].get<uint64_t>(), plan.budget,
               mj["bpw"].get<double>(), a.mix.target_bpw);
    fmt::print("  calibration KL: predicted (sum of units) {:.5f}, measured {:.5f} +- {:.5f}; flips predicted {:.4f}, "
               "measured {:.4f} ({} tokens{})\n",
               plan.predicted_kl, mj["measured_calib_kl"].get<double>(), mj["measured_calib_kl_se"].get<double>(),
               plan.predicted_flips, mj["measured_calib_flips"].get<double>(), mj["calib_tokens"].get<int64_t>(),
               plan.table_reused ? ", table reused" : "");
  }
  fmt::print("\nrecipe {}\nwrote {} in {:.1f} s\n", recipe_to_string(rep.recipe), a.out, secs);
}

}  // namespace

struct ImatrixArgs {
  std::string model, tokenizer, out, calib;
  int n = 32, len = 256;
  uint64_t seed = 0;
  bool calib_raw = false;
};

void cmd_imatrix(const ImatrixArgs& a, const Common& c) {
  check_output_path(a.out);
  auto t0 = std::chrono::steady_clock::now();
  auto model = open_model(a.model, LoadOptions{a.tokenizer});
  CalibOptions co;
  co.n = a.n;
  co.len = a.len;
  co.seed = a.seed;
  co.clean = !a.calib_raw;
  if (co.n < 1 || co.len < 2) fail("imatrix: --nsamples must be >= 1 and --seqlen >= 2");
  const std::string file = a.calib.empty() ? default_calibration_file() : a.calib;
  const Calibration calib = load_calibration(model->tok, file, co);
  ProgressLine progress(10);
  Imatrix im = collect_imatrix(*model, calib, [&](const std::string& msg) { progress.show(msg); });
  progress.finish();
  write_imatrix(a.out, im);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (c.json) {
    print_json({{"model", a.model}, {"output", a.out}, {"calib_file", file}, {"calib_hash", calib.hash},
                {"calib_clean", co.clean}, {"n_samples", co.n}, {"seq_len", co.len}, {"seed", co.seed},
                {"entries", im.entries.size()}, {"seconds", secs}});
    return;
  }
  fmt::print("wrote {} ({} entries, {} x {} calibration tokens of {}) in {:.1f} s\n", a.out, im.entries.size(), co.n,
             co.len, file, secs);
}

void register_compress_commands(CLI::App& app) {
  {
    static ImatrixArgs a;
    static Common o;
    auto* c = app.add_subcommand("imatrix",
                                 "Write an importance matrix (llama.cpp's GGUF imatrix format, for llama-quantize "
                                 "--imatrix and ctrust compress --imatrix) from the calibration text");
    c->add_option("-m,--model", a.model, "Model")->required();
    c->add_option("--tokenizer", a.tokenizer, "llama2.c tokenizer .bin");
    c->add_option("-o,--output", a.out, "Output imatrix file (.gguf)")->required();
    c->add_option("--calib", a.calib, "Calibration text (default as compress, cleaned; see --calib-raw)");
    c->add_flag("--calib-raw", a.calib_raw, "Use the calibration text as it is (no WikiText clean-up)");
    c->add_option("--nsamples", a.n, "Calibration sequences");
    c->add_option("--seqlen", a.len, "Tokens per calibration sequence");
    c->add_option("--seed", a.seed, "Calibration sampling seed");
    add_common(c, o);
    c->callback([] { apply_threads(o); cmd_imatrix(a, o); });
  }
  static CompressArgs a;
  static Common o;
  Recipe& r = a.r;
  auto* c = app.add_subcommand("compress", "Quantize or prune a model and write it as GGUF with its recipe");
  c->add_option("-m,--model", a.model, "Model to compress")->required();
  c->add_option("--tokenizer", a.tokenizer, "llama2.c tokenizer .bin");
  c->add_option("-o,--output", a.out, "Output GGUF file")->required();
  c->add_option("--method", a.method, "rtn|gptq|awq|smoothquant|llm_int8 (or int8)|magnitude|sparsegpt|wanda")->required();
  c->add_option("--bits", r.bits, "Bits per weight (2-8)");
  c->add_option("--group-size", r.group, "Input columns per scale (0 = one scale per output channel)");
  c->add_flag("--sym", a.sym, "Symmetric grid");
  c->add_flag("--asym", a.asym, "Asymmetric grid (with a zero point; default)");
  c->add_option("--grid", a.grid,
                "Asymmetric grid: gptq (default: integer zero point, 0 on the grid, as the GPTQ/AWQ reference code) "
                "or minmax (each group's [min, max], as ggml's Q4_1)");
  c->add_option("--awq-qkv-loss", a.awq_loss,
                "AWQ q/k/v scale search: attention (default: the attention module's output, as llm-awq) or qkv "
                "(the q, k, v outputs; ctrust before issue 12)");
  c->add_option("--awq-feed", a.awq_feed,
                "AWQ: feed each block the fp (default, as llm-awq) or the quantized outputs of the block before");
  c->add_option("--sparsity", r.sparsity, "Unstructured target sparsity in [0,1)");
  c->add_option("--nm", a.nm, "Semi-structured N:M pruning, e.g. 2:4");
  c->add_option("--calib", a.calib,
                "Calibration text (default ../shared/data/wikitext-2-tokens/wiki.valid.tokens; sentences with <unk> "
                "dropped and @-@ @,@ @.@ undone, see --calib-raw)");
  c->add_flag("--calib-raw", a.calib_raw, "Use the calibration text as it is (no WikiText clean-up)");
  c->add_flag("--calib-chat{auto}", a.calib_chat,
              "Calibration samples as chat conversations (paragraphs as alternating user/assistant turns) in the "
              "model's chat template; --calib-chat=NAME picks a template (chatml, llama3, ...)");
  c->add_option("--nsamples", r.n_samples, "Calibration sequences");
  c->add_option("--seqlen", r.seq_len, "Tokens per calibration sequence");
  c->add_option("--seed", r.seed, "Calibration sampling seed");
  c->add_option("--damp", r.damp, "GPTQ/SparseGPT dampening, fraction of the mean Hessian diagonal");
  c->add_flag("--act-order", r.act_order, "GPTQ: quantize columns by descending Hessian diagonal");
  c->add_flag("--static-groups", r.static_groups, "GPTQ: group scales from the original weights");
  c->add_option("--alpha", r.alpha, "SmoothQuant migration strength");
  c->add_option("--threshold", r.threshold, "LLM.int8() outlier threshold");
  c->add_option("--type", r.type,
                "Output type of every selected tensor (rtn/gptq/awq): q2_k|q3_k|q4_k|q5_k|q6_k (llama.cpp K-quant "
                "super-blocks, the quantizer works in that grid) or q4_0|q4_1|q5_0|q5_1|q8_0 (sets bits/sym/group 32)");
  c->add_option("--tensor-type", a.tensor_type,
                "REGEX=TYPE: output type of the tensors the regex matches (first match wins; TYPE none = leave alone; "
                "a rule naming token_embd/output selects it, stored with ggml's own quantizer); repeatable");
  c->add_option("--types-from", a.types_from,
                "GGUF file (e.g. llama-quantize's Q4_K_M output): store every tensor in the type it has there");
  c->add_option("--imatrix", a.imatrix,
                "imatrix file (llama.cpp GGUF format, `ctrust imatrix`): weight the K-quant fits as llama-quantize "
                "--imatrix does");
  c->add_option("--legacy-fit", a.legacy_fit,
                "Output types q4_0/q5_0/q8_0: gptq (default: the GPTQ reference grid) or ggml (the scale ggml's own "
                "quantizer picks, imatrix-weighted with --imatrix; the quantizer rounds on it)");
  c->add_option("--target-bpw", a.mix.target_bpw,
                "KL-guided mixed precision: choose each block's type (--mix-levels) so that the file's tensors take at "
                "most this many bits per weight (llama.cpp's BPW) with the least predicted KL (--objective)");
  c->add_option("--objective", a.mix.objective, "--target-bpw: kl (default: mean token KL) or flips (top-1 changes)");
  c->add_option("--mix-levels", a.mix_levels,
                "--target-bpw: candidate types, comma-separated (default q2_k,q3_k,q4_k,q5_k,q6_k,q8_0; a K type "
                "falls back as llama-quantize for inputs not a multiple of 256)");
  c->add_option("--sens-nsamples", a.mix.n_samples, "--target-bpw: sensitivity sequences (default 4)");
  c->add_option("--sens-seqlen", a.mix.seq_len, "--target-bpw: tokens per sensitivity sequence (default 256)");
  c->add_option("--sens-table", a.mix.table_path,
                "--target-bpw: JSON file of the sensitivity table: reused if it exists (same options; --mix-levels may be a "
                "subset of its levels, e.g. one level for a uniform file), else measured and written");
  c->add_option("--skip", r.skip, "Regex of tensor names to leave alone");
  c->add_option("--only", r.only, "Regex of tensor names to compress (others left alone)");
  add_common(c, o);
  c->callback([] { apply_threads(o); cmd_compress(a, o); });
}

}  // namespace ctrust::cli
